"""`vit-parity report RUN_DIR | --lm-eval BASE CAND ... --out DIR`: parity verdicts +
report.md/.html/summary.json; the exit code gates CI (report/exit_codes.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROG = "vit-parity report"
USAGE_ERROR = 2  # as argparse's own

DESCRIPTION = """\
Parity verdicts (paired McNemar + CI of the accuracy change, per arm against the baseline),
accuracy, speed, versions and settings: report.md, report.html, summary.json.

From a run directory of `vit-parity run`, or from lm-eval's own output folders: what
`lm_eval --model vllm-vlm ... --log_samples --output_path FOLDER` wrote, one folder per arm,
baseline first (optionally with one `vllm bench serve --save-result` JSON per arm for speed)."""

EPILOG = """\
exit codes:
  0  every verdict PASS or INCONCLUSIVE (with --strict: every verdict PASS); always
     with --no-fail
  1  at least one FAIL and no ERROR (with --strict: or an INCONCLUSIVE)
  3  at least one ERROR: an arm or the baseline has no per-item results (crashed, missing,
     unreadable)
  2  usage error: bad arguments, not a run directory, an lm-eval folder without results
Warnings (versions or lm-eval config that differ from the baseline's without the arm
asking for it) and speed verdicts (faster / slower / no detectable difference) are shown
in the report and never change the code. A closed stdout
(`| head`) ends it with 1 after the report is written.

examples:
  vit-parity report reports/my-run
  vit-parity report --lm-eval out/flash out/sdpa --names FLASH_ATTN,TORCH_SDPA --out cmp/
  vit-parity report --lm-eval out/flash out/sdpa --bench-serve flash.json sdpa.json --out cmp/"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, nargs="?",
                        help="a run directory written by `vit-parity run` (holds run.json)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write report.md, report.html, summary.json (default: "
                             "RUN_DIR; required with --lm-eval)")
    lm = parser.add_argument_group("lm-eval output folders instead of a run directory")
    lm.add_argument("--lm-eval", dest="lm_eval", metavar="FOLDER", type=Path, nargs="+",
                    help="lm-eval --output_path folders, one per arm, baseline first")
    lm.add_argument("--names", metavar="A,B,...",
                    help="arm names, comma-separated, in folder order (default: the folder "
                         "names, made unique)")
    lm.add_argument("--bench-serve", dest="bench_serve", metavar="JSON", type=Path, nargs="+",
                    help="`vllm bench serve --save-result` files, one per arm, same order")
    lm.add_argument("--parity", metavar="KEY=VALUE", action="append", default=[],
                    help="parity threshold (alpha, max_abs_delta_points, confidence, "
                         "min_items), as a config's parity:; repeatable")
    gate = parser.add_argument_group("exit code")
    gate.add_argument("--no-fail", action="store_true",
                      help="write the report and exit 0 whatever the verdicts")
    gate.add_argument("--strict", action="store_true",
                      help="INCONCLUSIVE counts as FAIL (demand evidence of parity)")


def _fail(msg: str) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return USAGE_ERROR


def _print_summary(summary: dict, paths: dict[str, Path]) -> None:
    from vit_backend_plugin.report.render import control_label

    print(f"baseline {summary['baseline']}")
    for name, p in summary["parity"].items():
        print(f"{p['verdict']:<12} {name}: {p['reason']}")
    speeds = list(summary["speed"].items())
    if summary["speed_control"] is not None:
        speeds.append((control_label(summary["speed_control"]), summary["speed_control"]))
    for name, sp in speeds:
        print(f"speed        {name}: {sp['verdict']} ({sp['reason']})")
    for name in summary["arm_order"]:
        for problem in summary["arms"][name]["problems"]:
            print(f"problem      {name}: {problem}")
    for w in summary["warnings"]:
        print(f"warning      {w['message']}")
    for p in paths.values():
        print(f"wrote {p}")


def _usage_problem(args: argparse.Namespace) -> str | None:
    if (args.run_dir is None) == (args.lm_eval is None):
        return "give a RUN_DIR or --lm-eval FOLDER ... (one of them)"
    if args.run_dir is not None:
        extra = [o for o, v in (("--names", args.names), ("--bench-serve", args.bench_serve),
                                ("--parity", args.parity)) if v]
        if extra:
            return f"{', '.join(extra)}: only with --lm-eval (a run dir has its own)"
    elif args.out is None:
        return "--lm-eval needs --out DIR (where to write the report)"
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} is a file; give a directory (it is created if missing)"
    return None


def _load(args: argparse.Namespace):
    from vit_backend_plugin.report.lm_eval_source import (
        load_lm_eval_folders,
        parse_names,
        parse_thresholds,
    )
    from vit_backend_plugin.report.load import load_run

    if args.run_dir is not None:
        return load_run(args.run_dir)
    names = parse_names(args.names, len(args.lm_eval)) if args.names is not None else None
    return load_lm_eval_folders(args.lm_eval, names=names, bench_serve=args.bench_serve,
                                thresholds=parse_thresholds(args.parity),
                                run_id=args.out.absolute().name)


def main(args: argparse.Namespace) -> int:
    import json

    from vit_backend_plugin.report.build import write_report
    from vit_backend_plugin.report.exit_codes import exit_code
    from vit_backend_plugin.report.lm_eval_source import UsageError
    from vit_backend_plugin.report.load import NotARunDir

    problem = _usage_problem(args)
    if problem:
        return _fail(problem)
    try:
        run = _load(args)
        paths = write_report(run, args.out)
    except (NotARunDir, UsageError) as e:
        return _fail(str(e))
    except OSError as e:  # e.g. --out under a file, or not writable
        where = f" ({e.filename})" if e.filename else ""
        return _fail(f"cannot write the report: {e.strerror or e}{where}")
    summary = json.loads(paths["json"].read_text(encoding="utf-8"))
    try:
        _print_summary(summary, paths)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
    except BrokenPipeError:
        # as CPython's signal docs recommend: the reader went away (`| head`); point stdout at
        # devnull so the exit flush stays quiet, and leave without a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0 if args.no_fail else exit_code(summary, inconclusive_fails=args.strict)
