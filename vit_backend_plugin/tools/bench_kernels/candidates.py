"""The candidates' names, and the raw kernels (``--raw-kernels``) as candidate functions.

The engine-faithful candidates (vLLM layers) are built by :mod:`vit_backend_plugin.tools.bench_vllm_layers`."""

from __future__ import annotations

import math

# Candidates whose speed goes into the speed table, under the resolver's backend names.
TABLE_NAMES = ("TORCH_SDPA", "TORCH_SDPA_CUDNN", "VIT_TRITON", "VIT_AUTO", "TRITON_ATTN",
               "FLASH_ATTN", "FLASH_ATTN_UPSTREAM", "FLASHINFER")
# Candidates that are one backend (not a per-call dispatcher or the resolver's pick).
SINGLE_NAMES = ("TORCH_SDPA", "TORCH_SDPA_CUDNN", "VIT_TRITON", "TRITON_ATTN", "FLASH_ATTN",
                "FLASH_ATTN_UPSTREAM", "FLASHINFER")

# Every raw-kernel candidate (``--raw-kernels``), in table order.
ALL_CANDIDATES = ["TORCH_SDPA", "SDPA_FLASH", "SDPA_EFFICIENT", "TORCH_SDPA_CUDNN", "SDPA_CUDNN_NESTED",
                  "TORCH_VARLEN", "VIT_TRITON", "VIT_AUTO", "TRITON_ATTN", "FLASH_ATTN",
                  "FLASH_ATTN_UPSTREAM"]


def _candidates(torch, dtype):
    """name -> (fn(inputs) -> out, note). Each fn takes the prepared input dict."""
    from torch.nn.attention import SDPBackend

    from vit_backend_plugin.kernels.auto import vit_auto_attention
    from vit_backend_plugin.kernels.sdpa_cudnn import sdpa_cudnn_attention, sdpa_varlen
    from vit_backend_plugin.kernels.triton_vit import vit_attention

    c = {}
    c["TORCH_SDPA"] = (lambda x: sdpa_varlen(x["q"], x["k"], x["v"], x["cu"], x["max"], None, None), "default dispatch")
    c["SDPA_FLASH"] = (lambda x: sdpa_varlen(x["q"], x["k"], x["v"], x["cu"], x["max"], None,
                                             [SDPBackend.FLASH_ATTENTION]), "")
    c["SDPA_EFFICIENT"] = (lambda x: sdpa_varlen(x["q"], x["k"], x["v"], x["cu"], x["max"], None,
                                                 [SDPBackend.EFFICIENT_ATTENTION]), "")
    c["TORCH_SDPA_CUDNN"] = (lambda x: sdpa_cudnn_attention(x["q"], x["k"], x["v"], x["cu"], x["max"]), "ours")

    def nested(x):
        import torch.nn.functional as F
        from torch.nn.attention import sdpa_kernel

        offs = x["cu"].long()
        q, k, v = (torch.nested.nested_tensor_from_jagged(t, offs, max_seqlen=x["max"]).transpose(1, 2)
                   for t in (x["q"], x["k"], x["v"]))
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            o = F.scaled_dot_product_attention(q, k, v)
        return o.transpose(1, 2).values()

    c["SDPA_CUDNN_NESTED"] = (nested, "mixed only")
    try:
        import inspect

        from torch.nn.attention.varlen import varlen_attn

        has_scale = "scale" in inspect.signature(varlen_attn).parameters

        def varlen(x):
            kw = {"scale": 1.0 / math.sqrt(x["q"].shape[-1])} if has_scale else {}
            return varlen_attn(x["q"], x["k"], x["v"], x["cu"], x["cu"], x["max"], x["max"], **kw)

        c["TORCH_VARLEN"] = (varlen, "")
    except Exception as e:  # noqa: BLE001 -- older torch
        c["TORCH_VARLEN"] = (None, f"unavailable: {type(e).__name__}: {e}")
    c["VIT_TRITON"] = (lambda x: vit_attention(x["q"], x["k"], x["v"], x["cu"], x["max"], out=x.get("out")), "ours")
    c["VIT_AUTO"] = (lambda x: vit_auto_attention(x["q"], x["k"], x["v"], x["cu"], x["max"]),
                     "ours: per call, VIT_TRITON or cuDNN from the installed speed table")

    try:
        from vllm.v1.attention.ops.triton_prefill_attention import context_attention_fwd
    except Exception as e:  # noqa: BLE001 -- no vLLM here: reported, never copied
        context_attention_fwd = None
        stock_note = f"unavailable (needs vLLM): {type(e).__name__}"
    else:
        stock_note = "vllm"

    def stock(x):
        # As vllm's triton_attn_wrapper does: b_start_loc/b_seq_len from cu_seqlens, non-causal.
        q = x["q"]
        o = torch.empty_like(q)
        cu = x["cu"]
        context_attention_fwd(q, x["k"], x["v"], o, b_start_loc=cu[:-1], b_seq_len=cu[1:] - cu[:-1],
                              max_input_len=x["max"], is_causal=False, softmax_scale=None)
        return o

    c["TRITON_ATTN"] = (stock if context_attention_fwd else None, stock_note)

    # FlashAttention, where importable (a user's vLLM GPU env; `vit-parity tune` then measures it).
    def fa(fn, extra):
        return lambda x: fn(x["q"], x["k"], x["v"], cu_seqlens_q=x["cu"], cu_seqlens_k=x["cu"],
                            max_seqlen_q=x["max"], max_seqlen_k=x["max"], causal=False, **extra)

    try:
        from vllm.v1.attention.backends.fa_utils import (
            flash_attn_varlen_func,
            get_flash_attn_version,
        )

        c["FLASH_ATTN"] = (fa(flash_attn_varlen_func, {"fa_version": get_flash_attn_version()}), "vllm")
    except Exception as e:  # noqa: BLE001 -- no vLLM CUDA build here
        c["FLASH_ATTN"] = (None, f"unavailable: {type(e).__name__}")
    try:
        from flash_attn import flash_attn_varlen_func as upstream

        c["FLASH_ATTN_UPSTREAM"] = (fa(upstream, {}), "flash_attn")
    except Exception as e:  # noqa: BLE001
        c["FLASH_ATTN_UPSTREAM"] = (None, f"unavailable: {type(e).__name__}")
    return c
