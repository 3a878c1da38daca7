"""Whether a phase's outputs are complete: the rule a rerun uses to skip a phase, and the
runner uses to call a phase complete (and to end a child that would not exit)."""

from __future__ import annotations

import json
from pathlib import Path

from vit_backend_plugin.harness.config import Config
from vit_backend_plugin.rundir.layout import LM_EVAL_DIR, THROUGHPUT
from vit_backend_plugin.rundir.lm_eval_output import read_output


def verify_accuracy(bdir: Path, tasks: list[str]) -> str | None:
    """None if lm-eval's results and per-item samples are all there and readable; else why not.
    Which results file counts is :func:`~vit_backend_plugin.rundir.lm_eval_output.read_output`'s
    rule, the one the report reads by."""
    out = read_output(bdir / LM_EVAL_DIR)
    if out is None:
        return "no lm-eval results file"
    if out.problem is not None:
        return out.problem
    known = set(out.raw["results"]) | set(out.raw.get("groups") or {})
    missing = [t for t in tasks if t not in known]
    if missing:
        return f"results file lacks task(s) {', '.join(missing)}"
    return None


def verify_throughput(bdir: Path, enabled: bool, rounds: int | None = None) -> str | None:
    path = bdir / THROUGHPUT
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return "no throughput.json"
    except (OSError, ValueError) as e:
        return f"corrupt throughput.json: {e}"
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        return "throughput.json has no metrics"
    if data.get("skipped"):
        return "throughput was skipped but is now enabled" if enabled else None
    if not data["metrics"] or all(v is None for v in data["metrics"].values()):
        return "throughput.json has no measured values"
    have = data.get("repeats")
    if rounds is not None and (not isinstance(have, list) or len(have) != rounds):
        return f"throughput.json has {len(have) if isinstance(have, list) else 0} rounds, the config asks {rounds}"
    if rounds is not None and not isinstance(data.get("interleave"), dict):
        return "throughput.json was timed before rounds were interleaved"
    return None


ACCURACY_SKIPPED = "SKIPPED"  # lm_eval/SKIPPED: the config turned the accuracy phase off


def verify(phase: str, bdir: Path, cfg: Config) -> str | None:
    if phase == "accuracy":
        if not cfg.accuracy:
            ok = (bdir / LM_EVAL_DIR / ACCURACY_SKIPPED).is_file()
            return None if ok else "accuracy was run but is now disabled"
        return verify_accuracy(bdir, cfg.tasks)
    return verify_throughput(bdir, cfg.throughput.enabled, cfg.throughput.repeats)
