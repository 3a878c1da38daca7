"""`vit-parity run CONFIG`: MMMU through lm-eval + a throughput benchmark, once per arm.

An arm is one setting under test: a ViT backend, engine arguments, environment, an interpreter
(:mod:`vit_backend_plugin.harness.arms`). Each arm's phases run in fresh processes; results land
in ``<output_dir>/<run-id>/<arm>/`` (see :mod:`vit_backend_plugin.rundir.layout`); a rerun skips
what is complete and verified, redoes what was interrupted or is corrupt; the report is built at
the end, and the exit code follows its verdicts (:mod:`vit_backend_plugin.harness.outcome`).
"""

from __future__ import annotations

import argparse
import sys

from vit_backend_plugin.harness.config import ConfigError

EXIT_CODES = """\
exit codes (CI gating; from the verdicts of the report built at the end):
  0  every verdict PASS (or INCONCLUSIVE); for a throughput-only run, a run of one arm or
     --no-report: every arm completed
  1  at least one verdict FAIL
  2  usage or config error (nothing ran)
  3  at least one ERROR: an arm failed or is incomplete, its verdict is ERROR, or the report
     could not be built
  with --no-fail: 0 whenever the run itself completed (the report was built)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXIT_CODES
    p.add_argument("config", help="YAML config (see eval_configs/)")
    p.add_argument("--force", action="store_true",
                   help="redo every arm, even complete ones (also: arms whose settings changed)")
    p.add_argument("--arms", "--backends", dest="arms", metavar="A,B",
                   help="comma list of arm names: run (and report) only these, in this order, the "
                        "first as baseline; with a `backends:` config, the backends to run")
    p.add_argument("--run-id", help="run directory name under output_dir (default: config name)")
    p.add_argument("--output-dir", help="override the config's output_dir")
    p.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    p.add_argument("--no-fail", action="store_true",
                   help="report without failing: exit 0 whenever the run itself completed")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config and print every command; run nothing")
    p.add_argument("--gpus", metavar="N|all",
                   help="run arms' accuracy phases side by side, each on its own devices "
                        "(tensor x pipeline x data parallel size of its engine_args) of the first N "
                        "GPUs (or all), starting arms as devices free up; throughput is then "
                        "measured on the first device(s) with no other arm running. Default: one "
                        "arm at a time on the first visible device. VIT_PARITY_FAKE_GPUS=0,1,.. "
                        "gives device ids on a machine without GPUs (tests)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="run arms' accuracy phases as Ray tasks, each holding the GPUs it needs, "
                        "on the cluster at ADDR (host:port, 'auto' for the one this node belongs "
                        "to, 'local' to start one here); the run dir must be on a filesystem all "
                        "nodes share. Throughput is measured on this host afterwards")


def fail(prog: str, msg: str) -> int:
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from vit_backend_plugin.harness.config import load_config
    from vit_backend_plugin.harness.runner import execute, prepare, print_plan

    names = [a.strip() for a in (args.arms or "").split(",") if a.strip()]
    try:
        cfg = load_config(args.config, arms=names)
        plan = prepare(cfg, run_id=args.run_id, output_dir=args.output_dir, force=args.force,
                       gpus=args.gpus, ray_address=args.ray_address)
    except ConfigError as e:
        return fail("vit-parity run", str(e))
    if args.dry_run:
        print_plan(plan)
        return 0
    try:
        return execute(plan, force=args.force, report=not args.no_report, no_fail=args.no_fail)
    except ConfigError as e:  # the Ray cluster cannot be reached or cannot hold an arm
        return fail("vit-parity run", str(e))
    except KeyboardInterrupt:
        print("vit-parity run: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
