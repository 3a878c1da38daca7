"""Run directory -> summary dict -> report.md, report.html, summary.json (written atomically).

Every number shown comes from the summary dict, so the three files never disagree; accuracy
numbers are lm-eval's own (copied from its results file), parity is recomputed from samples.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from vit_backend_plugin.common.files import atomic_write_json, atomic_write_text
from vit_backend_plugin.report.load import BackendData, RunData, load_run
from vit_backend_plugin.report.metrics import SPEED_METRICS
from vit_backend_plugin.report.parity import compare


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


def _backend_summary(b: BackendData, run: RunData) -> dict[str, Any]:
    rows = [asdict(r) for r in b.results.rows] if b.results else []
    first_task = next((t for t in run.info.tasks if b.results and b.results.row(t)), None)
    root = b.results.row(first_task) if first_task else (b.results.rows[0] if rows else None)
    return {
        "state": b.state,
        "problems": list(b.problems),
        "errors": b.errors,
        "accuracy": root.value if root else None,
        "stderr": root.stderr if root else None,
        "metric": root.metric if root else None,
        "task": root.name if root else None,
        "n_items": root.n if root else None,
        "results": rows,
        "results_file": str(b.results.path.relative_to(run.run_dir)) if b.results else None,
        "samples_logged": len(b.samples.items) if b.samples else 0,
        "throughput": _numeric_metrics(b.throughput),
        "throughput_engine": (b.throughput or {}).get("engine"),
    }


def _differing(base: BackendData, cand: BackendData) -> list[dict[str, Any]]:
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


def _parity(base: BackendData, cand: BackendData, run: RunData) -> dict[str, Any]:
    def no_data(b: BackendData, who: str) -> str | None:
        if b.samples is not None and b.samples.items:
            return None
        why = "; ".join(b.problems) or "no per-item samples"
        return f"{who} {b.name} has no per-item results ({b.state}: {why})"

    reason = no_data(cand, "backend") or no_data(base, "baseline")
    if reason:
        return {"verdict": "ERROR", "reason": reason, "differing_items": []}
    res = compare(base.samples.as_items(), cand.samples.as_items(), run.thresholds).to_dict()
    damaged = [b.name for b in (base, cand) if b.samples.problems or b.state != "complete"]
    if damaged:  # never a PASS on data we know is incomplete
        if res["verdict"] == "PASS":
            res["verdict"] = "INCONCLUSIVE"
        res["reason"] = f"incomplete or damaged data for {', '.join(damaged)} (see problems); {res['reason']}"
    res["differing_items"] = _differing(base, cand)
    return res


def summarize(run: RunData) -> dict[str, Any]:
    info, baseline = run.info, run.info.baseline
    backends = {name: _backend_summary(b, run) for name, b in run.backends.items()}
    base_tp = backends[baseline]["throughput"]
    for s in backends.values():
        s["speedup"] = {k: speedup(k, v, base_tp.get(k)) for k, v in s["throughput"].items()}
    parity = {
        name: _parity(run.backends[baseline], b, run)
        for name, b in run.backends.items() if name != baseline
    }
    return {
        "run_id": info.run_id, "model": info.model, "engine": info.engine, "tasks": info.tasks,
        "baseline": baseline, "backend_order": list(run.backends),
        "thresholds": run.thresholds.model_dump(), "problems": run.problems,
        "backends": backends, "parity": parity,
    }


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    from vit_backend_plugin.report.render import render_html, render_markdown

    run = load_run(run_dir)
    summary = summarize(run)
    out = Path(out_dir) if out_dir is not None else run.run_dir
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "summary.json"}
    # summary.json last: its presence means the whole report was written
    atomic_write_text(paths["md"], render_markdown(summary))
    atomic_write_text(paths["html"], render_html(summary))
    atomic_write_json(paths["json"], summary)
    return paths
