#!/bin/bash
# Device-side driver for the engine runs through vLLM (reports/engine/README.md gives the calls).
# Runs from the repo root on the GPU machine after the bundle and this project are installed in
# /tmp/site (scripts/gpu_bench_kernels.sh install). The speed table in use is the shipped one
# (data/speed_table.json) unless VIT_SPEED_TABLE names another.
#   BACKENDS=FLASH_ATTN,TRITON_ATTN,AUTO bash scripts/gpu_engine_runs.sh eval_configs/h100_vit_qwen2_vl_7b.yaml [...]
# Each config: `vit-parity run` (accuracy in a fresh process per arm, then all arms' throughput in
# interleaved rounds), then its run directory (lm-eval's output included) is tarred to
# $OUT/<config name>.tgz, and each arm's rounds are printed.
set -o pipefail
source "$(dirname "$0")/gpu_env.sh"
LIMIT=${LIMIT:-540}
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  echo "== $name ($(date +%T))"
  # SIGINT, not SIGTERM: the run unwinds as on Ctrl-C and ends its engines; a rerun resumes
  timeout -s INT -k 30 "$LIMIT" python3 -m vit_backend_plugin.cli run "$cfg" ${BACKENDS:+--arms $BACKENDS} 2>&1 \
    | tee -a "$OUT/$name.log" \
    | grep -v "Warn\|^\s*$" | tail -8
  # the run directory without lm-eval's samples: report, summary, and per backend what
  # `vit-parity record-engine` reads (throughput.json, throughput.log with the plugin's line)
  tar czf "$OUT/$name.tgz" -C reports "$name"
  grep -iE "faster|slower|no detectable|PASS|FAIL|ERROR" reports/"$name"/report.md 2>/dev/null | head -24
  grep -h "ViT attention:" reports/"$name"/*/*.log 2>/dev/null | sed 's/.*ViT attention:/ViT attention:/' | sort | uniq -c
  python3 - "$name" <<'PY'
import json, sys
from pathlib import Path
for tp in sorted(Path("reports", sys.argv[1]).glob("*/throughput.json")):
    d = json.loads(tp.read_text())
    if d.get("skipped"):
        continue
    enc = [r.get("encoder_images_per_s") for r in d["repeats"]]
    print(f"{tp.parent.name:18s} encoder images/s {d['metrics'].get('encoder_images_per_s')} "
          f"rounds {[round(x, 1) if x else x for x in enc]}  wall images/s {d['metrics'].get('images_per_s'):.1f}")
PY
done
