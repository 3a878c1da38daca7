"""VIT_AUTO: per call, the fastest of vLLM's FlashAttention (FA3 on Hopper, where importable),
torch SDPA on cuDNN (forced for its own calls, whatever vLLM set globally) and our Triton kernel,
as the measured-speed table says for this call's shape.

vLLM picks a ViT backend once per process, before it sees an image, and no single kernel wins
every shape (H100: FA3 long and mixed-length batches, cuDNN equal-length batches of image size,
ours windows and d64). The decision uses host-side facts only, so it costs no device sync: head
size, dtype, whether all sequences have equal length (total tokens == batch * max_seqlen),
max_seqlen, the number of sequences and of heads, and whether the call is being captured in a CUDA
graph. Captured, a call costs its GPU time; eager (vLLM's default for the encoder), the host issues
every call, and a backend whose host time exceeds its GPU time costs its host time: table rows that
record each backend's host time per call (``host_us``) let short calls avoid the backend that is
fastest on the GPU but slowest to issue (cuDNN). The table is data (``data/speed_table.json``, or
the user table written by `vit-parity tune`).

A row decides only for calls near its measured shape (:mod:`vit_backend_plugin.kernels.row_distance`:
within the limits of ``data/vit_auto_nearness.yaml`` in length, number of sequences and heads);
with no near row, the backend stock vLLM would use: FlashAttention where it runs the call, else
our kernel. Which of the three can run a call is the resolver's own rule (the catalog, this
process's features from :mod:`vit_backend_plugin.selection.probe` and the GPU's compute
capability: vLLM's FlashAttention and cuDNN need 8.0, our kernel 7.5 in fp16).

In vLLM's encoder CUDA-graph capture (the plugin's op passes ``capturing=True``) the tokens are
padded to a budget and max_seqlen is only an upper bound: equal lengths can't be told from shapes
there, so the choice is between FlashAttention and our kernel (both write into the op's ``out``,
whose padding rows stay as the caller set them), never TORCH_SDPA_CUDNN.
"""

from __future__ import annotations

import functools

from vit_backend_plugin.kernels._validate import as_max_seqlen
from vit_backend_plugin.kernels.registry import load_kernel
from vit_backend_plugin.kernels.row_distance import nearest_row_distance
from vit_backend_plugin.selection import probe
from vit_backend_plugin.selection.resolver import ResolveRequest, usable_among

DEFAULT = "VIT_TRITON"
CHOICES = ("FLASH_ATTN", "TORCH_SDPA_CUDNN", "VIT_TRITON")


# Another backend replaces the default (stock vLLM's FLASH_ATTN where it runs) only when the
# table says it is this much faster: timing noise must not trade stock's kernel for a slower one.
MARGIN = 1.03


def call_cost_us(tflops: float, host_us: float | None, call_flops: float | None) -> float:
    """Time per call when calls are issued back to back, as an eager tower issues its layers:
    the larger of the GPU time (this call's FLOPs at the row's measured rate) and the host time to
    issue it. Without host time or FLOPs: GPU time per unit of work (only its ratios matter)."""
    if host_us is None or not call_flops:
        return 1e6 / tflops
    return max(call_flops / (tflops * 1e6), host_us)


def choose(rows: list[dict], equal_lengths: bool, max_seqlen: int, num_seqs: int | None = None,
           available: tuple[str, ...] = CHOICES, default: str = DEFAULT, *,
           call_flops: float | None = None, num_heads: int | None = None) -> str:
    """Pure policy. ``rows``: speed-table entries (dicts) for one device/dtype/head size. The row
    nearest to the call (:func:`nearest_row_distance`: same kind, equal or mixed lengths; bucket
    holding max_seqlen, narrowest, then nearest in length, number of sequences and ``num_heads``)
    decides between ``available`` if the call is near it; otherwise, or with no such row, the
    ``default`` (stock vLLM's backend for the call). Numerics must have passed; the default keeps
    its place unless another is MARGIN faster.

    ``call_flops`` (an eager call: the host issues it) with a row that has every candidate's
    ``host_us``: the cost is :func:`call_cost_us`, so a backend whose GPU time is shorter than its
    host time is charged its host time (cuDNN's is the highest: on short calls it is faster on the
    GPU and slower back to back). ``None`` (a CUDA graph replays the call: no host time per call)
    or no host times in the row: GPU time alone."""
    near = nearest_row_distance(rows, equal_lengths=equal_lengths, max_seqlen=max_seqlen,
                                num_seqs=num_seqs, num_heads=num_heads)
    if near is None or not near["near"]:  # the table has not measured anything like this call
        return default
    row = rows[near["index"]]
    ok = [n for n, t in row["tflops"].items()
          if n in available and t > 0 and row.get("numerics_ok", {}).get(n, False)]
    if not ok:
        return default
    host = row.get("host_us") or {}
    if not all(host.get(n) for n in ok):  # host time of some candidate unknown: GPU time alone
        call_flops = None
    cost = {n: call_cost_us(row["tflops"][n], host.get(n), call_flops) for n in ok}
    best = min(ok, key=cost.get)
    if default in cost and cost[default] < cost[best] * MARGIN:
        return default
    return best


@functools.cache
def _capability(index: int) -> tuple[int, int]:
    import torch

    return tuple(torch.cuda.get_device_capability(index))


@functools.cache
def table_rows(capability: tuple[int, int], dtype: str, head_size: int) -> tuple[dict, ...]:
    from vit_backend_plugin.selection import speed_table

    for table in (speed_table.load_user(), speed_table.load_shipped()):
        if table is None:
            continue
        rows = table.matching(capability, dtype, head_size)
        if rows:
            return tuple(r.model_dump() for r in rows)
    return ()


def available_choices(capability: tuple[int, int], dtype: str, head_size: int,
                      features: frozenset[str]) -> tuple[str, ...]:
    """Which CHOICES can run a call on a CUDA device of ``capability`` with ``features`` (what
    :mod:`~vit_backend_plugin.selection.probe` finds): the resolver's rule, from the catalog, so
    VIT_AUTO never routes a call to a kernel the resolver would refuse (vLLM's FlashAttention on
    compute capability 7.5, say). Pure. cuDNN only needs to exist: our calls force it on."""
    req = ResolveRequest(head_size=head_size, dtype=dtype, platform="cuda",
                         capability=tuple(capability), features=frozenset(features))
    return usable_among(CHOICES, req)


@functools.cache
def _available(capability: tuple[int, int] | None, dtype: str, head_size: int) -> tuple[str, ...]:
    """:func:`available_choices` with this process's features. ``capability`` None: not a CUDA
    tensor, where only our kernel runs (under Triton's interpreter)."""
    if capability is None:
        return (DEFAULT,)
    return available_choices(capability, dtype, head_size, probe.runtime_features("cuda"))


@functools.cache
def _vllm_flash_attn():
    """(flash_attn_varlen_func, get_flash_attn_version) from the installed vLLM, or None."""
    try:
        from vllm.v1.attention.backends.fa_utils import (
            flash_attn_varlen_func,
            get_flash_attn_version,
        )
    except Exception:  # noqa: BLE001 -- no CUDA build of vLLM here
        return None
    return flash_attn_varlen_func, get_flash_attn_version


@functools.cache
def _fa_version(head_size: int):
    return _vllm_flash_attn()[1](head_size=head_size)


def vllm_flash_attention(q, k, v, cu_seqlens, max_seqlen, softmax_scale=None, out=None):
    """vLLM's FlashAttention varlen call, as its ViT wrapper makes it (FA version vLLM picks);
    ``out``: written in place, as vLLM's wrapper passes it."""
    kwargs = {} if out is None else {"out": out}
    return _vllm_flash_attn()[0](
        q, k, v, cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens, max_seqlen_q=max_seqlen,
        max_seqlen_k=max_seqlen, dropout_p=0.0, softmax_scale=softmax_scale, causal=False,
        fa_version=_fa_version(q.shape[-1]), **kwargs)


@functools.lru_cache(maxsize=4096)
def decide(capability: tuple[int, int], dtype: str, head_size: int, equal_lengths: bool,
           max_seqlen: int, num_seqs: int, is_cuda: bool, capturing: bool = False,
           call_flops: float | None = None, num_heads: int | None = None) -> str:
    """The backend for one call; cached on every input that changes it (the table, the features
    and the nearness limits are fixed per process). ``call_flops``: None when the call is
    captured in a CUDA graph (GPU time decides). ``num_heads``: the call's query heads."""
    available = _available(capability if is_cuda else None, dtype, head_size)
    if capturing:  # padded inputs: cuDNN's equal-length shortcut would attend over the padding
        available = tuple(n for n in available if n != "TORCH_SDPA_CUDNN")
    default = "FLASH_ATTN" if "FLASH_ATTN" in available else DEFAULT
    return choose(list(table_rows(capability, dtype, head_size)), equal_lengths, max_seqlen, num_seqs,
                  available, default, call_flops=None if capturing else call_flops,
                  num_heads=num_heads)


def eager_call_flops(q, max_seqlen: int) -> float | None:
    """The call's FLOPs as the host knows them (4 * tokens * max_seqlen * head size * heads:
    exact for equal lengths, an upper bound for mixed ones), or None while a benchmark captures
    the call in a CUDA graph (a replay costs the host nothing per call: GPU time alone decides
    there; vLLM's own captures arrive with ``capturing=True`` and never ask)."""
    from vit_backend_plugin.kernels.capture import (
        exact_capturing,  # torch-free import of this module
    )

    if exact_capturing():
        return None
    return 4.0 * q.shape[0] * max_seqlen * q.shape[-1] * q.shape[-2]


def vit_auto_attention(q, k, v, cu_seqlens, max_seqlen, softmax_scale=None, *,
                       max_seqlen_exact: bool = False, out=None, capturing: bool = False):
    """Same contract as :func:`vit_backend_plugin.kernels.vit_attention`. ``capturing=True``:
    vLLM's encoder CUDA-graph capture (padded inputs; see the module docstring). ``out``: the
    output buffer, written in place by FlashAttention or our kernel."""
    # The contract's own check (an int or a one-element tensor): a float is refused, not truncated.
    max_seqlen = as_max_seqlen(max_seqlen, "VIT_AUTO", capturing)
    batch = cu_seqlens.shape[0] - 1
    equal = batch > 0 and q.shape[0] == batch * max_seqlen and not capturing
    is_cuda = q.is_cuda
    cap = _capability(q.get_device()) if is_cuda else (0, 0)  # get_device: the CUDA index
    name = decide(cap, _dtype_name(q.dtype), q.shape[-1], equal, max_seqlen, batch, is_cuda,
                  capturing, None if capturing else eager_call_flops(q, max_seqlen), q.shape[-2])
    if name == "FLASH_ATTN":
        if softmax_scale is None:
            softmax_scale = q.shape[-1] ** -0.5
        return vllm_flash_attention(q, k, v, cu_seqlens, max_seqlen, softmax_scale, out=out)
    if name == "VIT_TRITON":
        return load_kernel(name)(q, k, v, cu_seqlens, max_seqlen, softmax_scale, out=out,
                                max_seqlen_exact=max_seqlen_exact, capturing=capturing or None)
    if out is not None:  # a callee with its own output; not reached while capturing
        out.copy_(load_kernel(name)(q, k, v, cu_seqlens, max_seqlen, softmax_scale))
        return out
    return load_kernel(name)(q, k, v, cu_seqlens, max_seqlen, softmax_scale)


@functools.cache
def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")
