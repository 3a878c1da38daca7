"""Input checks shared by our ViT attention kernels. They run before any launch.

cu_seqlens monotonicity and its last value can only be read on the host (a max_seqlen of 0,
"not computed", is derived from cu_seqlens with one host read). Reading a CUDA tensor
forces a device sync, so for device tensors those two checks run only when ``VIT_KERNELS_DEBUG=1``;
a CPU ``cu_seqlens`` (a host copy, which callers often already have) is always checked fully and
then copied to the device. Everything else (dtypes, shapes, heads, devices, head_dim range) is
metadata and is always checked: in full for metadata not seen before, by one dictionary lookup for
metadata that already passed (the same shapes, strides, dtypes and devices pass again).

Inside a CUDA graph capture every host read of device data raises CaptureSyncError first (the
capture is asked only on the paths that read: free on the others). vLLM's encoder CUDA graphs pad
the tokens to a budget, so there cu_seqlens[-1] may be smaller than the token count.
"""

from __future__ import annotations

import os

import torch

from vit_backend_plugin.kernels.capture import capturing_now, refuse_host_read

MIN_HEAD_DIM, MAX_HEAD_DIM = 32, 256


def debug_checks_enabled() -> bool:
    return os.environ.get("VIT_KERNELS_DEBUG", "") not in ("", "0", "false", "False")


def as_max_seqlen(max_seqlen, backend: str = "plugin kernel", capturing: bool | None = None) -> int:
    """int, or a one-element tensor (a device tensor costs a sync, as in vLLM's wrappers)."""
    if isinstance(max_seqlen, torch.Tensor):
        if max_seqlen.numel() != 1:
            raise ValueError(f"max_seqlen tensor must have one element, got shape {tuple(max_seqlen.shape)}")
        if not max_seqlen.is_cpu:
            refuse_host_read(backend, "read max_seqlen from a device tensor", capturing)
        max_seqlen = int(max_seqlen.item())
    if isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int):
        raise ValueError(f"max_seqlen must be an int, got {type(max_seqlen).__name__}")
    if max_seqlen < 0:
        raise ValueError(f"max_seqlen must be >= 0, got {max_seqlen}")
    return max_seqlen


def check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen,
    *,
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32),
    head_dim_multiple: int = 1,
    backend: str = "plugin kernel",
    capturing: bool | None = None,
) -> tuple[torch.Tensor, int]:
    """Validate the varlen contract; return (cu_seqlens on q's device, max_seqlen as int).
    ``capturing``: whether a CUDA graph is being captured (None: asked where it matters)."""
    key = _metadata_key(q, k, v, cu_seqlens, dtypes, head_dim_multiple)
    if key is None or key not in _VALID_METADATA:
        _check_metadata(q, k, v, cu_seqlens, dtypes, head_dim_multiple)
        if key is not None:
            if len(_VALID_METADATA) >= _VALID_METADATA_CAP:
                del _VALID_METADATA[next(iter(_VALID_METADATA))]  # the oldest
            _VALID_METADATA[key] = None
    max_seqlen = as_max_seqlen(max_seqlen, backend, capturing)
    on_host = cu_seqlens.is_cpu
    if not on_host and cu_seqlens.device != q.device:
        raise ValueError(f"cu_seqlens is on {cu_seqlens.device} but q is on {q.device}")
    if max_seqlen == 0 and q.shape[0]:  # "not computed" (vLLM passes 0 for backends it doesn't know)
        # Refused while capturing even from a host cu_seqlens: the graph would keep this value.
        refuse_host_read(backend, "derive max_seqlen from cu_seqlens (max_seqlen 0)", capturing)
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())  # a host read, like vLLM's wrappers
    if on_host or debug_checks_enabled():
        if not on_host:
            refuse_host_read(backend, "check cu_seqlens on the host (VIT_KERNELS_DEBUG=1)", capturing)
        _check_cu_values(cu_seqlens.cpu(), q.shape[0], max_seqlen, capturing)
    if on_host and not q.is_cpu:
        refuse_host_read(backend, "copy a host cu_seqlens to the device", capturing)
        cu_seqlens = cu_seqlens.to(q.device, non_blocking=True)
    return cu_seqlens, max_seqlen


# Metadata that passed every check in _check_metadata, keyed by all it reads (shapes, strides,
# dtypes, devices, the allowed dtypes): a call with the same metadata skips re-checking it (a few
# microseconds of host time per call on short ViT calls). Anything else is checked in full, so a
# bad input raises the same error whatever passed before. Bounded: oldest key out first.
_VALID_METADATA: dict[tuple, None] = {}
_VALID_METADATA_CAP = 1024


def _metadata_key(q, k, v, cu_seqlens, dtypes, head_dim_multiple) -> tuple | None:
    """Everything _check_metadata reads, or None when an input is not a tensor (checked in full)."""
    if not (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor)
            and isinstance(cu_seqlens, torch.Tensor)):
        return None
    return (q.shape, q.stride(), q.dtype, q.device, k.shape, k.stride(), k.dtype, k.device,
            v.shape, v.stride(), v.dtype, v.device, cu_seqlens.shape, cu_seqlens.stride(),
            cu_seqlens.dtype, cu_seqlens.device, dtypes, head_dim_multiple)


def _check_metadata(q, k, v, cu_seqlens, dtypes, head_dim_multiple) -> None:
    """The checks that read metadata only (types, ranks, dtypes, devices, shapes, strides)."""
    for name, t in (("q", q), ("k", k), ("v", v), ("cu_seqlens", cu_seqlens)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise ValueError(f"{name} must be [total_tokens, num_heads, head_dim], got shape {tuple(t.shape)}")
        if t.dtype not in dtypes:
            allowed = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
            raise ValueError(f"{name} has dtype {str(t.dtype).removeprefix('torch.')}; supported: {allowed}")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}")
        if t.shape[-1] > 1 and t.stride(-1) != 1:
            raise ValueError(f"{name} must be contiguous in head_dim (stride(-1) == 1), got stride {t.stride()}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    if q.shape[0] != k.shape[0]:
        raise ValueError(f"q has {q.shape[0]} tokens but k/v have {k.shape[0]} (self-attention needs equal)")
    head_dim = q.shape[2]
    if k.shape[2] != head_dim:
        raise ValueError(f"q head_dim {head_dim} != k/v head_dim {k.shape[2]}")
    if not MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"head_dim {head_dim} out of range [{MIN_HEAD_DIM}, {MAX_HEAD_DIM}]")
    if head_dim % head_dim_multiple:
        raise ValueError(f"head_dim {head_dim} must be a multiple of {head_dim_multiple} for this backend")
    hq, hkv = q.shape[1], k.shape[1]
    if hkv == 0 or hq % hkv:
        raise ValueError(f"num_heads {hq} is not a multiple of num_kv_heads {hkv} (mismatched heads)")
    if cu_seqlens.dtype != torch.int32:
        raise ValueError(f"cu_seqlens must be int32, got {str(cu_seqlens.dtype).removeprefix('torch.')}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be 1-D [batch + 1] with batch >= 1, got shape {tuple(cu_seqlens.shape)}")
    if not cu_seqlens.is_contiguous():
        raise ValueError(f"cu_seqlens must be contiguous, got stride {cu_seqlens.stride()}")


def _check_cu_values(cu: torch.Tensor, total_tokens: int, max_seqlen: int,
                     capturing: bool | None = None) -> None:
    lens = cu[1:] - cu[:-1]
    if int(cu[0]) != 0:
        raise ValueError(f"cu_seqlens must start at 0, got {int(cu[0])}")
    if bool((lens < 0).any()):
        raise ValueError("cu_seqlens is not monotonic (non-decreasing)")
    last = int(cu[-1])
    # Padded to a token budget (vLLM's encoder CUDA graphs, capture only): fewer tokens in
    # sequences than rows is fine there; the rows past cu_seqlens[-1] are never attended.
    if last != total_tokens and not (last < total_tokens and capturing_now(capturing)):
        raise ValueError(f"cu_seqlens[-1] = {last} but q has {total_tokens} tokens")
    if lens.numel() and int(lens.max()) > max_seqlen:
        raise ValueError(f"max_seqlen {max_seqlen} is smaller than the longest sequence {int(lens.max())}")
