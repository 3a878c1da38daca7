"""`vit-parity run CONFIG`: MMMU through lm-eval + a throughput benchmark, once per ViT backend.

Each backend's phases run in fresh processes; results land in ``<output_dir>/<run-id>/<backend>/``
(see :mod:`vit_backend_plugin.rundir.layout`); a rerun skips what is complete and verified, redoes what
was interrupted or is corrupt; the report is built at the end.
"""

from __future__ import annotations

import argparse
import sys

from vit_backend_plugin.harness.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (see eval_configs/)")
    p.add_argument("--force", action="store_true", help="redo every backend, even complete ones")
    p.add_argument("--backends", help="comma list: run (and report) only these, in this order")
    p.add_argument("--run-id", help="run directory name under output_dir (default: config name)")
    p.add_argument("--output-dir", help="override the config's output_dir")
    p.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config and print every command; run nothing")


def fail(prog: str, msg: str) -> int:
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from vit_backend_plugin.harness.config import load_config
    from vit_backend_plugin.harness.runner import execute, prepare, print_plan

    overrides = {}
    if args.backends:
        names = [b.strip() for b in args.backends.split(",") if b.strip()]
        overrides["backends"] = names
        overrides["baseline"] = None  # first listed is the baseline of this run
    try:
        cfg = load_config(args.config, overrides)
        plan = prepare(cfg, run_id=args.run_id, output_dir=args.output_dir, force=args.force)
    except ConfigError as e:
        return fail("vit-parity run", str(e))
    if args.dry_run:
        print_plan(plan)
        return 0
    try:
        return execute(plan, force=args.force, report=not args.no_report)
    except KeyboardInterrupt:
        print("vit-parity run: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
