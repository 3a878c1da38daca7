"""`vit-parity demo`: the embedded offline default. No GPU, no network, a few minutes on two cores.

Builds (once, cached) a tiny Qwen2-VL with vision head_dim 80, with shipped weights trained to
answer the data's questions from the image, and a tiny MMMU-format data set
(:mod:`vit_backend_plugin.harness.demo_assets`), then runs exactly what `vit-parity run`
runs for its config (``data/demo.yaml`` in the package, also ``eval_configs/demo.yaml``): lm-eval's own
``vllm-vlm`` model and ``mmmu_val`` task on vLLM's CPU engine for three arms, ``TORCH_SDPA``
(vLLM's CPU default, the baseline), the plugin's ``VIT_TRITON`` (our kernel, in Triton's
interpreter on CPU: an accurate change) and ``low_res`` (every image shrunk to one vision token:
a change that makes the model see less), the throughput phase through vLLM, the report. The
demo exits 0 when the verdicts are the expected ones (``VIT_TRITON`` PASS, ``low_res`` FAIL:
the tool tells an accurate change from an inaccurate one), 1 otherwise, 3 on an error.
``--engine hf`` runs the transformers variant (``eval_configs/demo_hf.yaml``: ``eager`` against
``sdpa``), where every verdict is expected to PASS.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from importlib import resources
from pathlib import Path

import yaml

from vit_backend_plugin.harness.config import ConfigError

# Data, shipped in the package (a wheel has no eval_configs/; a test keeps those copies equal).
DEMO_CONFIGS = {"vllm": "data/demo.yaml", "hf": "data/demo_hf.yaml"}
# What each demo shows: the verdict every arm should get against the baseline.
EXPECTED = {"vllm": {"VIT_TRITON": "PASS", "low_res": "FAIL"}, "hf": {"sdpa": "PASS"}}


def check_expected(summary: dict, engine: str) -> list[str]:
    """The arms whose verdict is not the demo's expected one ("arm: got X, expected Y")."""
    parity = summary.get("parity") or {}
    return [f"{arm}: got {(parity.get(arm) or {}).get('verdict')}, expected {want}"
            for arm, want in EXPECTED[engine].items()
            if (parity.get(arm) or {}).get("verdict") != want]


def demo_config_data(engine: str = "vllm") -> dict:
    ref = resources.files("vit_backend_plugin").joinpath(DEMO_CONFIGS[engine])
    return yaml.safe_load(ref.read_text())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=sorted(DEMO_CONFIGS), default="vllm",
                   help="vllm (default): lm-eval's vllm-vlm on vLLM's CPU engine, TORCH_SDPA vs "
                        "VIT_TRITON; hf: transformers, eager vs sdpa")
    p.add_argument("--out", help="run directory (default: reports/demo, reports/demo_hf)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the commands; run nothing")
    p.add_argument("--force", action="store_true", help="redo every backend, even complete ones")
    p.add_argument("--no-report", action="store_true", help="do not build the report at the end")


def main(args: argparse.Namespace) -> int:
    from vit_backend_plugin.harness.config import parse_config
    from vit_backend_plugin.harness.runner import execute, prepare

    # Even a dry run plans with lm-eval (task names, its MMMU task files): without it, fail before
    # any work with the CLI's install hint rather than part way into building the assets.
    if importlib.util.find_spec("lm_eval") is None:
        raise ModuleNotFoundError("No module named 'lm_eval'", name="lm_eval")
    data = demo_config_data(args.engine)
    out = Path(args.out) if args.out else Path(data["output_dir"]) / data["name"]
    data["output_dir"], data["run_id"] = str(out.parent), out.name
    try:
        cfg = parse_config(data, source="demo config")
        print("vit-parity demo: preparing the embedded model and data (cached after the first run)",
              file=sys.stderr)
        plan = prepare(cfg, force=args.force)
    except ConfigError as e:
        print(f"vit-parity demo: error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        from vit_backend_plugin.harness.runner import print_plan

        print_plan(plan)
        return 0
    try:
        code = execute(plan, force=args.force, report=not args.no_report, no_fail=True,
                       say_exit=False)
    except KeyboardInterrupt:
        print("vit-parity demo: interrupted; rerun to resume", file=sys.stderr)
        return 130
    return demo_outcome(plan, args.engine, code, report=not args.no_report)


def demo_outcome(plan, engine: str, code: int, *, report: bool) -> int:
    """0 when every arm completed and got its expected verdict; 1 when a verdict differs; 3 when
    an arm failed or the report could not be built."""
    import json

    from vit_backend_plugin.harness.outcome import ERROR, FAIL, OK

    if code != OK:
        return code
    if not all(plan.run_dir.joinpath(a.name, "status.json").is_file() for a in plan.arms):
        return ERROR
    for arm in plan.arms:
        st = json.loads(plan.run_dir.joinpath(arm.name, "status.json").read_text())
        if st.get("errors") or any(v != "complete" for v in st.get("phases", {}).values()):
            print(f"vit-parity demo: arm {arm.name} did not complete", file=sys.stderr)
            return ERROR
    if not report:
        return OK
    summary = json.loads(plan.run_dir.joinpath("summary.json").read_text())
    wrong = check_expected(summary, engine)
    if wrong:
        print("vit-parity demo: unexpected verdicts: " + "; ".join(wrong), file=sys.stderr)
        return FAIL
    shown = ", ".join(f"{a} {v}" for a, v in EXPECTED[engine].items())
    print(f"vit-parity demo: verdicts as expected ({shown})", file=sys.stderr)
    return OK
