#!/bin/bash
# Device-side driver for the kernel benchmark (reports/kernels/README.md gives the exact calls).
#   diag   : VIT_TRITON head-dim-split correctness on tail-heavy shapes, one process
#   sweep  : launch-config sweep (JSON to $OUT); splits chosen from the diag outcome
#   final  : the committed benchmark + speed table
set -o pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
mode=$1
B="python3 -m vit_backend_plugin.cli bench-kernels"
W='Qwen2.5-VL window d80, 256 x 64=80:256x64'
if [ "$mode" = diag ] || [ "$mode" = sweep ]; then
  python3 scripts/gpu_kernels_diag.py 'd72:4x729;{"kernel":"main","BLOCK_M":128,"BLOCK_N":64,"num_warps":8,"num_stages":3,"min_d1":16}' 'd72:4x729;{"kernel":"main","BLOCK_M":128,"BLOCK_N":128,"num_warps":8,"num_stages":3,"min_d1":16}' 'd72:4x729;{"kernel":"main","BLOCK_M":64,"BLOCK_N":64,"num_warps":4,"num_stages":3,"min_d1":16}' 'd80:4x729;{"kernel":"main","BLOCK_M":128,"BLOCK_N":64,"num_warps":8,"num_stages":3,"min_d1":16}' 'd80:4x729;{"kernel":"main","BLOCK_M":128,"BLOCK_N":128,"num_warps":8,"num_stages":3,"min_d1":16}' 'd80:4x729;{"kernel":"main","BLOCK_M":64,"BLOCK_N":64,"num_warps":4,"num_stages":3,"min_d1":16}' 'd80:256,1024,4096,729,64,2304,576,1600;{"kernel":"main","BLOCK_M":128,"BLOCK_N":64,"num_warps":8,"num_stages":3,"min_d1":16}' 'd80:256,1024,4096,729,64,2304,576,1600;{"kernel":"main","BLOCK_M":128,"BLOCK_N":128,"num_warps":8,"num_stages":3,"min_d1":16}' 'd80:256,1024,4096,729,64,2304,576,1600;{"kernel":"main","BLOCK_M":64,"BLOCK_N":64,"num_warps":4,"num_stages":3,"min_d1":16}' 'd80:2x1024;{"kernel":"main","BLOCK_M":128,"BLOCK_N":64,"num_warps":8,"num_stages":3,"min_d1":16}' 'd80:2x1024;{"kernel":"main","BLOCK_M":128,"BLOCK_N":128,"num_warps":8,"num_stages":3,"min_d1":16}' 'd80:2x1024;{"kernel":"main","BLOCK_M":64,"BLOCK_N":64,"num_warps":4,"num_stages":3,"min_d1":16}' 'd96:3x300@8/2;{"kernel":"main","BLOCK_M":128,"BLOCK_N":64,"num_warps":8,"num_stages":3,"min_d1":16}' 'd96:3x300@8/2;{"kernel":"main","BLOCK_M":128,"BLOCK_N":128,"num_warps":8,"num_stages":3,"min_d1":16}' 'd96:3x300@8/2;{"kernel":"main","BLOCK_M":64,"BLOCK_N":64,"num_warps":4,"num_stages":3,"min_d1":16}' 2>&1 | grep -v "Warn\|bad heads\|  seq" | tee $OUT/diag.txt
fi
if [ "$mode" = sweep ]; then
  SPL=16,256
  if grep -qE "nan|rel_err 0\.0[1-9]|rel_err 0\.[1-9]|Error|illegal" $OUT/diag.txt; then SPL=256; fi
  echo "SPLITS=$SPL"
  timeout 420 $B --sweep --sweep-splits $SPL --rep-ms 80 --only-shapes --candidates VIT_TRITON,TORCH_SDPA_CUDNN \
    --shapes 'SigLIP d72, 32 x 729=72:32x729' 'mixed lengths d80=80:256,1024,4096,729,64,2304,576,1600' \
    'd128, 8 x 2048=128:8x2048' 'Qwen2.5-VL d80, 16 x 1024=80:16x1024' 'Qwen2.5-VL d80, 1 x 16384=80:1x16384' \
    --json $OUT/sweep_main.json 2>&1 | grep -v Warn | tee $OUT/sweep_main.txt
  timeout 120 $B --sweep --sweep-splits $SPL --rep-ms 80 --only-shapes --candidates VIT_TRITON,TORCH_SDPA_CUDNN \
    --shapes "$W" --json $OUT/sweep_window.json 2>&1 | grep -v Warn | tee $OUT/sweep_window.txt
fi
if [ "$mode" = final ]; then
  $B --json $OUT/h100_bench.json --write-speed-table $OUT/speed_table.json 2>&1 | grep -v Warn | tee $OUT/final.txt
fi
