"""``vit-parity record-engine RUN_DIR``: a finished `vit-parity run` through vLLM's engine becomes
an engine row of the user-local speed table, which the resolver lets overrule kernel rows.

Per backend directory it reads ``throughput.json`` (the median encoder images/s that vLLM's own
encoder timer measured, and the device) and the plugin's log line from ``throughput.log``
(``ViT attention: NAME (head_size=H, dtype=D; ...)``): the backend that really ran (AUTO is
recorded as what it chose), the head size and the dtype; and vLLM's "Resolved architecture"
line, the model class (runs of the user's architecture outrank the others). Kernel rows already
in the table stay.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from vit_backend_plugin import speed_table
from vit_backend_plugin.report.load import load_backend
from vit_backend_plugin.rundir import RunInfo

LOG_LINE = re.compile(r"ViT attention: (\w+) \(head_size=(\d+), dtype=(\w+)")
ARCH_LINE = re.compile(r"Resolved architecture: (\w+)")  # vLLM's model-config log line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run directory of `vit-parity run` (engine vllm, on a GPU)")
    parser.add_argument("--out", default=None, help="speed table path (default: the user-local table)")


class EvidenceError(ValueError):
    """The run cannot serve as engine evidence (says why)."""


def entry_from_run(run_dir: Path) -> speed_table.EngineEntry:
    info = RunInfo.read(run_dir)
    if info.engine != "vllm":
        raise EvidenceError(f"{run_dir}: engine {info.engine!r}; engine evidence comes from vLLM runs")
    ips: dict[str, float] = {}
    explicit: set[str] = set()
    facts: set[tuple[int, str]] = set()
    archs: set[str] = set()
    device = capability = None
    for backend in info.backends:
        tp = load_backend(Path(run_dir), backend).throughput  # the report's validated reader
        try:
            log = (Path(run_dir) / backend / "throughput.log").read_text(errors="replace")
        except OSError:
            log = ""
        if tp is None:
            continue  # not run, or its throughput phase failed: no evidence from it
        value = tp["metrics"].get("encoder_images_per_s")
        m = LOG_LINE.search(log)
        if not value or m is None:
            continue
        ran, head, dtype = m.group(1), int(m.group(2)), m.group(3)
        facts.add((head, dtype))
        archs.update(ARCH_LINE.findall(log))
        dev = tp.get("device") or {}
        device, capability = dev.get("device"), dev.get("capability")
        if ran in explicit:  # the backend named explicitly wins over AUTO resolving to it
            continue
        ips[ran] = float(value)
        if ran == backend:
            explicit.add(ran)
    if not ips:
        raise EvidenceError(f"{run_dir}: no backend has encoder images/s and a plugin log line "
                            "(vLLM's encoder timer runs on CUDA only)")
    if len(facts) != 1 or capability is None:
        raise EvidenceError(f"{run_dir}: backends disagree on head size/dtype or no device: {sorted(facts)}")
    (head, dtype), = facts
    if len(archs) > 1:
        raise EvidenceError(f"{run_dir}: backends ran different model architectures: {sorted(archs)}")
    major, minor = (int(x) for x in str(capability).split("."))
    return speed_table.EngineEntry(run=info.run_id, device=device or "", capability=(major, minor),
                                   dtype=dtype, head_size=head, encoder_images_per_s=ips,
                                   command=f"vit-parity run ({info.run_id})",
                                   architecture=next(iter(archs), ""))


def record(run_dir: Path, out: Path | None = None) -> tuple[speed_table.EngineEntry, Path]:
    entry = entry_from_run(Path(run_dir))
    table = speed_table.load_user(out) or speed_table.SpeedTable()
    table = table.model_copy(update={"engine": [e for e in table.engine if e.run != entry.run] + [entry]})
    return entry, speed_table.save_user(table, out)


def main(args) -> int:
    try:
        entry, path = record(Path(args.run_dir), Path(args.out) if args.out else None)
    except (EvidenceError, OSError, ValueError) as e:
        print(f"vit-parity record-engine: {e}", file=sys.stderr)
        return 2
    shown = ", ".join(f"{k} {v:.1f}" for k, v in sorted(entry.encoder_images_per_s.items()))
    print(f"recorded engine run {entry.run} (head_size={entry.head_size}, {entry.dtype}, "
          f"{entry.device}): encoder images/s {shown} -> {path}")
    return 0
