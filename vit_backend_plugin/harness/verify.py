"""Whether a phase's outputs are complete: the rule a rerun uses to skip a phase, and the
runner uses to call a phase complete (and to end a child that would not exit)."""

from __future__ import annotations

import json
from pathlib import Path

from vit_backend_plugin.harness.config import Config
from vit_backend_plugin.rundir.layout import LM_EVAL_DIR, THROUGHPUT


def _lm_eval_files(bdir: Path) -> tuple[list[Path], list[Path]]:
    root = bdir / LM_EVAL_DIR
    return sorted(root.rglob("results_*.json")), sorted(root.rglob("samples_*.jsonl"))


def verify_accuracy(bdir: Path, tasks: list[str]) -> str | None:
    """None if lm-eval's results and per-item samples are all there and parse; else why not."""
    results, _ = _lm_eval_files(bdir)
    if not results:
        return "no lm-eval results file"
    if len(results) > 1:
        return f"{len(results)} lm-eval results files (expected one)"
    try:
        data = json.loads(results[0].read_text())
    except (OSError, ValueError) as e:
        return f"corrupt results file {results[0].name}: {e}"
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        return f"results file {results[0].name} has no 'results' section"
    known = set(data["results"]) | set(data.get("groups") or {})
    missing = [t for t in tasks if t not in known]
    if missing:
        return f"results file lacks task(s) {', '.join(missing)}"
    n_samples = data.get("n-samples") or {}
    stamp = results[0].name[len("results_"):-len(".json")]  # lm-eval names both with one timestamp
    for leaf in data.get("configs") or {}:
        sample_file = results[0].parent / f"samples_{leaf}_{stamp}.jsonl"
        try:
            lines = [json.loads(x) for x in sample_file.read_text().splitlines() if x.strip()]
        except FileNotFoundError:
            return f"no samples file for task {leaf}"
        except (OSError, ValueError) as e:
            return f"corrupt samples file {sample_file.name}: {e}"
        want = (n_samples.get(leaf) or {}).get("effective")
        if want is not None and len(lines) != want:
            return f"samples file for {leaf} has {len(lines)} items, results say {want}"
    return None


def verify_throughput(bdir: Path, enabled: bool) -> str | None:
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
    return None


ACCURACY_SKIPPED = "SKIPPED"  # lm_eval/SKIPPED: the config turned the accuracy phase off


def verify(phase: str, bdir: Path, cfg: Config) -> str | None:
    if phase == "accuracy":
        if not cfg.accuracy:
            ok = (bdir / LM_EVAL_DIR / ACCURACY_SKIPPED).is_file()
            return None if ok else "accuracy was run but is now disabled"
        return verify_accuracy(bdir, cfg.tasks)
    return verify_throughput(bdir, cfg.throughput.enabled)
