"""What each arm ran with (versions, device, settings, lm-eval's recorded config) and what differs
from the baseline without the arms asking for it: warnings, never a verdict change.

Pure functions over the summary's per-arm parts (``environment``, ``settings``, ``lm_eval``), so
the rules can be read and tested without files.

* **version**: a package, Python, the GPU or its driver differs from the baseline's. Package and
  Python differences are intended (no warning) when the arm's settings choose another
  interpreter (``python``) than the baseline's; a different GPU or driver never is. Only what both arms recorded is
  compared.
* **config**: lm-eval's record of the run differs: model, model type, limit, generation
  arguments, tasks, task versions, few-shot, item counts, chat template or system instruction.
  ``model_args`` differences are listed beside the arms (the backend under test lives there),
  not warned about; a different ``pretrained`` shows as a different model.
* **pairing**: items only one arm answered: the parity is computed on the common items.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

from vit_backend_plugin.rundir.lm_eval_output import Recorded

# Recorded fields compared between arms, with the words the warning uses
CONFIG_FIELDS = {
    "model_name": "model", "model": "lm-eval model type", "limit": "limit",
    "gen_kwargs": "generation arguments", "chat_template_sha": "chat template (sha)",
    "system_instruction_sha": "system instruction (sha)", "fewshot_as_multiturn": "few-shot as multi-turn",
}
PER_TASK_FIELDS = {"task_versions": "task version", "n_shot": "n-shot", "n_samples": "item count"}


def warning(arm: str, kind: str, key: str, message: str) -> dict[str, str]:
    return {"arm": arm, "kind": kind, "key": key, "message": message}


# --------------------------------------------------------------------------- environment
def _text(x: Any) -> str | None:
    return None if x is None else str(x)


def _names(gpus: Any) -> list[str]:
    return [str(g["name"]) for g in gpus if isinstance(g, dict) and g.get("name")] \
        if isinstance(gpus, list) else []


def from_env_json(env: dict[str, Any]) -> dict[str, Any]:
    """env.json (harness/env_capture.py): python, versions, device (torch's view of the GPUs,
    else nvidia-smi's, with the driver)."""
    versions = {"python": _text(env.get("python"))}
    raw = env.get("versions")
    if isinstance(raw, dict):
        versions.update({str(k): _text(v) for k, v in raw.items()})
    device = env.get("device") if isinstance(env.get("device"), dict) else None
    gpu = driver = None
    if device is not None:
        names = _names(device.get("gpus")) or _names(device.get("nvidia_smi"))
        gpu = ", ".join(names) if names else ("none" if "cuda_available" in device else None)
        smi = device.get("nvidia_smi") if isinstance(device.get("nvidia_smi"), list) else []
        drivers = sorted({str(g["driver"]) for g in smi if isinstance(g, dict) and g.get("driver")})
        driver = ", ".join(drivers) or None
    return {"source": "env.json", "versions": versions, "gpu": gpu, "driver": driver,
            "platform": _text(env.get("platform"))}


_PIP = re.compile(r"^\[(?:pip3?|conda)\]\s+([A-Za-z0-9_.\-]+)==(\S+)\s*$")
_GPU = re.compile(r"^GPU \d+: (.+?)\s*$")


def _field(lines: list[str], label: str) -> str | None:
    head = label + ":"
    line = next((ln for ln in lines if ln.startswith(head)), None)
    value = None if line is None else line[len(head):].strip()
    return None if value in (None, "", "N/A", "Could not collect") else value


def parse_pretty_env_info(text: str) -> dict[str, Any]:
    """The versions and GPU in torch's ``collect_env`` text, which lm-eval records."""
    lines = str(text).splitlines()
    versions: dict[str, str | None] = {}
    python = _field(lines, "Python version")
    if python:
        versions["python"] = python.split()[0]
    torch = _field(lines, "PyTorch version")
    if torch:
        versions["torch"] = torch.split("+")[0]
    for ln in lines:
        m = _PIP.match(ln.strip())
        if m and m.group(1).lower() not in versions:
            versions[m.group(1).lower()] = m.group(2)
    gpu = None
    if any(ln.startswith("GPU models and configuration:") for ln in lines):
        i = next(i for i, ln in enumerate(lines) if ln.startswith("GPU models and configuration:"))
        first = lines[i].split(":", 1)[1].strip()
        names = [m.group(1) for ln in [first, *lines[i + 1:]] if (m := _GPU.match(ln.strip()))]
        gpu = ", ".join(names) or None
    return {"versions": versions, "gpu": gpu, "driver": _field(lines, "Nvidia driver version"),
            "platform": _field(lines, "Python platform")}


def from_lm_eval(rec: Recorded) -> dict[str, Any]:
    """The versions lm-eval wrote into its results file (add_env_info)."""
    parsed = parse_pretty_env_info(rec.pretty_env_info or "")
    versions = dict(parsed["versions"])
    versions["lm_eval"] = _text(rec.lm_eval_version)
    versions["transformers"] = _text(rec.transformers_version)
    return {"source": "lm-eval results", "versions": versions, "gpu": parsed["gpu"],
            "driver": parsed["driver"], "platform": parsed["platform"]}


def environment(env_json: dict[str, Any] | None, rec: Recorded | None) -> dict[str, Any]:
    """env.json where the run wrote one, else what lm-eval recorded, else nothing known."""
    if env_json is not None:
        return from_env_json(env_json)
    if rec is not None and (rec.pretty_env_info or rec.lm_eval_version):
        return from_lm_eval(rec)
    return {"source": None, "versions": {}, "gpu": None, "driver": None, "platform": None}


# --------------------------------------------------------------------------- comparisons
def _python_setting(settings: dict[str, Any]) -> str | None:
    return settings.get("python") or None


def version_warnings(base_name: str, base: dict[str, Any], name: str, arm: dict[str, Any]) -> list[dict]:
    """``base``/``arm``: the summary's per-arm dicts (``environment``, ``settings``)."""
    be, ae = base["environment"], arm["environment"]
    if be["source"] is None or ae["source"] is None:
        who = base_name if be["source"] is None else name
        return [warning(name, "version", "*", f"{name}: versions of {who} not recorded: not compared "
                                               f"with the baseline {base_name}")]
    own_python = _python_setting(arm["settings"]) != _python_setting(base["settings"])
    out = []
    bv, av = be["versions"], ae["versions"]
    for key in [k for k in av if k in bv]:
        if av[key] == bv[key] or own_python:
            continue
        out.append(warning(name, "version", key, (
            f"{name}: {key} {av[key] or 'not installed'}, baseline {base_name} has "
            f"{bv[key] or 'not installed'}; the arm's settings do not choose another interpreter "
            f"(python), so the comparison mixes this change with the one under test")))
    for key, words in (("gpu", "GPU"), ("driver", "GPU driver")):  # never the arm's choice
        if be[key] and ae[key] and be[key] != ae[key]:
            out.append(warning(name, "version", key, f"{name}: {words} {ae[key]}, baseline "
                                                     f"{base_name} has {be[key]}"))
    return out


def _fmt(x: Any) -> str:
    return "not set" if x is None else str(x)


def config_warnings(base_name: str, base: dict[str, Any] | None, name: str,
                    arm: dict[str, Any] | None) -> list[dict]:
    """``base``/``arm``: the summary's ``lm_eval`` records (None: no results file to compare)."""
    if base is None or arm is None:
        return []
    out = []
    for key, words in CONFIG_FIELDS.items():
        if arm[key] != base[key]:
            out.append(warning(name, "config", key, f"{name}: {words} {_fmt(arm[key])}, baseline "
                                                    f"{base_name} has {_fmt(base[key])}"))
    only_base = sorted(set(base["tasks"]) - set(arm["tasks"]))
    only_arm = sorted(set(arm["tasks"]) - set(base["tasks"]))
    if only_base or only_arm:
        out.append(warning(name, "config", "tasks", (
            f"{name}: tasks differ from the baseline {base_name}'s (only in the baseline: "
            f"{', '.join(only_base) or 'none'}; only in {name}: {', '.join(only_arm) or 'none'})")))
    common = sorted(set(base["tasks"]) & set(arm["tasks"]))
    for key, words in PER_TASK_FIELDS.items():
        diff = [f"{t} {_fmt(arm[key].get(t))} vs {_fmt(base[key].get(t))}" for t in common
                if arm[key].get(t) != base[key].get(t)]
        if diff:
            more = f" (+{len(diff) - 5} more)" if len(diff) > 5 else ""
            out.append(warning(name, "config", key, f"{name}: {words} differs from the baseline "
                                                    f"{base_name}'s on {', '.join(diff[:5])}{more}"))
    return out


def parse_model_args(model_args: Any) -> dict[str, str]:
    """lm-eval's ``k=v,k=v`` rule (``lm_eval.utils.simple_parse_args_string``), values kept as
    the text written; an object (lm-eval also takes JSON) item by item."""
    if isinstance(model_args, dict):
        return {str(k): str(v) for k, v in model_args.items()}
    if not isinstance(model_args, str):
        return {}
    return {k: v for k, _, v in (a.partition("=") for a in model_args.strip().split(",") if a)}


def model_args_changes(base: dict[str, Any] | None, arm: dict[str, Any] | None) -> dict[str, list]:
    """key -> [baseline's value, arm's value] where the two ``model_args`` differ (None: unset)."""
    if base is None or arm is None:
        return {}
    b, a = parse_model_args(base["model_args"]), parse_model_args(arm["model_args"])
    return {k: [b.get(k), a.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def pairing_warning(base_name: str, name: str, base_keys: Iterable[Hashable],
                    arm_keys: Iterable[Hashable]) -> dict | None:
    """Items (``(task, doc_id)``) only one arm answered: left out of the paired comparison."""
    b, a = set(base_keys), set(arm_keys)
    only_b, only_a = Counter(k[0] for k in b - a), Counter(k[0] for k in a - b)
    if not only_b and not only_a:
        return None

    def per_task(c: Counter) -> str:
        items = [f"{t} {n}" for t, n in sorted(c.items())]
        return ", ".join(items[:5]) + (f" (+{len(items) - 5} tasks)" if len(items) > 5 else "")

    parts = []
    if only_b:
        parts.append(f"{sum(only_b.values())} only in the baseline {base_name} ({per_task(only_b)})")
    if only_a:
        parts.append(f"{sum(only_a.values())} only in {name} ({per_task(only_a)})")
    return warning(name, "pairing", "items", (
        f"{name}: paired on the {len(a & b)} items both answered; dropped {' and '.join(parts)}"))
