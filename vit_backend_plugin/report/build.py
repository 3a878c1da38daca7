"""Arms (a run directory, or lm-eval output folders) -> summary dict -> report.md, report.html,
summary.json (written atomically).

Every number shown comes from the summary dict, so the three files never disagree; accuracy
numbers are lm-eval's own (copied from its results file), parity is recomputed from samples.
The summary is checked against :class:`~vit_backend_plugin.report.summary_schema.Summary`
before anything is written.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from vit_backend_plugin.common.files import atomic_write_json, atomic_write_text
from vit_backend_plugin.report import provenance
from vit_backend_plugin.report.load import ArmData, RunData, load_run
from vit_backend_plugin.report.metrics import SPEED_METRICS
from vit_backend_plugin.report.parity import compare
from vit_backend_plugin.report.summary_schema import SCHEMA_VERSION, Summary


def _higher_is_better(key: str) -> bool:
    if key in SPEED_METRICS:
        return SPEED_METRICS[key][1]
    return not (key.endswith("_ms") or (key.endswith("_s") and not key.endswith("_per_s")))


def speedup(key: str, value: float | None, base: float | None) -> float | None:
    if value is None or base is None or value <= 0 or base <= 0:
        return None
    return value / base if _higher_is_better(key) else base / value


def _numeric_metrics(tp: dict[str, Any] | None) -> dict[str, float]:
    if not tp:
        return {}
    out = {}
    for k, v in tp.get("metrics", {}).items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[k] = float(v)
    return out


def _arm_summary(a: ArmData, run: RunData) -> dict[str, Any]:
    rows = [asdict(r) for r in a.results.rows] if a.results else []
    first_task = next((t for t in run.tasks if a.results and a.results.row(t)), None)
    root = a.results.row(first_task) if first_task else (a.results.rows[0] if rows else None)
    recorded = a.results.output.recorded() if a.results else None
    lm_eval = asdict(recorded) if recorded else None
    if lm_eval:
        del lm_eval["pretty_env_info"]  # long; its versions and GPU are under "environment"
    return {
        "state": a.state,
        "problems": list(a.problems),
        "errors": a.errors,
        "accuracy": root.value if root else None,
        "stderr": root.stderr if root else None,
        "metric": root.metric if root else None,
        "task": root.name if root else None,
        "n_items": root.n if root else None,
        "results": rows,
        "results_file": a.results_file,
        "samples_logged": len(a.samples.items) if a.samples else 0,
        "throughput": _numeric_metrics(a.throughput),
        "throughput_engine": (a.throughput or {}).get("engine"),
        "throughput_file": a.throughput_file,
        "settings": a.settings,
        "environment": provenance.environment(a.env, recorded),
        "lm_eval": lm_eval,
    }


def _differing(base: ArmData, cand: ArmData) -> list[dict[str, Any]]:
    out = []
    for key, rb in base.samples.items.items():
        rc = cand.samples.items.get(key)
        if rc is None or (rb.answer == rc.answer and rb.correct == rc.correct):
            continue
        out.append({
            "task": rb.task, "doc_id": rb.doc_id, "subject": rb.subject, "target": rb.target,
            "baseline_answer": rb.answer, "answer": rc.answer,
            "baseline_correct": rb.correct, "correct": rc.correct,
        })
    return sorted(out, key=lambda d: (d["task"], d["doc_id"]))


def _parity(base: ArmData, cand: ArmData, run: RunData) -> dict[str, Any]:
    def no_data(a: ArmData, who: str) -> str | None:
        if a.samples is not None and a.samples.items:
            return None
        why = "; ".join(a.problems) or "no per-item samples"
        return f"{who} {a.name} has no per-item results ({a.state}: {why})"

    reason = no_data(cand, "arm") or no_data(base, "baseline")
    if reason:
        return {"verdict": "ERROR", "reason": reason, "differing_items": []}
    res = compare(base.samples.as_items(), cand.samples.as_items(), run.thresholds).to_dict()
    damaged = [a.name for a in (base, cand) if a.samples.problems or a.state != "complete"]
    if damaged:  # never a PASS on data we know is incomplete
        if res["verdict"] == "PASS":
            res["verdict"] = "INCONCLUSIVE"
        res["reason"] = f"incomplete or damaged data for {', '.join(damaged)} (see problems); {res['reason']}"
    res["differing_items"] = _differing(base, cand)
    return res


def _warnings(run: RunData, arms: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    base_name = run.baseline
    base, out = arms[base_name], []
    for name, arm in arms.items():
        if name == base_name or arm["state"] == "missing":  # a missing arm is an ERROR already
            continue
        out += provenance.version_warnings(base_name, base, name, arm)
        out += provenance.config_warnings(base_name, base["lm_eval"], name, arm["lm_eval"])
        b, a = run.arms[base_name].samples, run.arms[name].samples
        if b is not None and a is not None and b.items and a.items:
            w = provenance.pairing_warning(base_name, name, b.items, a.items)
            out += [w] if w else []
    return out


def summarize(run: RunData) -> dict[str, Any]:
    baseline = run.baseline
    arms = {name: _arm_summary(a, run) for name, a in run.arms.items()}
    base_tp = arms[baseline]["throughput"]
    for s in arms.values():
        s["speedup"] = {k: speedup(k, v, base_tp.get(k)) for k, v in s["throughput"].items()}
    parity = {
        name: _parity(run.arms[baseline], a, run)
        for name, a in run.arms.items() if name != baseline
    }
    summary = {
        "schema_version": SCHEMA_VERSION, "source": run.source,
        "run_id": run.run_id, "model": run.model, "engine": run.engine, "tasks": run.tasks,
        "baseline": baseline, "arm_order": list(run.arms),
        "thresholds": run.thresholds.model_dump(), "problems": run.problems,
        "warnings": _warnings(run, arms), "arms": arms, "parity": parity,
    }
    # the schema is the contract: a summary that breaks it is a bug here, caught before writing
    return Summary.model_validate(summary).model_dump(mode="json")


def write_report(run: RunData, out_dir: str | Path | None = None) -> dict[str, Path]:
    from vit_backend_plugin.report.render import render_html, render_markdown

    summary = summarize(run)
    out = Path(out_dir) if out_dir is not None else run.root
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "summary.json"}
    # summary.json last: its presence means the whole report was written
    atomic_write_text(paths["md"], render_markdown(summary))
    atomic_write_text(paths["html"], render_html(summary))
    atomic_write_json(paths["json"], summary)
    return paths


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    return write_report(load_run(run_dir), out_dir)
