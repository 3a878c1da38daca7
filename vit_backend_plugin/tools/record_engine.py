"""``vit-parity record-engine RUN_DIR``: a finished `vit-parity run` through vLLM's engine becomes
an engine row of the user-local speed table, which the resolver lets overrule kernel rows.

Per backend directory it reads ``throughput.json`` (the median encoder images/s that vLLM's own
encoder timer measured, and the device) and the plugin's log line from ``throughput.log``
(``ViT attention: NAME (head_size=H, dtype=D; ...)``): the backend that really ran (AUTO is
recorded as what it chose), the head size and the dtype; and vLLM's "Resolved architecture"
line, the model class (runs of the user's architecture outrank the others). Kernel rows already
in the table stay. A folder from ``scripts/gpu_inproc_runs.sh`` (``inproc.jsonl`` and logs: the
engine core in each backend's process, vLLM's steadier setting) gives one row per config.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from vit_backend_plugin.report.load import load_backend
from vit_backend_plugin.rundir.layout import RunInfo
from vit_backend_plugin.selection import speed_table

LOG_LINE = re.compile(r"ViT attention: (\w+) \(head_size=(\d+), dtype=(\w+)")
ARCH_LINE = re.compile(r"Resolved architecture: (\w+)")  # vLLM's model-config log line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run directory of `vit-parity run` (engine vllm, on a GPU), or a "
                        "folder with the inproc.jsonl of scripts/gpu_inproc_runs.sh and its logs")
    parser.add_argument("--out", default=None, help="speed table path (default: the user-local table)")


class EvidenceError(ValueError):
    """The run cannot serve as engine evidence (says why)."""


def entry_from_run(run_dir: Path) -> speed_table.EngineEntry:
    info = RunInfo.read(run_dir)
    if info.engine != "vllm":
        raise EvidenceError(f"{run_dir}: engine {info.engine!r}; engine evidence comes from vLLM runs")
    seen = []
    for backend in info.arms:
        tp = load_backend(Path(run_dir), backend).throughput  # the report's validated reader
        if tp is None:
            continue  # not run, or its throughput phase failed: no evidence from it
        seen.append((backend, tp["metrics"].get("encoder_images_per_s"),
                     _read(Path(run_dir) / backend / "throughput.log"), tp.get("device") or {}))
    return _entry(str(run_dir), info.run_id, seen, f"vit-parity run ({info.run_id})")


def entries_from_inproc(folder: Path) -> list[speed_table.EngineEntry]:
    """The runs of ``scripts/gpu_inproc_runs.sh`` (one process per backend, engine core in it):
    ``inproc.jsonl`` plus each run's log ``<config>_<backend>.log``; one entry per config that
    compared two or more backends as they ran (run name ``<config>_inproc``). ``null`` runs (the
    attention-free diagnostic) are no backend and are skipped."""
    by_config: dict[str, list] = {}
    for line in (Path(folder) / "inproc.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        res = rec.get("result") or {}
        if rec["backend"] == "null" or rec.get("rc") != 0 or res.get("mode", "as_run") != "as_run":
            continue
        log = _read(Path(folder) / f"{rec['config']}_{rec['backend']}.log") or rec.get("plugin_log", "")
        by_config.setdefault(rec["config"], []).append(
            (rec["backend"], res.get("encoder_images_per_s"), log, res.get("device") or {}))
    out = []
    for config, seen in by_config.items():
        entry = _entry(f"{folder}: {config}", f"{config}_inproc", seen,
                       "scripts/gpu_inproc_runs.sh (one process per backend)")
        if len(entry.encoder_images_per_s) >= 2:
            out.append(entry)
    if not out:
        raise EvidenceError(f"{folder}: no config compared two backends in inproc.jsonl")
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _entry(where: str, run: str, seen: list[tuple[str, float | None, str, dict]],
           command: str) -> speed_table.EngineEntry:
    """``seen``: (backend as requested, encoder images/s, its log text, device info) per process."""
    ips: dict[str, float] = {}
    explicit: set[str] = set()
    facts: set[tuple[int, str]] = set()
    archs: set[str] = set()
    device = capability = None
    for backend, value, log, dev in seen:
        m = LOG_LINE.search(log)
        if not value or m is None:
            continue
        ran, head, dtype = m.group(1), int(m.group(2)), m.group(3)
        facts.add((head, dtype))
        archs.update(ARCH_LINE.findall(log))
        device, capability = dev.get("device"), dev.get("capability")
        if ran in explicit:  # the backend named explicitly wins over AUTO resolving to it
            continue
        ips[ran] = float(value)
        if ran == backend:
            explicit.add(ran)
    if not ips:
        raise EvidenceError(f"{where}: no backend has encoder images/s and a plugin log line "
                            "(vLLM's encoder timer runs on CUDA only)")
    if len(facts) != 1 or capability is None:
        raise EvidenceError(f"{where}: backends disagree on head size/dtype or no device: {sorted(facts)}")
    (head, dtype), = facts
    if len(archs) > 1:
        raise EvidenceError(f"{where}: backends ran different model architectures: {sorted(archs)}")
    major, minor = (int(x) for x in str(capability).split("."))
    return speed_table.EngineEntry(run=run, device=device or "", capability=(major, minor),
                                   dtype=dtype, head_size=head, encoder_images_per_s=ips,
                                   command=command, architecture=next(iter(archs), ""))


def record(run_dir: Path, out: Path | None = None) -> tuple[list[speed_table.EngineEntry], Path]:
    """A run directory, or a folder of in-process runs (``inproc.jsonl``), into the table; a run
    recorded again replaces its row."""
    run_dir = Path(run_dir)
    entries = (entries_from_inproc(run_dir) if (run_dir / "inproc.jsonl").is_file()
               else [entry_from_run(run_dir)])
    names = {e.run for e in entries}
    table = speed_table.load_user(out) or speed_table.SpeedTable()
    table = table.model_copy(update={"engine": [e for e in table.engine if e.run not in names] + entries})
    return entries, speed_table.save_user(table, out)


def main(args) -> int:
    try:
        entries, path = record(Path(args.run_dir), Path(args.out) if args.out else None)
    except (EvidenceError, OSError, ValueError) as e:
        print(f"vit-parity record-engine: {e}", file=sys.stderr)
        return 2
    for entry in entries:
        shown = ", ".join(f"{k} {v:.1f}" for k, v in sorted(entry.encoder_images_per_s.items()))
        print(f"recorded engine run {entry.run} (head_size={entry.head_size}, {entry.dtype}, "
              f"{entry.device}): encoder images/s {shown} -> {path}")
    return 0
