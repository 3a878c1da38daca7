"""`vit-parity bench-kernels`: every ViT attention backend, side by side, on one GPU.

Default (when vLLM imports): **engine-faithful** -- each backend is an ``MMEncoderAttention``
built and called exactly as vLLM 0.32 builds and calls it, under vLLM's global settings (its CUDA
platform disables cuDNN SDPA at import; TORCH_SDPA runs one call per sequence after a host
``.tolist()``; FLASH_ATTN is vLLM's FA with the version vLLM picks; TRITON_ATTN is the installed
vLLM's kernel; the plugin's backends run through the plugin's layer and custom op). ``PICK`` is
the layer the resolver builds with no backend named (the per-process choice) and ``STOCK`` names
what stock vLLM would pick. See :mod:`vit_backend_plugin.tools.bench_vllm_layers`.

``--raw-kernels`` times the kernel functions directly instead (torch SDPA sub-backends, our
kernels, vLLM's FA/Triton kernels where importable): for kernel work, not for choosing backends.

Each candidate is checked against an fp32 reference (relative error ||out - ref|| / ||ref||; NaN
fails; outputs are NaN-poisoned first where a candidate takes ``out``), then timed with CUDA
events, several input sets rotated, in interleaved rounds (the candidates' order rotates each
round; each time is the median over rounds): eager one call at a time (triton.testing.do_bench,
L2 flushed), back to back (as an eager tower runs; the candidates' bursts of calls taking turns),
and as CUDA graphs (GPU time; the candidates' graphs replayed in turn, replay by replay).
TFLOP/s counts 4*S^2*D*H per sequence. Inputs are laid out as in Qwen2.5-VL's vision blocks: q, k
contiguous (after RoPE), v a strided view of the packed qkv tensor.

One module per part: ``shapes``, ``inputs``, ``candidates``, ``numerics`` (reference and
checks), ``timing`` (eager and CUDA-graph, interleaved), ``back_to_back`` (and host time),
``sweep`` (VIT_TRITON configs), ``run_shape``, ``collect`` (the whole run), ``summary``
(ratios and checks), ``printing``, ``table`` (speed-table rows), ``cli``.
"""

from vit_backend_plugin.tools.bench_kernels.cli import add_arguments, main

__all__ = ["add_arguments", "main"]
