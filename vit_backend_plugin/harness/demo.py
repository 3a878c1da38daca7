"""`vit-parity demo`: the embedded offline default. No GPU, no network, a few minutes on two cores.

Builds (once, cached) a tiny random Qwen2-VL with vision head_dim 80 and a tiny MMMU-format data
set (:mod:`vit_backend_plugin.harness.demo_assets`), then runs exactly what `vit-parity run`
runs for its config (``data/demo.yaml`` in the package, also ``eval_configs/demo.yaml``): lm-eval's own
``vllm-vlm`` model and ``mmmu_val`` task on vLLM's CPU engine for ``TORCH_SDPA`` (vLLM's CPU
default) and the plugin's ``VIT_TRITON`` (our kernel, in Triton's interpreter on CPU), the
throughput phase through vLLM, the report. ``--engine hf`` runs the transformers variant
(``eval_configs/demo_hf.yaml``: ``eager`` against ``sdpa``).
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
        return execute(plan, force=args.force, report=not args.no_report)
    except KeyboardInterrupt:
        print("vit-parity demo: interrupted; rerun to resume", file=sys.stderr)
        return 130
