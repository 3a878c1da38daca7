#!/bin/bash
# Device-side driver for the kernel benchmark (reports/kernels/README.md gives the exact calls).
# Runs from the repo root on the GPU machine, after the vLLM bundle's parts were copied to /tmp/vb
# (../shared/gpu/README.md).
#   install : vLLM bundle + this project into /tmp/site, then a one-shape smoke run
#   table   : the speed table: PASSES (3) engine-faithful passes, each with the previous table in
#             use (merged: best TFLOP/s and least host time per backend over the passes)
#             -> $OUT/speed_table.json
#   final   : the committed benchmark, with that table in use (what ships as data/speed_table.json)
# Every timing is taken in ROUNDS (5) interleaved rounds per shape (bench-kernels --rounds).
set -o pipefail
source "$(dirname "$0")/gpu_env.sh"
B="python3 -m vit_backend_plugin.cli bench-kernels"
SINGLES=TORCH_SDPA,FLASH_ATTN,TRITON_ATTN,FLASHINFER,VIT_TRITON,TORCH_SDPA_CUDNN
case "$1" in
  install)
    bash /tmp/vb/install.sh /tmp/site 2>&1 | tail -3 || exit 1
    python3 -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/site . || exit 1
    nvidia-smi -L
    $B --only-shapes --shapes 'smoke=80:256,256,64' --rep-ms 20 2>&1 | grep -v Warn | tail -25
    ;;
  table)
    # pass 1: single backends -> t1; pass 2 (and 3 with PASSES=3): every candidate with the
    # previous table in use (VIT_AUTO decides from it, PICK is the resolver's choice from it),
    # merged into the next. Rows record CUDA-graph (GPU) time where capturable (--table-timing;
    # TABLE_TIMING=stream records back-to-back time instead).
    # The shipped table's engine runs are carried over (they are not kernel measurements).
    # host: each backend's host time per call goes into the rows too (VIT_AUTO's eager cost).
    T="--timings eager,host,${TABLE_TIMING:-graph} --table-timing ${TABLE_TIMING:-graph} --rep-ms 100 --rounds ${ROUNDS:-5}"
    VIT_SPEED_TABLE=/tmp/none.json timeout 280 $B --candidates $SINGLES $T \
      --json $OUT/pass1.json --write-speed-table /tmp/t1.json 2>&1 | grep -v Warn | tail -3
    last=/tmp/t1.json
    for p in $(seq 2 ${PASSES:-3}); do
      VIT_SPEED_TABLE=$last timeout 280 $B $T --json $OUT/pass$p.json \
        --write-speed-table /tmp/t$p.json --merge-with $last 2>&1 | grep -v Warn \
        | tee $OUT/pass$p.txt | tail -3
      last=/tmp/t$p.json
    done
    python3 - "$last" $OUT/speed_table.json <<'PY'
import json, sys
from importlib import resources
shipped = json.loads(resources.files("vit_backend_plugin").joinpath("data/speed_table.json").read_text())
t = json.load(open(sys.argv[1]))
t["engine"] = shipped.get("engine", [])
json.dump(t, open(sys.argv[2], "w"), indent=2)
PY
    cp $OUT/speed_table.json /tmp/shipped.json
    ;;
  final)
    # the committed evidence: every candidate side by side, the table just made in use
    # TABLE: the table in use (default: the one `table` just made, else the shipped one)
    T=${TABLE:-/tmp/shipped.json}; [ -f "$T" ] && export VIT_SPEED_TABLE=$T
    echo "speed table in use: ${VIT_SPEED_TABLE:-the table shipped in the installed package}"
    timeout ${LIMIT:-560} $B --rounds ${ROUNDS:-5} --json $OUT/h100_bench.json 2>&1 | grep -v Warn \
      | tee $OUT/h100_bench.txt | tail -60
    ;;
  *) echo "usage: $0 install|table|final"; exit 2 ;;
esac
