# Sourced by the device-side drivers (scripts/gpu_*.sh): the bundle and this project installed in
# /tmp/site, no hub access, unbuffered logs, and vLLM's sampler without FlashInfer's JIT.
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  VLLM_USE_FLASHINFER_SAMPLER=0
