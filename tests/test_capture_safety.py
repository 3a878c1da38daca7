"""The plugin's ViT attention op under vLLM's encoder CUDA graphs (cudagraph_mm_encoder).

There is no GPU here, so a capture is SIMULATED by fault injection: ``torch.cuda.is_initialized``
and ``torch.cuda.is_current_stream_capturing`` are monkeypatched to return True (the plugin asks
exactly these two), and uninitialised memory is simulated by a ``torch.empty`` that returns NaNs.
Everything else is real: vLLM 0.32's MMEncoderAttention on its CPU platform, our Triton kernel in
Triton's interpreter, the plugin's op and its run-time fallback. What a real capture adds (the
CUDA graph itself, replays) is not exercised here.

Asserted: while capturing, the op's rows past cu_seqlens[-1] (padding to a token budget) are
exactly 0 (VIT_TRITON, VIT_AUTO, and a backend allocating its own output); outside capture no
fill happens; every plugin path that would read device data on the host raises CaptureSyncError
before the read; through the layer an automatic choice then falls back to stock with one warning
while an explicit choice raises PluginBackendError.
"""

import sys
import types

import pytest
import torch

pytest.importorskip("vllm")

from _subproc import CAPTURE_PLUGIN_LOG, run_snippet  # noqa: E402

from vit_backend_plugin.kernels import (  # noqa: E402
    _validate,
    auto,
    capture,  # noqa: E402
    third_party,  # noqa: E402
)
from vit_backend_plugin.kernels.capture import CaptureSyncError  # noqa: E402
from vit_backend_plugin.kernels.sdpa_cudnn import sdpa_cudnn_attention, sdpa_varlen  # noqa: E402

# ------------------------------------------------------------------ through the real vLLM layer

PRE = CAPTURE_PLUGIN_LOG + """
import math
import torch
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
from vit_backend_plugin.vllm_glue import mm_encoder
from vit_backend_plugin.vllm_glue.mm_encoder import PluginBackendError

# Fault injection 1: uninitialised memory holds NaNs (what a replay can find in padding rows).
real_empty, real_fill = torch.empty, torch.Tensor.fill_
def poisoned_empty(*a, **kw):
    t = real_empty(*a, **kw)
    if t.is_floating_point():
        real_fill(t, float("nan"))
    return t
torch.empty = poisoned_empty

# A spy on every way to zero-fill a tensor (counts, then calls the real one).
fills = []
def spy(owner, name):
    real = getattr(owner, name)
    def counted(*a, **kw):
        fills.append(name)
        return real(*a, **kw)
    setattr(owner, name, counted)
for owner, name in ((torch, "zeros"), (torch, "zeros_like"), (torch.Tensor, "zero_"),
                    (torch.Tensor, "fill_"), (torch.Tensor, "masked_fill_"), (torch.Tensor, "new_zeros")):
    spy(owner, name)

# Fault injection 2: a CUDA graph capture is running (the two calls the plugin asks).
real_init, real_capturing = torch.cuda.is_initialized, torch.cuda.is_current_stream_capturing
class capturing:
    def __enter__(self):
        torch.cuda.is_initialized = lambda: True
        torch.cuda.is_current_stream_capturing = lambda: True
    def __exit__(self, *exc):
        torch.cuda.is_initialized, torch.cuda.is_current_stream_capturing = real_init, real_capturing

torch.manual_seed(0)
HEAD = 72
def qkv(tokens):
    return torch.randn(3, 1, tokens, 2, HEAD).unbind(0)
def reference(q, k, v, cu):
    b = cu.tolist()
    return torch.cat([torch.nn.functional.scaled_dot_product_attention(
        *(x[:, a:z].transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
        for a, z in zip(b[:-1], b[1:])], dim=1)
def max_seqlen(n):
    return torch.tensor(n, dtype=torch.int32)
# vLLM's capture layout: real sequences, zero-length padding sequences (cu repeats its last
# value), tokens padded to the budget, max_seqlen the budget (an upper bound).
PAD_CU = torch.tensor([0, 5, 12, 12], dtype=torch.int32)
PAD_TOKENS = 24
def warnings():
    return [m for l, m in records if l == "WARNING"]
"""


def test_padding_rows_are_zero_while_capturing_and_never_filled_outside():
    """Automatic choice (VIT_TRITON / VIT_AUTO set by hand, as the resolver does on a GPU)."""
    proc, res = run_snippet(PRE + """
out = {}
for name in ("VIT_TRITON", "VIT_AUTO"):
    with set_current_vllm_config(VllmConfig()):
        layer = MMEncoderAttention(num_heads=2, head_size=HEAD)
    layer.attn_backend = getattr(E, name)
    # Outside capture, exact inputs: no fill of any kind, correct output.
    q, k, v = qkv(12)
    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    fills.clear()
    o = layer.forward_cuda(q, k, v, cu, max_seqlen(7))
    eager_fills = list(fills)
    eager_err = float((o - reference(q, k, v, cu)).abs().max())
    # While capturing, padded inputs: padding rows exactly 0, real rows correct.
    q, k, v = qkv(PAD_TOKENS)
    with capturing():
        o = layer.forward_cuda(q, k, v, PAD_CU, max_seqlen(PAD_TOKENS))
    out[name] = {"eager_fills": eager_fills, "eager_err": eager_err,
                 "pad_rows_all_zero": bool((o[:, 12:] == 0).all()),
                 "pad_rows_nan": bool(o[:, 12:].isnan().any()),
                 "real_err": float((o[:, :12] - reference(q, k, v, PAD_CU)).abs().max()),
                 "backend": layer.attn_backend.name}
print("RESULT " + json.dumps({"out": out, "warnings": warnings()}))
""", env={"TRITON_INTERPRET": "1", "VIT_ATTN_BACKEND": None})
    assert res is not None, proc.stderr[-3000:]
    assert res["warnings"] == []
    for name, r in res["out"].items():
        assert r["backend"] == name  # no fallback: both are capture-safe here
        assert r["eager_fills"] == [], (name, r["eager_fills"])  # outside capture: no extra fill
        assert r["eager_err"] < 1e-4
        assert r["pad_rows_all_zero"] and not r["pad_rows_nan"], name
        assert r["real_err"] < 1e-4, name


def test_explicit_choice_capturing_padding_zero_and_sync_path_raises_plugin_error():
    """VIT_ATTN_BACKEND=VIT_TRITON: vLLM's CPU dispatch (forward_cpu) runs our kernel."""
    proc, res = run_snippet(PRE + """
with set_current_vllm_config(VllmConfig()):
    layer = MMEncoderAttention(num_heads=2, head_size=HEAD)
q, k, v = qkv(PAD_TOKENS)
with capturing():
    o = layer(q, k, v, cu_seqlens=PAD_CU, max_seqlen=max_seqlen(PAD_TOKENS))
zero = bool((o[:, 12:] == 0).all())
# Outside capture, the same padded input is still refused (nothing changes there).
try:
    layer(q, k, v, cu_seqlens=PAD_CU, max_seqlen=max_seqlen(PAD_TOKENS))
    eager_err = None
except PluginBackendError as e:
    eager_err = str(e)
# While capturing, no max_seqlen: the op would read it from cu_seqlens -> refused, explicit: raise.
reads = mm_encoder.LENGTH_READS
q, k, v = qkv(12)
with capturing():
    try:
        layer(q, k, v, cu_seqlens=torch.tensor([0, 5, 12], dtype=torch.int32))
        err = None
    except PluginBackendError as e:
        err = str(e)
print("RESULT " + json.dumps({"zero": zero, "eager_err": eager_err, "err": err,
      "reads": mm_encoder.LENGTH_READS - reads, "backend": layer.attn_backend.name,
      "source": layer.vit_backend_source, "warnings": warnings()}))
""", env={"TRITON_INTERPRET": "1", "VIT_ATTN_BACKEND": "VIT_TRITON"})
    assert res is not None, proc.stderr[-3000:]
    assert res["source"] == "VIT_ATTN_BACKEND"
    assert res["zero"]
    assert res["eager_err"] is not None and "cu_seqlens[-1] = 12 but q has 24 tokens" in res["eager_err"]
    assert res["err"] is not None and res["err"].startswith(
        "ViT attention backend VIT_TRITON (VIT_ATTN_BACKEND) failed at run time: CaptureSyncError: "
        "VIT_TRITON cannot run inside a CUDA graph capture: it would read max_seqlen from cu_seqlens")
    assert res["reads"] == 0  # raised before the read
    assert res["backend"] == "VIT_TRITON" and res["warnings"] == []


def test_automatic_choice_capturing_sync_path_falls_back_to_stock_with_one_warning():
    proc, res = run_snippet(PRE + """
with set_current_vllm_config(VllmConfig()):
    layers = [MMEncoderAttention(num_heads=2, head_size=HEAD) for _ in range(2)]
for layer in layers:
    layer.attn_backend = E.VIT_TRITON
q, k, v = qkv(12)
cu = torch.tensor([0, 5, 12], dtype=torch.int32)
ref = reference(q, k, v, cu)
reads = mm_encoder.LENGTH_READS
errs = []
with capturing():
    for layer in layers:
        for _ in range(2):
            errs.append(float((layer.forward_cuda(q, k, v, cu, None) - ref).abs().max()))
print("RESULT " + json.dumps({"errs": errs, "names": [l.attn_backend.name for l in layers],
      "reads": mm_encoder.LENGTH_READS - reads, "warnings": warnings()}))
""", env={"TRITON_INTERPRET": "1", "VIT_ATTN_BACKEND": None})
    assert res is not None, proc.stderr[-3000:]
    assert res["reads"] == 0
    assert res["names"] == ["TORCH_SDPA", "TORCH_SDPA"]  # vLLM's own choice on CPU
    assert max(res["errs"]) < 1e-5  # every call answered, by stock
    assert len(res["warnings"]) == 1, res["warnings"]
    w = res["warnings"][0]
    assert "VIT_TRITON failed at run time (CaptureSyncError: VIT_TRITON cannot run inside a CUDA " \
           "graph capture: it would read max_seqlen from cu_seqlens" in w
    assert w.endswith("now uses vLLM's own choice TORCH_SDPA")


# ------------------------------------------------------------------ guards, in process


@pytest.fixture
def capturing(monkeypatch):
    """Fault injection: a CUDA graph capture is running."""
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)


@pytest.fixture
def host_reads(monkeypatch):
    """Spy: every .item() / .tolist() / int() of a tensor (records, then does the real read)."""
    seen = []
    for name in ("item", "tolist", "__int__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, _name=name, **kw):
            seen.append(_name)
            return _real(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, counted)
    return seen


def test_stream_capturing_never_calls_into_cuda_without_it(monkeypatch):
    assert capture.stream_capturing() is False  # real torch here: CUDA never initialised

    def boom():
        raise AssertionError("called into CUDA")
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", boom)
    assert capture.stream_capturing() is False


def _meta_inputs(tokens=12, heads=2, head=64):
    """Device tensors without a device: meta tensors are not on the host, and reading one raises."""
    q, k, v = (torch.empty(tokens, heads, head, device="meta") for _ in range(3))
    return q, k, v, torch.empty(3, dtype=torch.int32, device="meta")


def test_check_inputs_max_seqlen_zero_on_device_raises_before_reading(capturing, host_reads):
    q, k, v, cu = _meta_inputs()
    with pytest.raises(CaptureSyncError, match="VIT_TRITON cannot run inside a CUDA graph capture: "
                       r"it would derive max_seqlen from cu_seqlens \(max_seqlen 0\)"):
        _validate.check_inputs(q, k, v, cu, 0, backend="VIT_TRITON")
    assert host_reads == []


def test_check_inputs_other_device_reads_raise_before_reading(capturing, host_reads, monkeypatch):
    q, k, v, cu = _meta_inputs()
    with pytest.raises(CaptureSyncError, match="read max_seqlen from a device tensor"):
        _validate.check_inputs(q, k, v, cu, torch.tensor(6, device="meta"))
    monkeypatch.setenv("VIT_KERNELS_DEBUG", "1")
    with pytest.raises(CaptureSyncError, match=r"check cu_seqlens on the host \(VIT_KERNELS_DEBUG=1\)"):
        _validate.check_inputs(q, k, v, cu, 6)
    monkeypatch.delenv("VIT_KERNELS_DEBUG")
    assert host_reads == []
    host_cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    with pytest.raises(CaptureSyncError, match="copy a host cu_seqlens to the device"):
        _validate.check_inputs(q, k, v, host_cu, 7)
    assert _validate.check_inputs(q, k, v, cu, 7)[1] == 7  # the normal capture path reads nothing
    assert _validate.check_inputs(q, k, v, cu, torch.tensor(7))[1] == 7  # a host max_seqlen: fine


def test_check_inputs_outside_capture_unchanged():
    q, k, v = torch.randn(3, 12, 2, 64).unbind(0)
    assert _validate.check_inputs(q, k, v, torch.tensor([0, 5, 12], dtype=torch.int32), 0)[1] == 7
    with pytest.raises(ValueError, match="cu_seqlens\\[-1\\] = 12 but q has 24 tokens"):
        q, k, v = torch.randn(3, 24, 2, 64).unbind(0)
        _validate.check_inputs(q, k, v, torch.tensor([0, 5, 12], dtype=torch.int32), 7)


def test_sdpa_mixed_lengths_raise_before_tolist(capturing, host_reads):
    q, k, v = torch.randn(3, 12, 2, 64).unbind(0)
    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    with pytest.raises(CaptureSyncError, match=r"TORCH_SDPA_CUDNN cannot run .* mixed sequence lengths"):
        sdpa_varlen(q, k, v, cu, 7, backend="TORCH_SDPA_CUDNN")
    assert host_reads == []


def test_sdpa_mixed_lengths_outside_capture_still_read_lengths(host_reads):
    q, k, v = torch.randn(3, 12, 2, 64).unbind(0)
    out = sdpa_varlen(q, k, v, torch.tensor([0, 5, 12], dtype=torch.int32), 7)
    assert "tolist" in host_reads and out.shape == q.shape


def test_sdpa_cudnn_refuses_vllm_capture_even_for_equal_lengths(host_reads):
    # Padded to a budget, 1 x 24 tokens *looks* like one equal-length sequence of 24 while the
    # real one has 12: the batched shortcut would attend over the padding.
    q, k, v = torch.randn(3, 24, 2, 64, dtype=torch.float16).unbind(0)
    with pytest.raises(CaptureSyncError, match="TORCH_SDPA_CUDNN cannot run inside vLLM's encoder"):
        sdpa_cudnn_attention(q, k, v, torch.tensor([0, 12], dtype=torch.int32), 24, capturing=True)
    assert host_reads == []


def test_xformers_raises_before_it_reads_lengths(capturing, host_reads):
    q, k, v = torch.randn(3, 12, 2, 64).unbind(0)
    with pytest.raises(CaptureSyncError, match="XFORMERS cannot run"):
        third_party.xformers_attention(q, k, v, torch.tensor([0, 5, 12], dtype=torch.int32), 7, None)
    assert host_reads == []


def test_op_max_len_reads_raise_before_reading_even_on_a_cache_hit(host_reads):
    from vit_backend_plugin.vllm_glue import mm_encoder as mm

    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    assert mm._max_len_from_lengths(cu, cu) == 7  # outside capture: read once, cached
    host_reads.clear()
    reads = mm.LENGTH_READS
    with pytest.raises(CaptureSyncError, match="read max_seqlen from cu_seqlens"):
        mm._max_len_from_lengths(cu, cu, "VIT_AUTO", capturing=True)
    assert host_reads == [] and mm.LENGTH_READS == reads
    with pytest.raises(CaptureSyncError, match="VIT_AUTO .* read max_seqlen from a device tensor"):
        mm._given_max_len(torch.empty((), dtype=torch.int32, device="meta"), "VIT_AUTO", True)
    assert host_reads == []
    assert mm._given_max_len(torch.tensor(9, dtype=torch.int32), "VIT_AUTO", True) == 9  # host: fine


def test_op_zeroes_padding_rows_of_a_callee_allocated_output(capturing, monkeypatch):
    """FLASH_ATTN_UPSTREAM allocates its own output; a fake flash_attn (fault injection: it
    returns NaN everywhere, as unwritten rows could be) stands in for the package."""
    from vit_backend_plugin.vllm_glue import mm_encoder as mm

    fake = types.ModuleType("flash_attn")
    fake.flash_attn_varlen_func = lambda q, *a, **kw: torch.full_like(q, float("nan"))
    monkeypatch.setitem(sys.modules, "flash_attn", fake)
    q, k, v = torch.randn(3, 1, 24, 2, 64).unbind(0)
    cu = torch.tensor([0, 5, 12, 12], dtype=torch.int32)
    out = mm._vit_plugin_attention(q, k, v, "FLASH_ATTN_UPSTREAM", 0.125, cu,
                                   torch.tensor(24, dtype=torch.int32))
    assert (out[:, 12:] == 0).all()  # padding rows: zeroed by the op
    assert out[:, :12].isnan().all()  # the callee's rows: untouched


def test_op_outside_capture_leaves_a_callee_output_alone(monkeypatch):
    from vit_backend_plugin.vllm_glue import mm_encoder as mm

    fake = types.ModuleType("flash_attn")
    fake.flash_attn_varlen_func = lambda q, *a, **kw: torch.full_like(q, float("nan"))
    monkeypatch.setitem(sys.modules, "flash_attn", fake)
    q, k, v = torch.randn(3, 1, 24, 2, 64).unbind(0)
    out = mm._vit_plugin_attention(q, k, v, "FLASH_ATTN_UPSTREAM", 0.125,
                                   torch.tensor([0, 5, 12, 12], dtype=torch.int32),
                                   torch.tensor(24, dtype=torch.int32))
    assert out.isnan().all()  # no fill outside capture


# ------------------------------------------------------------------ VIT_AUTO under capture

ROWS = [{"equal_lengths": eq, "seq_len": [1, 4096], "num_seqs": 4,
         "tflops": {"FLASH_ATTN": 100.0, "TORCH_SDPA_CUDNN": 300.0, "VIT_TRITON": 50.0},
         "numerics_ok": {"FLASH_ATTN": True, "TORCH_SDPA_CUDNN": True, "VIT_TRITON": True}}
        for eq in (True, False)]


@pytest.fixture
def gpu_table(monkeypatch):
    """A device where every choice runs and cuDNN wins (the table and the availability are data;
    the policy under test is real)."""
    monkeypatch.setattr(auto, "_available", lambda is_cuda, dtype, head: auto.CHOICES)
    monkeypatch.setattr(auto, "table_rows", lambda cap, dtype, head: tuple(ROWS))
    decide = auto.decide
    decide.cache_clear()
    yield
    decide.cache_clear()


def test_auto_never_picks_cudnn_while_capturing(gpu_table):
    args = ((9, 0), "bfloat16", 64, True, 1024, 4, True)
    assert auto.decide(*args) == "TORCH_SDPA_CUDNN"
    assert auto.decide(*args, True) == "FLASH_ATTN"


def test_auto_passes_out_to_flash_attention_and_drops_the_equal_shortcut(gpu_table, monkeypatch):
    """vLLM's FlashAttention is not in a CPU build: a recorder stands in for it."""
    calls, decisions = [], []
    monkeypatch.setattr(auto, "_vllm_flash_attn", lambda: (lambda *a, **kw: calls.append(kw), None))
    monkeypatch.setattr(auto, "_fa_version", lambda head: 3)
    real_decide = auto.decide
    monkeypatch.setattr(auto, "decide", lambda *a: decisions.append(a) or real_decide(*a))
    q, k, v = torch.randn(3, 24, 2, 64, dtype=torch.bfloat16).unbind(0)
    out = torch.zeros_like(q)
    # 1 x 24 tokens with max_seqlen 24 looks equal-length; under capture it is padding.
    auto.vit_auto_attention(q, k, v, torch.tensor([0, 12], dtype=torch.int32), 24, out=out, capturing=True)
    # equal_lengths False, capturing True, and no eager cost: a replay costs GPU time only
    assert decisions[-1][3] is False and decisions[-1][7] is True and decisions[-1][8] is None
    assert calls and calls[-1]["out"] is out


def test_a_benchmark_capture_of_exact_inputs_runs_the_op_as_in_eager(capturing, monkeypatch):
    """bench-kernels times calls as CUDA-graph replays of the very inputs captured: inside
    ``exact_inputs()`` the op behaves as outside a capture (no padding fill, cuDNN allowed);
    outside the block, the same capture is vLLM's kind again."""
    from vit_backend_plugin.vllm_glue import mm_encoder as mm

    fake = types.ModuleType("flash_attn")
    fake.flash_attn_varlen_func = lambda q, *a, **kw: torch.full_like(q, float("nan"))
    monkeypatch.setitem(sys.modules, "flash_attn", fake)
    q, k, v = torch.randn(3, 1, 24, 2, 64).unbind(0)
    args = ("FLASH_ATTN_UPSTREAM", 0.125, torch.tensor([0, 5, 12, 12], dtype=torch.int32),
            torch.tensor(24, dtype=torch.int32))
    with capture.exact_inputs():
        assert not capture.stream_capturing()
        with capture.exact_inputs():  # nests
            pass
        assert not capture.stream_capturing()
        assert mm._vit_plugin_attention(q, k, v, *args).isnan().all()  # no fill: as in eager
    assert capture.stream_capturing()
    assert (mm._vit_plugin_attention(q, k, v, *args)[:, 12:] == 0).all()  # vLLM's capture again


def test_vit_auto_drops_the_host_cost_only_in_a_benchmarks_exact_capture(capturing):
    """A graph replay costs the host nothing per call, so VIT_AUTO weighs GPU time alone there;
    vLLM's own captures come with ``capturing=True``, so outside exact_inputs() it asks nothing."""
    q = torch.empty(64 * 197, 12, 64)
    assert auto.eager_call_flops(q, 197) == 4.0 * 64 * 197 * 197 * 64 * 12
    with capture.exact_inputs():
        assert auto.eager_call_flops(q, 197) is None
