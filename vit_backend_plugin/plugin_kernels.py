"""The plugin-provided ViT attention backends behind one varlen contract (no vLLM needed):

    fn(q, k, v, cu_seqlens, max_seqlen: int, softmax_scale: float) -> out
    q: [total_tokens, num_heads, head_dim], k/v: [total_tokens, num_kv_heads, head_dim],
    cu_seqlens: int32 [batch + 1] on q's device; out like q.

Our own kernels live in :mod:`vit_backend_plugin.kernels`; the two third-party ones (upstream
flash_attn, xformers) are thin adapters here. Imports happen on first use, so a missing package
costs nothing until that backend is actually chosen.

Every function also takes a keyword ``capturing``: True while vLLM's encoder CUDA graphs are
captured (the plugin's op passes it only then), None to ask the stream where it matters. VIT_TRITON
and VIT_AUTO also take ``out=`` (see :data:`TAKES_OUT`); the others allocate their own output.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

PLUGIN_BACKENDS = ("VIT_TRITON", "VIT_AUTO", "TORCH_SDPA_CUDNN", "FLASH_ATTN_UPSTREAM", "XFORMERS")
TAKES_OUT = ("VIT_TRITON", "VIT_AUTO")  # backends whose function writes into a given ``out=``


def _upstream_flash_attn(q, k, v, cu_seqlens, max_seqlen, softmax_scale, *, capturing=None):
    # No host read here: capturable (the op zeroes the padding rows it leaves unwritten).
    from flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func(
        q, k, v,
        cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens,
        max_seqlen_q=max_seqlen, max_seqlen_k=max_seqlen,
        dropout_p=0.0, softmax_scale=softmax_scale, causal=False,
    )


def _xformers(q, k, v, cu_seqlens, max_seqlen, softmax_scale, *, capturing=None):
    from vit_backend_plugin.capture import refuse_host_read

    refuse_host_read("XFORMERS", "read the sequence lengths for its mask (.tolist())", capturing)
    from xformers import ops as xops
    from xformers.ops.fmha.attn_bias import BlockDiagonalMask

    lens = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()  # xformers builds its mask on the host
    if k.shape[1] != q.shape[1]:  # GQA: xformers wants equal heads in this layout
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    bias = BlockDiagonalMask.from_seqlens(lens)
    out = xops.memory_efficient_attention_forward(
        q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), attn_bias=bias, scale=softmax_scale
    )
    return out.squeeze(0)


@functools.cache
def get_kernel(name: str) -> Callable:
    """The varlen function for a plugin backend. KeyError for a name that is not ours."""
    if name in ("VIT_TRITON", "VIT_AUTO"):
        from vit_backend_plugin.kernels import KERNELS

        # Inside vLLM, max_seqlen comes from the model's host-side max over the same lengths
        # (MMEncoderAttention.compute_max_seqlen) or from the op's own read: exact.
        return functools.partial(KERNELS[name], max_seqlen_exact=True)
    if name == "TORCH_SDPA_CUDNN":
        from vit_backend_plugin.kernels import KERNELS

        return KERNELS[name]
    if name == "FLASH_ATTN_UPSTREAM":
        return _upstream_flash_attn
    if name == "XFORMERS":
        return _xformers
    raise KeyError(f"{name} is not a plugin ViT attention backend ({', '.join(PLUGIN_BACKENDS)})")
