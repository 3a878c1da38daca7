"""Kernel checks that need TRITON_INTERPRET=1 (set before triton is imported). Not collected by
the outer run (no test_ prefix): tests/test_kernels_interp.py runs this file in a subprocess."""

import os

assert os.environ.get("TRITON_INTERPRET") == "1", "run via tests/test_kernels_interp.py"

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from vit_backend_plugin.kernels import vit_attention  # noqa: E402
from vit_backend_plugin.kernels.triton_vit import split_head_dim  # noqa: E402

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
