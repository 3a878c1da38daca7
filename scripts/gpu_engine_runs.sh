#!/bin/bash
# Device-side driver for the engine runs through vLLM (reports/engine/README.md gives the calls).
# Runs from the repo root on the GPU machine after scripts/gpu_bench_kernels.sh install + table
# (the speed table just measured is in use as the user table, identical to the shipped one).
#   bash scripts/gpu_engine_runs.sh eval_configs/h100_vit_qwen2_vl_7b.yaml [...]
# Each config: `vit-parity run` (fresh process per backend, resumable), then its report.md and
# summary.json are copied to $OUT/<config name>/.
set -o pipefail
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  VLLM_USE_FLASHINFER_SAMPLER=0 VIT_SPEED_TABLE=${VIT_SPEED_TABLE:-/tmp/shipped.json}
LIMIT=${LIMIT:-540}
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  echo "== $name ($(date +%T))"
  timeout "$LIMIT" python3 -m vit_backend_plugin.cli run "$cfg" 2>&1 | grep -v "Warn\|^\s*$" | tail -25
  mkdir -p "$OUT/$name"
  cp reports/"$name"/report.md reports/"$name"/summary.json "$OUT/$name/" 2>/dev/null
  grep -h "ViT attention:" reports/"$name"/*/*.log 2>/dev/null | sed 's/.*ViT attention:/ViT attention:/' | sort | uniq -c
done
