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
"$VENV/bin/python" -m pip install -q --upgrade pip

# Standard torch/torchvision builds (they run on CPU). --isolated skips this machine's pip
# config, whose local CPU torch file cannot load PyPI's torchvision (transformers' image
# processors need torchvision). vLLM 0.32 pins torch 2.13.0.
if ! "$VENV/bin/python" -c "import torch, torchvision; assert torch.__version__.startswith('2.13.0')" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --isolated torch==2.13.0 torchvision==0.28.0
fi

"$VENV/bin/python" -m pip install -q -e '.[vllm,eval,dev]'

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("torch", "torchvision", "vllm", "lm_eval", "transformers", "vit-backend-plugin"):
    try:
        print(f"  {name:20s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name:20s} MISSING")
PY
echo "set-up done: $VENV"
