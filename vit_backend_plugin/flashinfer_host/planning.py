"""FlashInfer planning inputs from host-side state only: pure numpy, no torch, no vLLM.

Every function takes numpy arrays and, where the builder calls it once per step, writes
into a caller-supplied ``out`` array in place (the builder passes views of persistent
pinned host buffers, so nothing is allocated per step). Each returns the array it wrote.

Conventions (those of vLLM 0.32's ``FlashInferMetadataBuilder`` and FlashInfer's plan()):

* ``qo_indptr``          int32 [num_reqs + 1]  cumulative query lengths (``query_start_loc_cpu``)
* ``seq_lens``           int32 [num_reqs]      KV length of each request *including* this
                                              step's query tokens (context + new tokens)
* ``paged_kv_indptr``    int32 [num_reqs + 1]  cumulative page counts, ``[0] == 0``
* ``paged_kv_last_page_len`` int32 [num_reqs]  tokens in the last page; ``page_size`` when the
                                              sequence ends exactly on a page boundary;
                                              0 for an empty sequence
* ``kv_lens``            int32 [num_reqs]      what ``flashinfer.get_seq_lens`` recomputes from
                                              the two arrays above (equal to ``seq_lens``)
* ``paged_kv_indices``   int32 [indptr[-1]]    the block-table rows' first ``num_pages[i]``
                                              entries, concatenated

Speculative decoding: where the host-side lengths come from
----------------------------------------------------------
vLLM 0.32's V1 ``GPUModelRunner._prepare_inputs`` computes, on the host,

    optimistic_seq_lens_cpu = input_batch.num_computed_tokens_cpu + num_scheduled_tokens

and hands it to builders as ``CommonAttentionMetadata.seq_lens_cpu_upper_bound``; the device
``seq_lens`` is ``num_computed_tokens (device copy) + num_scheduled_tokens``. Under spec
decoding ``num_scheduled_tokens`` of a decode row is ``1 + num_draft_tokens`` (its query
length, ``qo_indptr[i+1] - qo_indptr[i]``), so :func:`host_seq_lens` is
``num_computed_tokens + query_lens``. With *synchronous* scheduling this is exact: the
scheduler's ``update_from_output`` already subtracted the previous step's rejected drafts
from ``request.num_computed_tokens`` before it scheduled this step, and the runner copies
that value into ``num_computed_tokens_cpu`` (``_update_states``). The host and device
values are then the same numbers, and the stock builder's ``seq_lens.cpu()`` (taken whenever
``num_speculative_tokens > 0``) only re-reads what the host already had.
It is NOT exact (and the builder falls back to the stock path) when the previous step's
acceptance is known only on the device: async scheduling with spec decoding (the runner
corrects ``num_computed_tokens`` on the GPU, ``update_num_computed_tokens_for_batch_change``),
the V2 model runner, and the EAGLE padded drafter's steps >= 1 (``seq_lens -=
num_rejected_tokens_gpu`` on the device only).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

INDEX_DTYPE = np.int32


class Split(NamedTuple):
    num_decodes: int
    num_prefills: int
    num_decode_tokens: int
    num_prefill_tokens: int


def query_lens(qo_indptr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Per-request query lengths from the cumulative ``qo_indptr``."""
    return np.subtract(qo_indptr[1:], qo_indptr[:-1], out=out)


def host_seq_lens(
    num_computed_tokens: np.ndarray, qo_indptr: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """KV lengths the scheduler already knows: ``num_computed_tokens + query_len``.

    This is exactly how vLLM 0.32 fills ``seq_lens_cpu_upper_bound`` (see module docstring
    for when it equals the device ``seq_lens``, spec decoding included).
    """
    out = query_lens(qo_indptr, out=out)
    np.add(out, num_computed_tokens, out=out)
    return out


def draft_step_seq_lens(
    seq_lens_upper_bound: np.ndarray, max_model_len: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Host mirror of vLLM's EAGLE step kernel for a drafter step whose host lengths are
    exact up to the ``max_model_len`` clamp (non-padded drafter batch): the host adds 1 per
    step without clamping, the device writes ``1`` once the position passes
    ``max_model_len`` (``eagle_step_slot_mapping_metadata_kernel``)."""
    if out is None:
        out = np.empty_like(seq_lens_upper_bound)
    np.copyto(out, seq_lens_upper_bound)
    out[seq_lens_upper_bound > max_model_len] = 1
    return out


def split_decodes_and_prefills(
    qo_indptr: np.ndarray,
    num_actual_tokens: int,
    max_query_len: int,
    decode_threshold: int,
    require_uniform: bool,
) -> Split:
    """numpy twin of ``vllm.v1.attention.backends.utils.split_decodes_and_prefills`` (0.32),
    ``treat_short_extends_as_decodes=True`` (what the FlashInfer builder uses).

    The batch is reordered decodes-first. With ``require_uniform``, a decode prefix must have
    one query length (zero-length CUDA-graph padding rows allowed).
    """
    num_reqs = len(qo_indptr) - 1
    if max_query_len <= decode_threshold and (not require_uniform or decode_threshold <= 1):
        return Split(num_reqs, 0, num_actual_tokens, 0)
    ql = query_lens(qo_indptr)
    if ql[0] > decode_threshold:
        return Split(0, num_reqs, 0, num_actual_tokens)
    if require_uniform:
        if np.all((ql == ql[0]) | (ql == 0)):
            return Split(num_reqs, 0, num_actual_tokens, 0)
        is_prefill = (ql != ql[0]) & (ql != 0)
    else:
        is_prefill = ql > decode_threshold
    if not is_prefill.any():
        return Split(num_reqs, 0, num_actual_tokens, 0)
    first = int(np.argmax(is_prefill))
    num_decode_tokens = int(qo_indptr[first])
    return Split(first, num_reqs - first, num_decode_tokens, num_actual_tokens - num_decode_tokens)


class DecodeQueryLens(NamedTuple):
    """What the XQA / trtllm-gen decode kernels take about the decode rows' query lengths."""

    q_len_per_req: int
    device_offsets: bool  # ragged: the kernel reads the device ``query_start_loc[: nd + 1]``
    ragged_q_lens: list[int] | None  # XQA only: per-row lengths for its ragged draft mask


def decode_query_lens(qo_indptr: np.ndarray, num_decodes: int, num_decode_tokens: int,
                      xqa: bool) -> DecodeQueryLens:
    """numpy twin of vLLM 0.32's ``FlashInferMetadataBuilder._compute_decode_query_lens``,
    from ``query_start_loc_cpu`` alone (tests compare the two on the same inputs).

    Uniform decode rows give their common length; zero-length rows are CUDA-graph padding.
    """
    if num_decodes == 0 or num_decode_tokens == 0:
        return DecodeQueryLens(1, False, None)
    ql = query_lens(qo_indptr[: num_decodes + 1])
    if not xqa:
        q = num_decode_tokens // num_decodes
        if num_decode_tokens % num_decodes == 0 and bool((ql == q).all()):
            return DecodeQueryLens(q, False, None)
        q_max = int(ql.max())
        return DecodeQueryLens(q_max, True, None) if q_max > 1 else DecodeQueryLens(1, False, None)
    nonzero = ql[ql > 0]
    q = int(nonzero.max()) if nonzero.size else 1
    uniform = nonzero.size <= 1 or bool((nonzero == nonzero[0]).all())
    if uniform and num_decode_tokens == num_decodes * q:
        return DecodeQueryLens(q, False, None)
    if q <= 1:
        return DecodeQueryLens(1, False, None)
    return DecodeQueryLens(q, True, [int(x) for x in ql])


def decode_cudagraph_max_bs(num_speculative_tokens: int, max_num_seqs: int,
                            max_cudagraph_capture_size: int | None) -> int:
    """Largest native-decode token count that stock vLLM 0.32 plans with a CUDA-graph decode
    wrapper: ``(1 + num_speculative_tokens) * max_num_seqs``, capped by the compilation
    config's ``max_cudagraph_capture_size`` (as stock's ``__init__`` computes it)."""
    bound = (1 + num_speculative_tokens) * max_num_seqs
    return bound if max_cudagraph_capture_size is None else min(bound, max_cudagraph_capture_size)


def num_pages(seq_lens: np.ndarray, page_size: int, out: np.ndarray | None = None) -> np.ndarray:
    """``ceil(seq_len / page_size)`` per request (0 for an empty sequence)."""
    out = np.add(seq_lens, page_size - 1, out=out)
    np.floor_divide(out, page_size, out=out)
    return out


def paged_kv_indptr(pages: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cumulative page counts into ``out`` (length ``len(pages) + 1``), ``out[0] = 0``."""
    out[0] = 0
    np.cumsum(pages, dtype=out.dtype, out=out[1:])
    return out


def last_page_len(seq_lens: np.ndarray, page_size: int, out: np.ndarray) -> np.ndarray:
    """Tokens in each request's last page: ``page_size`` on a page boundary, 0 when empty."""
    np.remainder(seq_lens, page_size, out=out)
    out[(out == 0) & (seq_lens != 0)] = page_size
    return out


def kv_lens(indptr: np.ndarray, last_len: np.ndarray, page_size: int, out: np.ndarray) -> np.ndarray:
    """``flashinfer.get_seq_lens`` on the host:
    ``max(pages - 1, 0) * page_size + last_page_len``. ``indptr`` may be a slice of a
    larger indptr (not rebased), as the builder passes for the prefill part of a batch."""
    np.subtract(indptr[1:], indptr[:-1], out=out)
    out -= 1
    np.maximum(out, 0, out=out)
    out *= page_size
    out += last_len
    return out


def paged_kv_indices(block_table: np.ndarray, indptr: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Gather the first ``indptr[i+1] - indptr[i]`` block ids of row ``i`` into ``out``.

    The builder does this gather on the device (the block table lives there; vLLM's own
    Triton kernel reads the device indptr we copied host-to-device). This host version is
    the reference ``bench-builder --planner-only`` checks the device gather against.
    """
    counts = indptr[1:] - indptr[:-1]
    total = int(indptr[-1] - indptr[0])
    if total == 0:
        return out[:0]
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.repeat(indptr[:-1] - indptr[0], counts)
    cols = np.arange(total) - starts
    out[:total] = block_table[rows, cols]
    return out[:total]


class PlanArrays(NamedTuple):
    """Views into the caller's buffers, each sized for this batch."""

    split: Split
    paged_kv_indptr: np.ndarray  # [num_reqs + 1]
    last_page_len: np.ndarray  # [num_reqs]
    qo_indptr_prefill: np.ndarray  # [num_prefills + 1], rebased to 0; empty if no prefill
    kv_lens_prefill: np.ndarray  # [num_prefills]
    kv_lens_decode: np.ndarray  # [num_decode_tokens], empty if that exceeds num_reqs


def plan_batch(
    qo_indptr: np.ndarray,
    seq_lens: np.ndarray,
    page_size: int,
    split: Split,
    *,
    indptr_out: np.ndarray,
    last_page_len_out: np.ndarray,
    qo_indptr_prefill_out: np.ndarray,
    kv_lens_prefill_out: np.ndarray,
    kv_lens_decode_out: np.ndarray,
    pages_scratch: np.ndarray,
) -> PlanArrays:
    """Everything FlashInfer's native prefill/decode plan() takes from the host, for one
    batch, written into the given buffers (each at least ``num_reqs + 1`` long).

    The slices mirror what vLLM 0.32's stock builder passes: prefill gets
    ``indptr[nd : num_reqs + 1]`` (not rebased; it indexes the batch-wide page-index array),
    ``last_page_len[nd:]``, a rebased ``qo_indptr`` and ``get_seq_lens`` of those two; decode
    gets ``indptr[: num_decode_tokens + 1]`` and ``last_page_len[: num_decode_tokens]``.
    """
    n = len(seq_lens)
    nd, npf, ndt, _ = split
    pages = num_pages(seq_lens, page_size, out=pages_scratch[:n])
    indptr = paged_kv_indptr(pages, out=indptr_out[: n + 1])
    last = last_page_len(seq_lens, page_size, out=last_page_len_out[:n])
    qo_p = qo_indptr_prefill_out[: npf + 1 if npf else 0]
    kvl_p = kv_lens_prefill_out[:npf]
    if npf:
        np.subtract(qo_indptr[nd:], qo_indptr[nd], out=qo_p)
        kv_lens(indptr[nd:], last[nd:], page_size, out=kvl_p)
    # Native decode plans one query token per row (vLLM only reorders multi-token decodes
    # for the XQA/trtllm-gen kernels, which read device tensors): rows = decode tokens.
    m = ndt if (nd and ndt <= n) else 0
    kvl_d = kv_lens_decode_out[:m]
    if m:
        kv_lens(indptr[: m + 1], last[:m], page_size, out=kvl_d)
    return PlanArrays(split, indptr, last, qo_p, kvl_p, kvl_d)
