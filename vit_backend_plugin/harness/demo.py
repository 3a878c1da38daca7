"""`vit-parity demo`: the embedded offline default. No GPU, no network, a few minutes on two cores.

Builds (once, cached) a tiny random Qwen2-VL with vision head_dim 80 and a tiny MMMU-format data
set (:mod:`vit_backend_plugin.harness.demo_assets`), then runs exactly what `vit-parity run`
runs for the config below (also shipped as ``eval_configs/demo.yaml``): lm-eval's own
``vllm-vlm`` model and ``mmmu_val`` task on vLLM's CPU engine for ``TORCH_SDPA`` (vLLM's CPU
default) and the plugin's ``VIT_TRITON`` (our kernel, in Triton's interpreter on CPU), the
throughput phase through vLLM, the report. ``--engine hf`` runs the transformers variant
(``eval_configs/demo_hf.yaml``: ``eager`` against ``sdpa``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from vit_backend_plugin.harness.config import ConfigError

# Kept identical to eval_configs/demo.yaml and demo_hf.yaml (a test checks): a wheel ships this
# module, not those files.
DEMO_CONFIG_YAML = """\
# The embedded offline demo (`vit-parity demo`, or `vit-parity run eval_configs/demo.yaml`).
# demo:// references are built locally on first use (tiny random Qwen2-VL, vision head_dim 80;
# tiny MMMU-format data with generated images, read by lm-eval's own mmmu_val task files).
# vLLM's CPU engine: TORCH_SDPA (its CPU default) against the plugin's VIT_TRITON, which runs
# our Triton kernel in Triton's interpreter (TRITON_INTERPRET=1; chosen explicitly only).
name: demo
description: tiny random Qwen2-VL (vision head_dim 80) on a generated MMMU-format set, vLLM on CPU
model: demo://tiny-qwen2-vl
include_path: demo://mmmu
engine: vllm
backends: [TORCH_SDPA, VIT_TRITON]
tasks: [mmmu_val]
batch_size: auto
apply_chat_template: true
max_images_per_prompt: 2
seed: 1234
gen_kwargs: {max_gen_toks: 8}
engine_args: {dtype: float32, max_model_len: 4096, enforce_eager: true}
env: {TRITON_INTERPRET: "1", VLLM_CPU_KVCACHE_SPACE: "1"}
exit_grace_s: 30
throughput:
  image_sizes: [[56, 56], [112, 84]]
  image_mix: [0.5, 0.5]
  num_prompts: 8
  output_len: 1
  concurrency: 4
  warmup: 2
  repeats: 3
output_dir: reports
# ~90 items: two backends that agree everywhere get a delta-acc CI of about +-2 points, so the
# tolerance is widened from the 1-point default (meant for full MMMU runs) to 5 points.
parity: {max_abs_delta_points: 5.0}
"""

DEMO_HF_CONFIG_YAML = """\
# The demo on transformers (`vit-parity demo --engine hf`, or `vit-parity run eval_configs/demo_hf.yaml`):
# lm-eval's hf-multimodal model, attn_implementation eager against sdpa, same model and data.
name: demo_hf
description: tiny random Qwen2-VL (vision head_dim 80) on a generated MMMU-format set, transformers on CPU
model: demo://tiny-qwen2-vl
include_path: demo://mmmu
engine: hf
backends: [eager, sdpa]
tasks: [mmmu_val]
batch_size: 4
apply_chat_template: true
seed: 1234
gen_kwargs: {max_gen_toks: 8}
engine_args: {dtype: float32}
throughput:
  image_sizes: [[56, 56], [112, 84]]
  image_mix: [0.5, 0.5]
  num_prompts: 8
  output_len: 1
  concurrency: 4
  warmup: 2
  repeats: 3
output_dir: reports
parity: {max_abs_delta_points: 5.0}
"""

DEMO_CONFIGS = {"vllm": DEMO_CONFIG_YAML, "hf": DEMO_HF_CONFIG_YAML}


def demo_config_data(engine: str = "vllm") -> dict:
    return yaml.safe_load(DEMO_CONFIGS[engine])


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
