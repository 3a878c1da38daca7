"""Thin adapters of third-party ViT attention kernels to the plugin's varlen contract
(:mod:`vit_backend_plugin.kernels.registry`). Imports happen on first call, so a missing package
costs nothing until that backend is actually chosen."""

from __future__ import annotations


def upstream_flash_attn(q, k, v, cu_seqlens, max_seqlen, softmax_scale, *, capturing=None):
    """FLASH_ATTN_UPSTREAM: Dao-AILab's flash_attn. No host read: capturable (the op zeroes the
    padding rows it leaves unwritten)."""
    from flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func(
        q, k, v,
        cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens,
        max_seqlen_q=max_seqlen, max_seqlen_k=max_seqlen,
        dropout_p=0.0, softmax_scale=softmax_scale, causal=False,
    )


def xformers_attention(q, k, v, cu_seqlens, max_seqlen, softmax_scale, *, capturing=None):
    """XFORMERS: memory_efficient_attention with a block-diagonal mask built on the host."""
    from vit_backend_plugin.kernels.capture import refuse_host_read

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
