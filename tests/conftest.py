"""Test-wide setup: vLLM runs on its CPU platform here (no GPU on dev machines or CI)."""

import os

# Must be set before vLLM is imported anywhere: selects vLLM's CPU platform.
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
# Keep runs hermetic: nothing may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
