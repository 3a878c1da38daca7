"""Property tests: the pure FlashInfer planner against a reference written the obvious way
(per request, from the full block table and the sequence lengths). numpy only, no vLLM."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vit_backend_plugin.flashinfer_host import planning as P

PAGE_SIZES = [1, 2, 16, 32, 64]


# ----------------------------------------------------------------------------- reference
def ref_split(qlens, num_actual_tokens, threshold, require_uniform):
    """vLLM's decode-first split, spelled out: the decode prefix is the leading run of
    requests with query length <= threshold (and, if uniform, equal to the first one or 0)."""
    n = len(qlens)
    if max(qlens) <= threshold and (not require_uniform or threshold <= 1):
        return (n, 0, num_actual_tokens, 0)
    if qlens[0] > threshold:
        return (0, n, 0, num_actual_tokens)
    nd = n
    for i, q in enumerate(qlens):
        prefill = (q != qlens[0] and q != 0) if require_uniform else q > threshold
        if prefill:
            nd = i
            break
    if nd == n:  # no prefill: padding tokens beyond the real ones count as decode tokens
        return (n, 0, num_actual_tokens, 0)
    ndt = sum(qlens[:nd])
    return (nd, n - nd, ndt, num_actual_tokens - ndt)


def ref_plan(block_table, seq_lens, page_size):
    indptr, indices, last, kvl = [0], [], [], []
    for i, s in enumerate(seq_lens):
        pages = -(-s // page_size)
        indices += list(block_table[i][:pages])
        indptr.append(indptr[-1] + pages)
        last.append(0 if s == 0 else s - (pages - 1) * page_size)
        kvl.append(s)
    return indptr, indices, last, kvl


# ----------------------------------------------------------------------------- batches
@st.composite
def batches(draw, kind=None):
    page_size = draw(st.sampled_from(PAGE_SIZES))
    num_spec = draw(st.sampled_from([0, 0, 1, 3]))
    threshold = 1 + num_spec
    kind = kind or draw(st.sampled_from(["decode", "prefill", "mixed"]))
    n = draw(st.integers(1, 48))
    nd = {"decode": n, "prefill": 0, "mixed": draw(st.integers(0, n))}[kind]
    uniform_q = draw(st.integers(1, threshold))
    qlens = []
    for i in range(n):
        if i < nd:  # decode rows: 1 + accepted drafts (uniform or not); padding rows 0
            q = draw(st.sampled_from([uniform_q, uniform_q, 0, draw(st.integers(1, threshold))]))
        else:
            q = draw(st.integers(threshold + 1, 300))
        qlens.append(q)
    # sequence lengths near page boundaries, empty context, and arbitrary
    seq = []
    for q in qlens:
        ctx = draw(st.one_of(
            st.just(0),
            st.integers(0, 8).map(lambda k: k * page_size),
            st.integers(1, 8).map(lambda k: k * page_size - 1),
            st.integers(0, 8).map(lambda k: k * page_size + 1),
            st.integers(0, 700),
        ))
        seq.append(ctx + q)
    max_pages = max(1, max(-(-s // page_size) for s in seq))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    block_table = rng.permutation(50_000)[: n * (max_pages + 2)].reshape(n, max_pages + 2).astype(np.int32)
    qo = np.zeros(n + 1, np.int32)
    qo[1:] = np.cumsum(qlens)
    pad = draw(st.integers(0, 3))  # num_actual_tokens may be padded beyond the real tokens
    return dict(page_size=page_size, threshold=threshold, qlens=qlens, seq=np.array(seq, np.int32),
                qo=qo, block_table=block_table, num_actual_tokens=int(qo[-1]) + pad,
                require_uniform=draw(st.booleans()))


def bufs(n):
    return {k: np.full(n + 8, -7, np.int32) for k in
            ("indptr_out", "last_page_len_out", "qo_indptr_prefill_out", "kv_lens_prefill_out",
             "kv_lens_decode_out", "pages_scratch")}


def run_plan(b, split):
    out = bufs(len(b["seq"]))
    plan = P.plan_batch(b["qo"], b["seq"], b["page_size"], split, **out)
    return plan, out


# ----------------------------------------------------------------------------- properties
@settings(max_examples=300, deadline=None)
@given(batches())
def test_split_matches_reference(b):
    qlens = b["qlens"]
    got = P.split_decodes_and_prefills(b["qo"], b["num_actual_tokens"], max(qlens),
                                       b["threshold"], b["require_uniform"])
    assert tuple(got) == ref_split(qlens, b["num_actual_tokens"], b["threshold"], b["require_uniform"])
    assert got.num_decodes + got.num_prefills == len(qlens)
    assert got.num_decode_tokens + got.num_prefill_tokens == b["num_actual_tokens"]


@settings(max_examples=300, deadline=None)
@given(batches())
def test_plan_matches_reference(b):
    split = P.split_decodes_and_prefills(b["qo"], b["num_actual_tokens"], max(b["qlens"]),
                                         b["threshold"], b["require_uniform"])
    plan, out = run_plan(b, split)
    indptr, indices, last, kvl = ref_plan(b["block_table"], b["seq"].tolist(), b["page_size"])
    n = len(b["seq"])
    assert plan.paged_kv_indptr.tolist() == indptr
    assert plan.last_page_len.tolist() == last
    # written in place into the caller's buffers, nothing past the batch touched
    assert np.shares_memory(plan.paged_kv_indptr, out["indptr_out"])
    assert np.shares_memory(plan.last_page_len, out["last_page_len_out"])
    assert (out["indptr_out"][n + 1:] == -7).all() and (out["last_page_len_out"][n:] == -7).all()
    # page indices gathered from the block table
    got_idx = P.paged_kv_indices(b["block_table"], plan.paged_kv_indptr, np.zeros(indptr[-1] + 1, np.int32))
    assert got_idx.tolist() == indices
    # prefill part: rebased qo_indptr, kv lens from a non-rebased indptr slice
    nd, npf = split.num_decodes, split.num_prefills
    qo = b["qo"].tolist()
    assert plan.qo_indptr_prefill.tolist() == ([q - qo[nd] for q in qo[nd:]] if npf else [])
    assert plan.kv_lens_prefill.tolist() == (kvl[nd:] if npf else [])
    # decode part: kv lens of the first num_decode_tokens rows (what FlashInfer's
    # get_seq_lens gives back from indptr + last_page_len); == the sequence lengths
    if nd and split.num_decode_tokens <= n:
        assert plan.kv_lens_decode.tolist() == kvl[: split.num_decode_tokens]
    else:
        assert plan.kv_lens_decode.size == 0


@settings(max_examples=100, deadline=None)
@given(batches(kind="decode"))
def test_all_decode(b):
    split = P.split_decodes_and_prefills(b["qo"], b["num_actual_tokens"], max(b["qlens"]),
                                         b["threshold"], require_uniform=False)
    assert split.num_prefills == 0 and split.num_decodes == len(b["qlens"])
    plan, _ = run_plan(b, split)
    assert plan.qo_indptr_prefill.size == 0 and plan.kv_lens_prefill.size == 0


@settings(max_examples=100, deadline=None)
@given(batches(kind="prefill"))
def test_all_prefill(b):
    split = P.split_decodes_and_prefills(b["qo"], b["num_actual_tokens"], max(b["qlens"]),
                                         b["threshold"], b["require_uniform"])
    assert split == (0, len(b["qlens"]), 0, b["num_actual_tokens"])
    plan, _ = run_plan(b, split)
    assert plan.qo_indptr_prefill.tolist() == b["qo"].tolist()
    assert plan.kv_lens_prefill.tolist() == b["seq"].tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=64), st.data())
def test_speculative_host_seq_lens(num_computed, data):
    """Spec decode: seq_len = num_computed_tokens (already net of rejected drafts) +
    scheduled tokens (1 + drafts); page math on top is then exact at page boundaries."""
    k = data.draw(st.integers(0, 7))
    qlens = [data.draw(st.integers(0, 1 + k)) for _ in num_computed]
    qo = np.zeros(len(qlens) + 1, np.int32)
    qo[1:] = np.cumsum(qlens)
    nc = np.array(num_computed, np.int32)
    out = np.empty(len(qlens), np.int32)
    got = P.host_seq_lens(nc, qo, out=out)
    assert got is out
    assert got.tolist() == [c + q for c, q in zip(num_computed, qlens, strict=True)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=32), st.integers(16, 2048))
def test_draft_step_clamp(ub, max_model_len):
    got = P.draft_step_seq_lens(np.array(ub, np.int32), max_model_len)
    assert got.tolist() == [1 if s > max_model_len else s for s in ub]


@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_page_boundaries_and_empty(page_size):
    seq = np.array([0, 1, page_size - 1 or 1, page_size, page_size + 1, 3 * page_size], np.int32)
    last = np.empty_like(seq)
    P.last_page_len(seq, page_size, out=last)
    expect = [0, 1 if page_size > 1 else 1, (page_size - 1 or 1) if page_size > 1 else 1,
              page_size, 1, page_size]
    assert last.tolist() == expect
    pages = P.num_pages(seq, page_size)
    assert pages.tolist() == [-(-int(s) // page_size) for s in seq]
    indptr = np.empty(len(seq) + 1, np.int32)
    P.paged_kv_indptr(pages, out=indptr)
    kvl = np.empty_like(seq)
    assert P.kv_lens(indptr, last, page_size, out=kvl).tolist() == seq.tolist()
