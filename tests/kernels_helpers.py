"""Kernel checks that need TRITON_INTERPRET=1 (set before triton is imported). Not collected by
the outer run (no test_ prefix): tests/test_kernels_interp.py runs this file in a subprocess."""

import os

assert os.environ.get("TRITON_INTERPRET") == "1", "run via tests/test_kernels_interp.py"

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from vit_backend_plugin.kernels.triton_vit import split_head_dim, vit_attention  # noqa: E402

TOL = {torch.bfloat16: 1e-2, torch.float16: 1e-2, torch.float32: 1e-3}


def reference(q, k, v, cu, scale=None):
    """float64 per-sequence attention (GQA by repeating K/V heads)."""
    out = torch.empty(q.shape, dtype=torch.float64)
    g = q.shape[1] // k.shape[1]
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        qi = q[s:e].double().transpose(0, 1)
        ki = k[s:e].double().repeat_interleave(g, 1).transpose(0, 1)
        vi = v[s:e].double().repeat_interleave(g, 1).transpose(0, 1)
        out[s:e] = torch.nn.functional.scaled_dot_product_attention(qi, ki, vi, scale=scale).transpose(0, 1)
    return out


def run_case(lens, d, dtype, hq=2, hkv=1, config=None, scale=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)
    t = int(cu[-1])
    q = torch.randn(t, hq, d, generator=g).to(dtype)
    k = torch.randn(t, hkv, d, generator=g).to(dtype)
    v = torch.randn(t, hkv, d, generator=g).to(dtype)
    out = torch.full_like(q, float("nan"))  # poison: an unwritten row fails
    vit_attention(q, k, v, cu, max(lens), softmax_scale=scale, out=out, config=config)
    ref = reference(q, k, v, cu, scale)
    assert not out.isnan().any(), "unwritten or NaN output"
    err = ((out.double() - ref).norm() / ref.norm()).item()
    assert err < TOL[dtype], f"rel err {err} (lens={lens}, d={d}, {dtype}, cfg={config})"
    return err


MAIN = {"kernel": "main", "BLOCK_M": 32, "BLOCK_N": 16, "num_warps": 4, "num_stages": 1}
MAIN_PAD = dict(MAIN, min_d1=256)
PACKED = {"kernel": "packed", "PACK": 3, "num_warps": 4, "num_stages": 1}


@pytest.mark.parametrize("d", [32, 64, 72, 80, 128])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_mixed_lengths_table_config(d, dtype):
    run_case([1, 7, 64, 65, 129], d, dtype)


@pytest.mark.parametrize("cfg", [MAIN, MAIN_PAD], ids=["split", "pad"])
@pytest.mark.parametrize("d", [72, 80, 96])
def test_small_tiles_split_and_pad(cfg, d):
    # Small tiles force many full blocks + a masked block per sequence, and many m-blocks.
    run_case([1, 7, 64, 65, 40], d, torch.bfloat16, config=cfg)


@pytest.mark.parametrize("d", [32, 80, 128])
def test_packed_short_sequences(d):
    # 64-token windows plus odd tails, a batch that is not a multiple of PACK.
    run_case([64, 3, 64, 1, 64, 50, 64], d, torch.bfloat16, config=PACKED)
    run_case([64, 3, 64, 1, 64, 50, 64], d, torch.float32, config=PACKED)


def test_fp16_gqa_and_scale():
    run_case([33, 65], 80, torch.float16, hq=4, hkv=2, scale=0.05)


def test_split_rule():
    assert split_head_dim(64) == (64, 0)
    assert split_head_dim(72) == (64, 16)
    assert split_head_dim(80) == (64, 16)
    assert split_head_dim(96) == (64, 32)
    assert split_head_dim(80, min_d1=256) == (128, 0)
    assert split_head_dim(256) == (256, 0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lens=st.lists(st.integers(1, 80), min_size=1, max_size=4),
    d=st.sampled_from([32, 40, 64, 72, 80, 112, 128]),
    heads=st.sampled_from([(1, 1), (2, 1), (4, 2)]),
    cfg=st.sampled_from([None, MAIN, MAIN_PAD, PACKED]),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_shapes(lens, d, heads, cfg, seed):
    if cfg is PACKED and max(lens) > 64:
        cfg = MAIN
    run_case(lens, d, torch.bfloat16, hq=heads[0], hkv=heads[1], config=cfg, seed=seed)


# ------------------------------------------------------------------ the input contract


def poisoned_out(q):
    return torch.full_like(q, float("nan"))  # an unwritten row stays NaN


@pytest.mark.parametrize("cfg", [None, MAIN, PACKED], ids=["table", "main", "packed"])
@pytest.mark.parametrize("d", [72, 80])
def test_strided_views_of_packed_qkv(cfg, d):
    # What vLLM's vision towers hand over: q, k, v as views of one [tokens, 3, heads, d] tensor.
    lens = [7, 64, 1, 50]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)
    qkv = torch.randn(int(cu[-1]), 3, 2, d, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    q, k, v = qkv.unbind(1)
    assert not q.is_contiguous()
    out = vit_attention(q, k, v, cu, max(lens), out=poisoned_out(q), config=cfg)
    ref = reference(q, k, v, cu)
    assert not out.isnan().any()
    assert ((out.double() - ref).norm() / ref.norm()).item() < TOL[torch.bfloat16]


def test_max_seqlen_zero_is_derived():
    q, k, v = (torch.randn(72, 2, 80).to(torch.bfloat16) for _ in range(3))
    cu = torch.tensor([0, 5, 70, 72], dtype=torch.int32)
    out = vit_attention(q, k, v, cu, 0, out=poisoned_out(q))
    assert not out.isnan().any()
    ref = reference(q, k, v, cu)
    assert ((out.double() - ref).norm() / ref.norm()).item() < TOL[torch.bfloat16]


@pytest.mark.parametrize("cfg", [MAIN, PACKED], ids=["main", "packed"])
def test_max_seqlen_too_small_still_writes_every_row(cfg):
    # A device cu_seqlens without VIT_KERNELS_DEBUG is never read on the host, so the launch gets
    # the caller's max_seqlen as is: here 16 for sequences of up to 100 tokens.
    from vit_backend_plugin.kernels.triton_vit import _launch

    lens = [100, 3, 40, 16]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)
    q, k, v = (torch.randn(int(cu[-1]), 2, 72).to(torch.bfloat16) for _ in range(3))
    out = _launch(q, k, v, cu, 16, None, poisoned_out(q), cfg)
    assert not out.isnan().any(), "rows left unwritten"
    ref = reference(q, k, v, cu)
    assert ((out.double() - ref).norm() / ref.norm()).item() < TOL[torch.bfloat16]


def _huge_stride_qkv(tokens, stride):
    """q, k, v: strided views of a packed qkv whose token stride puts the last rows past 2**31
    elements (the storage is reserved, only the rows used are touched)."""
    h, d = 1, 32
    buf = torch.empty((tokens - 1) * stride + 3 * h * d, dtype=torch.bfloat16)
    qkv = buf.as_strided((tokens, 3, h, d), (stride, h * d, d, 1))
    qkv.copy_(torch.randn(tokens, 3, h, d, generator=torch.Generator().manual_seed(2)))
    return qkv.unbind(1)


@pytest.mark.parametrize("cfg", [dict(MAIN, BLOCK_M=64), PACKED], ids=["main", "packed"])
def test_offsets_past_2_31_use_64_bit_math(cfg):
    from vit_backend_plugin.kernels.triton_vit import _needs_64bit_offsets

    stride = 2**26
    assert not _needs_64bit_offsets(*_huge_stride_qkv(32, stride))  # last row at 2**31 - 2**26
    q, k, v = _huge_stride_qkv(33, stride)  # last row at exactly 2**31
    assert _needs_64bit_offsets(q, k, v)
    cu = torch.tensor([0, 33], dtype=torch.int32)
    out = vit_attention(q, k, v, cu, 33, out=poisoned_out(q), config=cfg)
    ref = reference(q, k, v, cu)
    assert not out.isnan().any()
    assert ((out.double() - ref).norm() / ref.norm()).item() < TOL[torch.bfloat16]
