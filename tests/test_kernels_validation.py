"""Bad inputs to our kernels raise a clear ValueError before any launch (CPU tensors: a launch
would fail differently, so reaching one would not raise ValueError)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from vit_backend_plugin.kernels.registry import PLUGIN_BACKENDS, load_kernel  # noqa: E402
from vit_backend_plugin.kernels.sdpa_cudnn import sdpa_cudnn_attention  # noqa: E402
from vit_backend_plugin.kernels.triton_vit import vit_attention  # noqa: E402


def make(t=10, h=2, hkv=2, d=64, dtype=torch.bfloat16):
    q = torch.randn(t, h, d).to(dtype)
    k = torch.randn(t, hkv, d).to(dtype)
    v = torch.randn(t, hkv, d).to(dtype)
    cu = torch.tensor([0, 4, t], dtype=torch.int32)
    return q, k, v, cu


@pytest.mark.parametrize("fn", [vit_attention, sdpa_cudnn_attention])
@pytest.mark.parametrize("case,match", [
    ("dtype", "dtype"),
    ("mixed_dtype", "dtype"),
    ("heads", "num_kv_heads"),
    ("cu_dtype", "int32"),
    ("cu_monotonic", "monotonic"),
    ("cu_last", "tokens"),
    ("cu_start", "start at 0"),
    ("head_dim_small", "out of range"),
    ("head_dim_big", "out of range"),
    ("head_dim_mismatch", "head_dim"),
    ("rank", "total_tokens, num_heads, head_dim"),
    ("tokens", "tokens"),
    ("kv_shape", "shapes differ"),
    ("max_seqlen", "max_seqlen"),
    ("max_seqlen_small", "longest"),
    ("cu_rank", "1-D"),
    ("cu_strided", "contiguous"),
    ("max_seqlen_negative", ">= 0"),
    ("stride", "contiguous"),
])
def test_bad_input_raises(fn, case, match):
    q, k, v, cu = make()
    ms = 6
    if case == "dtype":
        q, k, v = q.to(torch.int16), k.to(torch.int16), v.to(torch.int16)
    elif case == "mixed_dtype":
        k = k.half()
    elif case == "heads":
        q, k, v, cu = make(h=3, hkv=2)
    elif case == "cu_dtype":
        cu = cu.long()
    elif case == "cu_monotonic":
        cu = torch.tensor([0, 7, 4, 10], dtype=torch.int32)
    elif case == "cu_last":
        cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    elif case == "cu_start":
        cu = torch.tensor([1, 4, 10], dtype=torch.int32)
    elif case == "head_dim_small":
        q, k, v, cu = make(d=16)
    elif case == "head_dim_big":
        q, k, v, cu = make(d=264)
    elif case == "head_dim_mismatch":
        k, v = k[..., :32], v[..., :32]
    elif case == "rank":
        q = q.reshape(1, *q.shape)
    elif case == "tokens":
        k, v = k[:8], v[:8]
    elif case == "kv_shape":
        v = torch.randn(10, 1, 64).to(torch.bfloat16)
    elif case == "max_seqlen":
        ms = 6.5
    elif case == "max_seqlen_small":
        ms = 3
    elif case == "cu_rank":
        cu = cu.reshape(1, -1)
    elif case == "cu_strided":
        cu = torch.tensor([0, 9, 4, 9, 10], dtype=torch.int32)[::2]
    elif case == "max_seqlen_negative":
        ms = -1
    elif case == "stride":
        q = torch.randn(10, 2, 128).to(torch.bfloat16)[..., ::2]
    with pytest.raises(ValueError, match=match):
        fn(q, k, v, cu, ms)


def test_device_cu_checks_need_debug_flag(monkeypatch):
    from vit_backend_plugin.kernels._validate import check_inputs, debug_checks_enabled

    monkeypatch.setenv("VIT_KERNELS_DEBUG", "1")
    assert debug_checks_enabled()
    monkeypatch.setenv("VIT_KERNELS_DEBUG", "0")
    assert not debug_checks_enabled()
    q, k, v, cu = make()
    cu2, ms = check_inputs(q, k, v, cu, torch.tensor(6))  # 0-d tensor max_seqlen is accepted
    assert ms == 6 and cu2.dtype == torch.int32
    assert check_inputs(q, k, v, cu, 0)[1] == 6  # 0 = not computed: derived from cu_seqlens


def test_cudnn_rejects_fp32_and_odd_head_dim():
    q, k, v, cu = make(dtype=torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        sdpa_cudnn_attention(q, k, v, cu, 6)
    q, k, v, cu = make(d=36)
    with pytest.raises(ValueError, match="multiple of 8"):
        sdpa_cudnn_attention(q, k, v, cu, 6)


def test_the_catalog_is_the_one_registry_of_plugin_backends():
    # Every plugin backend the catalog lists loads from its impl; our kernels are what they say.
    assert PLUGIN_BACKENDS == ("FLASH_ATTN_UPSTREAM", "VIT_TRITON", "VIT_AUTO", "TORCH_SDPA_CUDNN", "XFORMERS")
    assert load_kernel("VIT_TRITON") is vit_attention
    assert load_kernel("TORCH_SDPA_CUDNN") is sdpa_cudnn_attention
    for name in PLUGIN_BACKENDS:  # third-party ones import their package only when called
        assert callable(load_kernel(name))
    with pytest.raises(KeyError, match="not a plugin ViT attention backend"):
        load_kernel("FLASH_ATTN")


def test_import_does_not_init_cuda():
    import subprocess
    import sys

    code = ("import torch, vit_backend_plugin.kernels as k, vit_backend_plugin.tools.bench_kernels as b; "
            "print(torch.cuda.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().endswith("False"), out.stderr[-2000:]


def test_vit_auto_policy_picks_per_shape_from_rows():
    from vit_backend_plugin.kernels.auto import DEFAULT, choose

    def row(lo, hi, eq, triton, cudnn, ok=True):
        return {"seq_len": [lo, hi], "equal_lengths": eq, "numerics_ok": {"VIT_TRITON": ok, "TORCH_SDPA_CUDNN": True},
                "tflops": {"VIT_TRITON": triton, "TORCH_SDPA_CUDNN": cudnn, "TORCH_SDPA": 999}}

    rows = [row(129, 1024, True, 340, 372), row(1025, 4096, True, 397, 390),
            row(1, 4096, False, 348, 200), row(4097, 10**6, True, 404, 387, ok=False)]
    assert choose(rows, True, 1024) == "TORCH_SDPA_CUDNN"   # cuDNN faster there
    assert choose(rows, True, 2048) == "VIT_TRITON"
    assert choose(rows, False, 1024) == "VIT_TRITON"        # mixed lengths: the mixed row decides
    assert choose(rows, True, 16384) == "TORCH_SDPA_CUDNN"  # ours failed numerics there
    assert choose(rows, True, 64) == DEFAULT                 # no row: our kernel
    assert choose([], False, 64) == DEFAULT                  # TORCH_SDPA is never an answer
