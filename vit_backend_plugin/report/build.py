"""Arms (a run directory, or lm-eval output folders) -> summary dict -> report.md, report.html,
summary.json (written atomically).

Every number shown comes from the summary dict, so the three files never disagree; accuracy
numbers are lm-eval's own (copied from its results file), parity is recomputed from samples,
speed verdicts from the timed rounds of each throughput.json (speed_stats.py: never a change of
the exit code).
The summary is checked against :class:`~vit_backend_plugin.report.summary_schema.Summary`
before anything is written.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vit_backend_plugin.common.files import atomic_write_json, atomic_write_text
from vit_backend_plugin.report import provenance
from vit_backend_plugin.report.load import ArmData, RunData, load_run
from vit_backend_plugin.report.metrics import SPEED_METRICS
from vit_backend_plugin.report.parity import compare
from vit_backend_plugin.report.power import min_detectable_delta
from vit_backend_plugin.report.speed_stats import (
    CONFIDENCE,
    compare_arm,
    control_spread,
    describe,
    within_spread,
)
from vit_backend_plugin.report.summary_schema import SCHEMA_VERSION, Summary
from vit_backend_plugin.rundir.layout import AA_CONTROL


def _higher_is_better(key: str) -> bool:
    if key in SPEED_METRICS:
        return SPEED_METRICS[key][1]
    return not (key.endswith("_ms") or (key.endswith("_s") and not key.endswith("_per_s")))


def speedup(key: str, value: float | None, base: float | None) -> float | None:
    if value is None or base is None or value <= 0 or base <= 0:
        return None
    return value / base if _higher_is_better(key) else base / value


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _numeric_metrics(tp: dict[str, Any] | None) -> dict[str, float]:
    """Each metric's median over the timed rounds (what the report says it shows); the value
    written under "metrics" where no round has one (bench-serve files have no rounds)."""
    if not tp:
        return {}
    out = {}
    for k, v in tp.get("metrics", {}).items():
        per_round = [r[k] for r in tp.get("repeats", []) if _number(r.get(k))]
        if per_round:
            out[k] = float(statistics.median(per_round))
        elif _number(v):
            out[k] = float(v)
    return out


def _rounds(a: ArmData | None) -> list[dict[str, Any]]:
    """The timed rounds of an arm; one unpaired value (its metrics) where it has none."""
    tp = (a.throughput if a else None) or {}
    return tp.get("repeats") or ([tp["metrics"]] if tp.get("metrics") else [])


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
    res["min_detectable_delta"] = min_detectable_delta(res["n"], res["b"] + res["c"], run.thresholds.alpha)
    damaged = [a.name for a in (base, cand) if a.samples.problems or a.state != "complete"]
    if damaged:  # never a PASS on data we know is incomplete
        if res["verdict"] == "PASS":
            res["verdict"] = "INCONCLUSIVE"
        res["reason"] = f"incomplete or damaged data for {', '.join(damaged)} (see problems); {res['reason']}"
    res["differing_items"] = _differing(base, cand)
    return res


def _speed(base: ArmData, cand: ArmData | None) -> dict[str, Any]:
    rb, rc = _rounds(base), _rounds(cand)
    res = compare_arm(rb, rc, CONFIDENCE)
    primary = res.primary
    if primary is not None:
        reason = describe(primary, CONFIDENCE)
    else:
        who = [f"{a.name} ({a.state})" for a, r in ((base, rb), (cand, rc)) if a and not r]
        reason = ("no timed rounds for " + ", ".join(who) if who
                  else "no speed metric both arms timed")
    return {**res.to_dict(), "reason": reason, "within_control": None}


def _against_control(speed: dict[str, dict[str, Any]], ctl: dict[str, Any] | None) -> None:
    """Each arm's primary ratio against the A/A control's spread on that metric: a faster or
    slower inside it is said to be indistinguishable from two engines of one setting."""
    if ctl is None or ctl["problems"]:  # no control, or one that is no A/A of the baseline
        return
    for sp in speed.values():
        c = ctl["metrics"].get(sp["primary_metric"])
        if c is None:
            continue
        m = sp["primary_metric"]
        spread = control_spread(c["ci_low"], c["ci_high"])
        sp["within_control"] = within_spread(sp["metrics"][m]["ratio"], spread)
        if sp["within_control"] and sp["verdict"] in ("faster", "slower"):
            sp["reason"] += (f"; within the A/A control's spread ×{spread[0]:.3f}-×{spread[1]:.3f}: "
                             "not told apart from two engines of the same settings")


def _speed_control(run: RunData) -> dict[str, Any] | None:
    ctl = run.control
    if ctl is None:
        return None
    tp = ctl.throughput or {}
    of = tp.get("control_of") if isinstance(tp.get("control_of"), str) else None
    problems = list(ctl.problems)
    if of is not None and of != run.baseline:
        problems.append(f"{AA_CONTROL} repeats {of!r}, not the baseline {run.baseline!r}: its "
                        "verdict against the baseline is no A/A control")
    return {**_speed(run.arms[run.baseline], ctl), "control_of": of, "state": ctl.state,
            "problems": problems, "throughput": _numeric_metrics(ctl.throughput),
            "throughput_file": ctl.throughput_file}


def _speed_timing(base: ArmData) -> dict[str, Any]:
    tp = base.throughput or {}
    inter = tp.get("interleave") if isinstance(tp.get("interleave"), dict) else None
    rounds = (inter or {}).get("rounds")
    return {
        "confidence": CONFIDENCE,
        "interleaved": (inter is not None) if tp.get("repeats") else None,
        "together": (inter or {}).get("together") if isinstance((inter or {}).get("together"), bool) else None,
        "rounds": rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else None,
    }


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
    } if run.accuracy else {}  # a throughput-only run has no accuracy to compare
    summary = {
        "schema_version": SCHEMA_VERSION, "source": run.source,
        "run_id": run.run_id, "model": run.model, "engine": run.engine, "tasks": run.tasks,
        "baseline": baseline, "arm_order": list(run.arms),
        "thresholds": run.thresholds.model_dump(), "problems": run.problems,
        "accuracy_measured": run.accuracy,
        "warnings": _warnings(run, arms), "arms": arms, "parity": parity,
        "speed": {name: _speed(run.arms[baseline], a) for name, a in run.arms.items() if name != baseline},
        "speed_control": _speed_control(run), "speed_timing": _speed_timing(run.arms[baseline]),
    }
    _against_control(summary["speed"], summary["speed_control"])
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
