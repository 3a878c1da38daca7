"""TORCH_SDPA_CUDNN: torch scaled_dot_product_attention pinned to the cuDNN backend, varlen contract.

Equal lengths run as one batched call; this needs no host sync: lengths are each <= max_seqlen and
sum to total_tokens, so they are all equal exactly when total_tokens == batch * max_seqlen.
Mixed lengths run one call per sequence (the lengths are read on the host: one sync, as vLLM's
TORCH_SDPA ViT path does). cuDNN wants fp16/bf16 and head_dim % 8 == 0; both are checked first.

Inside a CUDA graph capture the mixed-lengths read raises CaptureSyncError before it happens. In
vLLM's encoder CUDA graphs (the plugin's op passes ``capturing=True``) the tokens are padded to a
budget, so total_tokens == batch * max_seqlen no longer means equal lengths: refused there too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from vit_backend_plugin.kernels._validate import check_inputs
from vit_backend_plugin.kernels.capture import CaptureSyncError, refuse_host_read

NAME = "TORCH_SDPA_CUDNN"


def _sdpa(q, k, v, scale, backends):
    """q/k/v: [B, S, H, D] views -> [B, S, H, D]."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if k.shape[1] != q.shape[1]:  # GQA: expand K/V heads (cuDNN SDPA has no enable_gqa path)
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if backends is None:  # torch's own dispatch (vLLM's TORCH_SDPA path)
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False, scale=scale)
    else:
        with sdpa_kernel(backends):
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False, scale=scale)
    return o.transpose(1, 2)


def sdpa_varlen(q, k, v, cu_seqlens, max_seqlen, softmax_scale=None, backends=None, *,
                backend: str = "torch SDPA", capturing: bool | None = None):
    """Varlen attention through torch SDPA; ``backends`` None = torch's default dispatch.
    ``backend`` names the caller in errors; ``capturing`` None: asked before the lengths read."""
    total = q.shape[0]
    batch = cu_seqlens.numel() - 1
    if total == 0:
        return torch.empty_like(q)
    if total == batch * max_seqlen:
        shp = (batch, max_seqlen)
        o = _sdpa(q.view(*shp, *q.shape[1:]), k.view(*shp, *k.shape[1:]), v.view(*shp, *v.shape[1:]),
                  softmax_scale, backends)
        return o.reshape(q.shape)
    refuse_host_read(backend, "read the mixed sequence lengths (.tolist())", capturing)
    lens = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    for qi, ki, vi, oi in zip(q.split(lens), k.split(lens), v.split(lens), out.split(lens), strict=True):
        if qi.shape[0]:
            oi.copy_(_sdpa(qi[None], ki[None], vi[None], softmax_scale, backends)[0])
    return out


def sdpa_cudnn_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen,
    softmax_scale: float | None = None,
    *,
    capturing: bool | None = None,
) -> torch.Tensor:
    """Non-causal varlen attention on torch SDPA's cuDNN backend. Same contract as vit_attention.
    ``capturing=True`` (vLLM's encoder CUDA-graph capture, padded inputs) always raises."""
    if capturing:
        raise CaptureSyncError(
            f"{NAME} cannot run inside vLLM's encoder CUDA graph capture: the tokens are padded "
            f"to a budget, so which sequences have equal length is known only from a host read "
            f"of cu_seqlens, which a capture does not allow"
        )
    cu_seqlens, max_seqlen = check_inputs(
        q, k, v, cu_seqlens, max_seqlen,
        dtypes=(torch.float16, torch.bfloat16), head_dim_multiple=8,
        backend=NAME, capturing=capturing,
    )
    if q.device.type != "cuda":
        raise ValueError(f"TORCH_SDPA_CUDNN needs CUDA tensors, got {q.device}")
    return sdpa_varlen(q, k, v, cu_seqlens, max_seqlen, softmax_scale,
                       backends=[SDPBackend.CUDNN_ATTENTION], backend=NAME, capturing=capturing)
