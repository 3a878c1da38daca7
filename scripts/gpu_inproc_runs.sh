#!/bin/bash
# Device-side: engine comparisons in ONE process per backend (VLLM_ENABLE_V1_MULTIPROCESSING=0),
# where vLLM's encoder timer repeats within ~0.3% (reports/engine/README.md). Per config, each
# backend of BACKENDS in turn (AUTO = no backend named: the plugin's resolver picks; STOCK = vLLM
# without the plugin loaded, its own choice; `null` =
# the plugin's op doing no attention work, the Amdahl bound) through scripts/gpu_attention_share.py.
#   BACKENDS=FLASH_ATTN,AUTO,VIT_TRITON,TRITON_ATTN bash scripts/gpu_inproc_runs.sh eval_configs/h100_vit_internvit_d64.yaml
# Appends one JSON line per run to $OUT/inproc.jsonl (config, backend, images/s, the plugin's log line).
set -o pipefail
source "$(dirname "$0")/gpu_env.sh"
LIMIT=${LIMIT:-240}
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  i=0
  for b in ${BACKENDS//,/ }; do
    i=$((i + 1))
    if [ "$b" = null ]; then args="VIT_TRITON null"; else args="$b"; fi
    log=$OUT/${name}_${i}_$b.log  # a backend may run twice (STOCK,AUTO,AUTO,STOCK)
    echo "== $name $b ($(date +%T))"
    timeout "$LIMIT" python3 scripts/gpu_attention_share.py "$cfg" $args >"$log" 2>&1
    rc=$?
    line=$(grep -h "ViT attention:" "$log" | tail -1 | sed 's/.*ViT attention:/ViT attention:/')
    share=$(grep -h "^ATTENTION_SHARE " "$log" | tail -1 | sed 's/^ATTENTION_SHARE //')
    python3 - "$name" "$b" "$rc" "${share:-null}" "$line" >>"$OUT/inproc.jsonl" <<'PY'
import json, sys
name, b, rc, share, line = sys.argv[1:]
print(json.dumps({"config": name, "backend": b, "rc": int(rc), "result": json.loads(share), "plugin_log": line}))
PY
    tail -1 "$OUT/inproc.jsonl"
  done
done
