"""The report's tables of what each arm ran with: settings and lm-eval's record, versions and
device. A cell a warning is about starts with ⚠️ (provenance.py decides the warnings)."""

from __future__ import annotations

import json
from typing import Any

from vit_backend_plugin.report.provenance import model_args_changes
from vit_backend_plugin.report.table import Table

FLAG = "⚠️ "
# versions shown first, in this order; the rest alphabetically
FIRST_VERSIONS = ("python", "torch", "vllm", "lm_eval", "transformers", "vit-backend-plugin",
                  "triton", "flash-attn", "flashinfer-python", "xformers")


def _text(x: Any) -> str:
    """A setting as one line: ``k=v, ...`` for an object (nested values as JSON)."""
    if x is None:
        return "—"
    if isinstance(x, dict):
        return ", ".join(f"{k}={_leaf(v)}" for k, v in x.items()) or "—"
    if isinstance(x, list):
        return ", ".join(map(_leaf, x)) or "—"
    return _leaf(x)


def _leaf(x: Any) -> str:
    return x if isinstance(x, str) else json.dumps(x, sort_keys=True)


def _arg(v: str | None) -> str:
    return "unset" if v is None else (v or '""')


def _flagged(s: dict[str, Any]) -> set[tuple[str, str]]:
    return {(w["arm"], w["key"]) for w in s["warnings"]}


def _distinct(per_task: dict[str, Any]) -> str:
    values = sorted({_text(v) for v in per_task.values()})
    return " / ".join(values) if values else "—"


def _lm_eval_rows(s: dict[str, Any], order: list[str]) -> list[tuple[str, str, list[str]]]:
    """(label, warning key, cell per arm) from lm-eval's record of each run."""
    recs = {n: s["arms"][n]["lm_eval"] for n in order}
    base = recs[s["baseline"]]

    def cells(fn) -> list[str]:
        return [fn(r) if r is not None else "—" for r in recs.values()]

    def model_args(name: str) -> str:
        if name == s["baseline"] or base is None or recs[name] is None:
            return _text(recs[name]["model_args"]) if recs[name] else "—"
        changes = model_args_changes(base, recs[name])
        return ("; ".join(f"{k}: {_arg(b)} → {_arg(a)}" for k, (b, a) in changes.items())
                or "same as the baseline")

    return [
        ("lm-eval model", "model", cells(lambda r: _text(r["model"]))),
        ("model", "model_name", cells(lambda r: _text(r["model_name"]))),
        ("model_args", "model_args", [model_args(n) for n in order]),
        ("limit", "limit", cells(lambda r: _text(r["limit"]))),
        ("gen_kwargs", "gen_kwargs", cells(lambda r: _text(r["gen_kwargs"]))),
        ("tasks scored", "tasks", cells(lambda r: str(len(r["tasks"])))),
        ("items", "n_samples", cells(lambda r: str(sum(v for v in r["n_samples"].values()
                                                      if isinstance(v, int))))),
        ("task versions", "task_versions", cells(lambda r: _distinct(r["task_versions"]))),
        ("n-shot", "n_shot", cells(lambda r: _distinct(r["n_shot"]))),
        ("chat template (sha)", "chat_template_sha",
         cells(lambda r: _text(r["chat_template_sha"])[:12])),
    ]


def settings_table(s: dict[str, Any]) -> Table:
    order, flagged = s["arm_order"], _flagged(s)
    keys = list(dict.fromkeys(k for n in order for k in s["arms"][n]["settings"]))
    rows: list[tuple[str, str, list[str]]] = [
        (k, k, [_text(s["arms"][n]["settings"].get(k)) for n in order]) for k in keys]
    if any(s["arms"][n]["lm_eval"] for n in order):
        rows += _lm_eval_rows(s, order)
    if any(s["arms"][n]["throughput"] for n in order):
        rows.append(("speed from", "throughput",
                     [_text(s["arms"][n]["throughput_file"]) for n in order]))
    out = [[label, *[(FLAG if (n, key) in flagged else "") + c for n, c in zip(order, cells, strict=True)]]
           for label, key, cells in rows]
    note = ("Settings: each arm's effective settings (run.json). The rest is what lm-eval recorded in "
            "its results file; model_args of an arm: what differs from the baseline's.")
    return Table("Arms: settings and lm-eval's record", ["", *_heads(s)], out, note=note,
                 numeric_from=99)


def versions_table(s: dict[str, Any]) -> Table:
    order, flagged = s["arm_order"], _flagged(s)
    envs = {n: s["arms"][n]["environment"] for n in order}
    present = {k for e in envs.values() for k in e["versions"]}
    keys = [k for k in FIRST_VERSIONS if k in present] + sorted(present - set(FIRST_VERSIONS))

    def version(n: str, k: str) -> str:
        v = envs[n]["versions"]
        cell = "—" if k not in v else (v[k] or "not installed")
        return (FLAG if (n, k) in flagged else "") + cell

    rows = [["recorded in", *[_text(envs[n]["source"]) if envs[n]["source"] else "not recorded"
                              for n in order]]]
    rows += [[k, *[version(n, k) for n in order]] for k in keys]
    for key, label in (("gpu", "GPU"), ("driver", "GPU driver")):
        rows.append([label, *[(FLAG if (n, key) in flagged else "") + _text(envs[n][key]) for n in order]])
    rows.append(["platform", *[_text(envs[n]["platform"]) for n in order]])
    note = ("⚠️ marks a difference from the baseline that the arm's settings do not choose (another "
            "python interpreter may bring other versions; another GPU or driver never is the change under test).")
    return Table("Arms: versions and device", ["", *_heads(s)], rows, note=note, numeric_from=99,
                 collapsed=not any(w["kind"] == "version" for w in s["warnings"]))


def _heads(s: dict[str, Any]) -> list[str]:
    return [n + (" (baseline)" if n == s["baseline"] else "") for n in s["arm_order"]]


def arm_tables(s: dict[str, Any]) -> list[Table]:
    return [settings_table(s), versions_table(s)]
