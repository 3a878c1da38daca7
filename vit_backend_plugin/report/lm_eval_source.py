"""lm-eval output folders given by hand (`vit-parity report --lm-eval BASE CAND ...`) as a
report's :class:`~vit_backend_plugin.report.load.RunData`, so results made with lm-eval's own
CLI get the same paired verdict, item differences, HTML and summary.json as a run directory.

Each folder is what ``lm_eval --model vllm-vlm ... --log_samples --output_path FOLDER`` wrote
(read by :mod:`vit_backend_plugin.rundir.lm_eval_output`, as the runner and the run-dir report
read theirs). Optionally one ``vllm bench serve --save-result`` JSON per arm fills the speed
section (:data:`~vit_backend_plugin.report.metrics.BENCH_SERVE_METRICS`).

Arguments are checked before any results are read: :class:`UsageError` is a one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from vit_backend_plugin.report.load import ArmData, RunData, read_lm_eval
from vit_backend_plugin.report.metrics import (
    BENCH_SERVE_ENGINE,
    BENCH_SERVE_METRICS,
    from_bench_serve,
)
from vit_backend_plugin.report.parity import ParityThresholds
from vit_backend_plugin.rundir.lm_eval_output import results_files


class UsageError(ValueError):
    """Bad arguments: the message is one line, for the command line (exit 2)."""


def default_names(folders: list[Path]) -> list[str]:
    """Each folder's name; where names repeat (``a/lm_eval``, ``b/lm_eval``), the shortest
    path endings that tell them apart; the same folder twice is numbered."""
    parts = [Path(f).absolute().parts for f in folders]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    seen: dict[str, int] = {}
    out = []
    for n in (Path(f).name for f in folders):
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def parse_names(text: str, count: int) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if len(names) != count:
        raise UsageError(f"--names has {len(names)} name(s) for {count} --lm-eval folder(s)")
    if not all(names):
        raise UsageError("--names: an empty name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"--names: {', '.join(dup)} given twice")
    return names


def parse_thresholds(pairs: list[str]) -> ParityThresholds:
    """``--parity KEY=VALUE`` (as the config's ``parity:``)."""
    values = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--parity {p!r}: give KEY=VALUE, e.g. max_abs_delta_points=2")
        values[key.strip()] = value.strip()
    try:
        return ParityThresholds.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"])) or "?"
        raise UsageError(f"--parity {where}: {first['msg']} (keys: "
                         f"{', '.join(ParityThresholds.model_fields)})") from None


def read_bench_serve(path: Path) -> dict[str, float]:
    """The report's speed metrics from one `vllm bench serve --save-result` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--bench-serve {path}: cannot read it ({e})") from None
    try:
        result = json.loads(text)
    except ValueError as e:
        several = len([ln for ln in text.splitlines() if ln.strip()]) > 1
        hint = "; one result per line (--append-result?): give a file of one run" if several else ""
        raise UsageError(f"--bench-serve {path}: not JSON ({e}){hint}") from None
    if not isinstance(result, dict) or not from_bench_serve(result):
        raise UsageError(f"--bench-serve {path}: not a `vllm bench serve --save-result` file "
                         f"(none of {', '.join(BENCH_SERVE_METRICS)})")
    return from_bench_serve(result)


def check_folders(folders: list[Path]) -> None:
    if len(folders) < 2:
        raise UsageError("--lm-eval needs two or more folders: the baseline's, then each arm's")
    for f in folders:
        if not f.is_dir():
            raise UsageError(f"--lm-eval {f}: not a directory")
        if not results_files(f):
            raise UsageError(f"--lm-eval {f}: no lm-eval results (results_*.json) under it; "
                             "give lm_eval's --output_path")


def load_lm_eval_folders(folders: list[Path], *, names: list[str] | None = None,
                         bench_serve: list[Path] | None = None,
                         thresholds: ParityThresholds | None = None,
                         run_id: str = "lm-eval") -> RunData:
    """Check the arguments, then read every folder (and bench-serve file): baseline first."""
    check_folders(folders)
    names = names if names is not None else default_names(folders)
    if len(names) != len(folders):
        raise UsageError(f"{len(names)} name(s) for {len(folders)} --lm-eval folder(s)")
    if bench_serve is not None and len(bench_serve) != len(folders):
        raise UsageError(f"--bench-serve has {len(bench_serve)} file(s) for {len(folders)} "
                         "--lm-eval folder(s): give one per arm, in the same order")
    speed = [read_bench_serve(p) for p in bench_serve] if bench_serve is not None else None

    arms: dict[str, ArmData] = {}
    for i, (name, folder) in enumerate(zip(names, folders, strict=True)):
        arm = ArmData(name, "incomplete")
        read_lm_eval(arm, folder, expected=True, stale=False)
        if arm.results is not None and arm.results.output.complete:
            arm.state = "complete"
        if speed is not None:
            arm.throughput = {"engine": BENCH_SERVE_ENGINE, "metrics": speed[i]}
            arm.throughput_file = str(bench_serve[i])
        arms[name] = arm
    base = arms[names[0]]
    rec = base.results.output.recorded() if base.results else None
    model = (rec.model_name or rec.model_args) if rec else None
    tasks = [r.name for r in base.results.rows if r.depth == 0] if base.results else []
    return RunData("lm_eval", Path(folders[0]), run_id, str(model or "unknown"),
                   str((rec.model if rec else None) or "lm-eval"), tasks, names[0], arms,
                   thresholds or ParityThresholds())
