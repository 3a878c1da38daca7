"""`vit-parity report RUN_DIR [--out DIR]`: parity verdict + report.md/.html/summary.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                        help="a run directory written by `vit-parity run` (holds run.json)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write report.md, report.html, summary.json (default: RUN_DIR)")


def main(args: argparse.Namespace) -> int:
    from vit_backend_plugin.report.build import build_report
    from vit_backend_plugin.report.load import NotARunDir

    try:
        paths = build_report(args.run_dir, args.out)
    except NotARunDir as e:
        print(f"vit-parity report: error: {e}", file=sys.stderr)
        return 2
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
    return 0
