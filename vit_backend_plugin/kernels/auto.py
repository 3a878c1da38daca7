"""VIT_AUTO: per call, whichever of our Triton kernel (VIT_TRITON) and torch SDPA on cuDNN
(TORCH_SDPA_CUDNN) the measured-speed table says is faster for this call's shape.

vLLM picks a ViT backend once per process, before it sees an image; the fastest kernel differs by
shape (cuDNN wins equal-length batches at some head sizes, ours wins windows and mixed lengths).
The per-call decision uses host-side facts only, so it costs no device sync:
head_dim, dtype, whether all sequences have equal length (total tokens == batch * max_seqlen),
and the length bucket of max_seqlen. Unknown shapes go to VIT_TRITON (one launch, any length mix).
"""

from __future__ import annotations

import functools

DEFAULT = "VIT_TRITON"
CHOICES = ("VIT_TRITON", "TORCH_SDPA_CUDNN")


def choose(rows: list[dict], equal_lengths: bool, max_seqlen: int) -> str:
    """Pure policy. ``rows``: speed-table entries (dicts) for one device/dtype/head size.
    The most specific row for this call (same equal/mixed kind, bucket containing max_seqlen)
    decides between CHOICES; numerics must have passed."""
    fit = [r for r in rows
           if r.get("equal_lengths") is equal_lengths and r["seq_len"][0] <= max_seqlen <= r["seq_len"][1]]
    if not fit:
        return DEFAULT
    row = min(fit, key=lambda r: r["seq_len"][1] - r["seq_len"][0])
    ok = {n: t for n, t in row["tflops"].items()
          if n in CHOICES and row.get("numerics_ok", {}).get(n, False)}
    return max(ok, key=ok.get) if ok else DEFAULT


@functools.cache
def _rows(capability: tuple[int, int], dtype: str, head_size: int) -> tuple[dict, ...]:
    from vit_backend_plugin import speed_table

    for table in (speed_table.load_user(), speed_table.load_shipped()):
        if table is None:
            continue
        rows = table.matching(capability, dtype, head_size)
        if rows:
            return tuple(r.model_dump() for r in rows)
    return ()


@functools.cache
def _cudnn_available() -> bool:
    import torch

    return torch.backends.cudnn.is_available() and torch.backends.cuda.cudnn_sdp_enabled()


@functools.cache
def _decide(capability, dtype: str, head_size: int, equal_lengths: bool, max_seqlen: int) -> str:
    name = choose(list(_rows(capability, dtype, head_size)), equal_lengths, max_seqlen)
    return name if name != "TORCH_SDPA_CUDNN" or _cudnn_available() else DEFAULT


def vit_auto_attention(q, k, v, cu_seqlens, max_seqlen, softmax_scale=None):
    """Same contract as :func:`vit_backend_plugin.kernels.vit_attention`."""
    import torch

    from vit_backend_plugin.kernels import KERNELS

    max_seqlen = int(max_seqlen)
    batch = cu_seqlens.shape[0] - 1
    equal = batch > 0 and q.shape[0] == batch * max_seqlen
    cap = torch.cuda.get_device_capability(q.device) if q.is_cuda else (0, 0)
    dtype = str(q.dtype).removeprefix("torch.")
    name = _decide(tuple(cap), dtype, q.shape[-1], equal, max_seqlen)
    return KERNELS[name](q, k, v, cu_seqlens, max_seqlen, softmax_scale)
