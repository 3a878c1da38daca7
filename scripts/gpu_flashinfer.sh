#!/bin/bash
# Device-side driver for FLASHINFER_HOST on the H100 (issue 12; reports/flashinfer/README.md
# gives the calls). Runs from the repo root after the bundle (built with --flashinfer) and this
# project are installed in /tmp/site (scripts/gpu_bench_kernels.sh install).
#   builder        : vit-parity bench-builder, full mode (stock vs ours build(), same process)
#   parity MODES   : vit-parity check-flashinfer-host --phases parity (MODES: no_spec,spec_ngram);
#                    RUNNER=v1 runs vLLM's V1 model runner (0.32's default on CUDA is V2);
#                    V2SPEC=on|off sets VIT_FLASHINFER_HOST_V2_SPEC (host planning of V2-runner
#                    spec-decode steps; on by default); CG=1 with vLLM's CUDA graphs
#   decode [SIZES] : vit-parity check-flashinfer-host --phases decode (256 in / 128 out, bs 1..256);
#                    CG=1 with vLLM's CUDA graphs, ROUNDS=N engines per backend in ABBA order,
#                    BACKENDS=FLASHINFER_HOST,FLASHINFER starts with ours (BA, then ABBA ...),
#                    REPEATS=N timed generations per batch size and engine (default 3)
#   paired [SIZES] : vit-parity check-flashinfer-host --phases decode_paired: both engines alive in
#                    one process (each with its own engine core, gpu_memory_utilization PAIRED_MEM,
#                    default 0.35), timed alternately on the same prompts, the ratio per pair;
#                    REPEATS=N pairs per batch size (default 10), CG=1 with vLLM's CUDA graphs; the
#                    one child's limit is LIMIT-20 s, so the runner ends its engine cores itself
# FlashInfer compiles its kernels with nvcc on first use (cached in ~/.cache/flashinfer): the
# builder step uses the engine model's attention shape, so it also warms the cache for the rest.
set -o pipefail
source "$(dirname "$0")/gpu_env.sh"
C="python3 -m vit_backend_plugin.cli"
E=/tmp/fi_engine
case "$1" in
  builder)
    timeout ${LIMIT:-560} $C bench-builder --modes decode,mixed,spec --batch-sizes 1,2,4,8,16,32,64,128,256 \
      --iters 200 --warmup 20 --out $OUT/h100_builder.json 2>&1 | grep -v Warn | tail -45
    ;;
  parity)
    timeout ${LIMIT:-560} $C check-flashinfer-host --out $E --phases parity --parity-modes "${2:-no_spec,spec_ngram}" --model-runner ${RUNNER:-default} --v2-spec-host ${V2SPEC:-default} ${CG:+--cudagraphs} \
      2>&1 | tail -80
    cp $E/summary.json $OUT/h100_engine.json; tar czf $OUT/engine_logs.tgz -C $E $(cd $E && ls *.log)
    ;;
  decode)
    timeout ${LIMIT:-560} $C check-flashinfer-host --out $E --phases decode ${2:+--decode-batch-sizes $2} ${BACKENDS:+--backends $BACKENDS} --repeats ${REPEATS:-3} ${CG:+--cudagraphs} --rounds ${ROUNDS:-1} \
      2>&1 | tail -60
    cp $E/summary.json $OUT/h100_engine.json; tar czf $OUT/engine_logs.tgz -C $E $(cd $E && ls *.log)
    ;;
  paired)
    timeout ${LIMIT:-560} $C check-flashinfer-host --out $E --phases decode_paired ${2:+--decode-batch-sizes $2} --repeats ${REPEATS:-10} ${CG:+--cudagraphs} --paired-gpu-memory ${PAIRED_MEM:-0.35} \
      --timeout $(( ${LIMIT:-560} - 20 )) 2>&1 | tail -40
    cp $E/summary.json $OUT/h100_engine.json; tar czf $OUT/engine_logs.tgz -C $E $(cd $E && ls *.log)
    ;;
  *) echo "usage: $0 builder|parity [MODES]|decode [SIZES]|paired [SIZES]"; exit 2 ;;
esac
