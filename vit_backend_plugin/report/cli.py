"""`vit-parity report RUN_DIR [--out DIR]`: parity verdict + report.md/.html/summary.json."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROG = "vit-parity report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                        help="a run directory written by `vit-parity run` (holds run.json)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write report.md, report.html, summary.json (default: RUN_DIR)")


def _fail(msg: str) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 2


def _print_summary(paths: dict[str, Path]) -> None:
    import json

    summary = json.loads(paths["json"].read_text(encoding="utf-8"))
    print(f"baseline {summary['baseline']}")
    for name, p in summary["parity"].items():
        print(f"{p['verdict']:<12} {name}: {p['reason']}")
    for name in summary["backend_order"]:
        for problem in summary["backends"][name]["problems"]:
            print(f"problem      {name}: {problem}")
    for p in paths.values():
        print(f"wrote {p}")


def main(args: argparse.Namespace) -> int:
    from vit_backend_plugin.report.build import build_report
    from vit_backend_plugin.report.load import NotARunDir

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        return _fail(f"--out {args.out} is a file; give a directory (it is created if missing)")
    try:
        paths = build_report(args.run_dir, args.out)
    except NotARunDir as e:
        return _fail(str(e))
    except OSError as e:  # e.g. --out under a file, or not writable
        where = f" ({e.filename})" if e.filename else ""
        return _fail(f"cannot write the report: {e.strerror or e}{where}")
    try:
        _print_summary(paths)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
    except BrokenPipeError:
        # as CPython's signal docs recommend: the reader went away (`| head`); point stdout at
        # devnull so the exit flush stays quiet, and leave without a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0
