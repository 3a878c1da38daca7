"""The host side of VIT_TRITON / VIT_AUTO and the plugin's op, made cheap per call: memoized
launch plans must launch exactly what a fresh computation launches, cached validation must
not hide a bad input, and the op path's shortcuts must not change what runs.

Tensors live on the meta device (metadata only, no memory: even a layout whose offsets pass
2**31) and the Triton kernels are replaced by recorders, so every launch is seen without a GPU."""

import itertools

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import vit_backend_plugin.kernels.triton_vit as tv  # noqa: E402
from vit_backend_plugin.kernels import _validate  # noqa: E402
from vit_backend_plugin.kernels.auto import vit_auto_attention  # noqa: E402
from vit_backend_plugin.kernels.triton_vit import vit_attention  # noqa: E402

META = "meta"


class Recorder:
    """Stands in for a @triton.jit kernel: `kernel[grid](*args, **kwargs)` is recorded."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            scalars = tuple("tensor" if isinstance(a, torch.Tensor) else a for a in args)
            self.log.append((self.name, tuple(grid), scalars, dict(kwargs)))
        return launch


@pytest.fixture
def launches(monkeypatch):
    log = []
    monkeypatch.setattr(tv, "_attn_fwd_main", Recorder("main", log))
    monkeypatch.setattr(tv, "_attn_fwd_packed", Recorder("packed", log))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("VIT_KERNELS_DEBUG", raising=False)
    tv._PLANS.clear()
    _validate._VALID_METADATA.clear()
    yield log
    tv._PLANS.clear()
    _validate._VALID_METADATA.clear()


def qkv(tokens, hq, hkv, d, dtype=torch.bfloat16, packed=False):
    """q, k, v on the meta device; packed: strided views of one [tokens, hq + 2 hkv, d] tensor."""
    if packed:
        buf = torch.empty(tokens, hq + 2 * hkv, d, dtype=dtype, device=META)
        return buf.split([hq, hkv, hkv], dim=1)
    return (torch.empty(tokens, h, d, dtype=dtype, device=META) for h in (hq, hkv, hkv))


def huge_stride_qkv(tokens, stride, d=32):
    """Views of a packed qkv whose token stride puts the last row at (tokens - 1) * stride."""
    buf = torch.empty((tokens - 1) * stride + 3 * d, dtype=torch.bfloat16, device=META)
    return buf.as_strided((tokens, 3, 1, d), (stride, d, d, 1)).unbind(1)


def cu_for(lens):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=META)


def cases():
    """(q, k, v, cu, max_seqlen, softmax_scale): head dims 32..256 (incl. 72/80/88), strided views,
    GQA, fp16/bf16/fp32, short and long max_seqlen (packed and main kernels), 64-bit offsets."""
    out = []
    for d in (32, 72, 80, 88, 128, 256):
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            for (hq, hkv), packed in itertools.product(((16, 16), (8, 2), (4, 1)), (False, True)):
                for lens, ms in (([64] * 4, 64), ([7, 64, 1, 50], 64), ([300, 5], 300), ([1000, 24], 4096)):
                    q, k, v = qkv(sum(lens), hq, hkv, d, dtype, packed)
                    out.append((q, k, v, cu_for(lens), ms, None if d != 80 else 0.05))
    for tokens in (32, 33):  # last row at 2**31 - 2**26 (32-bit math) and at exactly 2**31
        q, k, v = huge_stride_qkv(tokens, 2**26)
        out.append((q, k, v, cu_for([tokens]), tokens, None))
    return out


def fresh_launch(log, case, exact):
    """The launch with no plan cached: what the code computes for this input alone."""
    tv._PLANS.clear()
    _validate._VALID_METADATA.clear()
    q, k, v, cu, ms, scale = case
    vit_attention(q, k, v, cu, ms, scale, max_seqlen_exact=exact)
    return log[-1]


def test_memoized_plans_launch_what_fresh_plans_launch(launches):
    all_cases = cases()
    fresh = [fresh_launch(launches, c, exact) for c in all_cases for exact in (True, False)]
    tv._PLANS.clear()
    warm = []
    for _ in range(2):  # second round: every plan comes from the cache, interleaved shapes
        for c in all_cases:
            for exact in (True, False):
                q, k, v, cu, ms, scale = c
                vit_attention(q, k, v, cu, ms, scale, max_seqlen_exact=exact)
                warm.append(launches[-1])
    assert warm == fresh + fresh
    assert len(tv._PLANS) == len(fresh)  # one plan per distinct input, all reused in round two
    kernels = {launch[0] for launch in fresh}
    assert kernels == {"main", "packed"}
    assert [launch[3]["OFF64"] for launch in fresh[-4:]] == [False, False, True, True]


def test_plans_hold_the_expected_constexprs(launches):
    q, k, v = qkv(256, 16, 16, 80, packed=True)  # Qwen2.5-VL-like windows, views of packed qkv
    vit_attention(q, k, v, cu_for([64] * 4), 64, max_seqlen_exact=True)
    kw = launches[-1][3]
    assert (kw["HEAD_DIM"], kw["D0"], kw["D1"], kw["GROUP"]) == (80, 64, 16, 1)
    assert kw["STRIDE_ALIGN"] == 16 and not kw["OFF64"] and not kw["ROW_LOOP"]
    # token stride 48 * 80, head stride 80, divided by 16
    assert launches[-1][2][-8:] == (240, 5, 240, 5, 240, 5, 80, 5)
    q, k, v = qkv(40, 4, 2, 88, torch.float32)
    vit_attention(q, k, v, cu_for([40]), 40)
    kw = launches[-1][3]
    assert (kw["D0"], kw["D1"], kw["GROUP"], kw["STRIDE_ALIGN"], kw["IEEE"]) == (64, 32, 2, 8, True)


def test_a_cached_plan_is_not_reused_when_strides_change(launches):
    q, k, v = qkv(128, 2, 2, 72)  # contiguous: token stride 144, head stride 72
    cu = cu_for([64, 64])
    vit_attention(q, k, v, cu, 64)
    contiguous = launches[-1]
    pq, pk, pv = qkv(128, 2, 2, 72, packed=True)  # same shapes, token stride 432
    assert pq.shape == q.shape and pq.stride() != q.stride()
    vit_attention(pq, pk, pv, cu, 64)
    strided = launches[-1]
    assert strided[2] != contiguous[2]
    assert strided == fresh_launch(launches, (pq, pk, pv, cu, 64, None), False)
    # Only the token stride differs: 2**25 keeps offsets in 32 bits, 2**26 does not.
    small = huge_stride_qkv(33, 2**25)
    big = huge_stride_qkv(33, 2**26)
    assert small[0].shape == big[0].shape
    cu33 = cu_for([33])
    vit_attention(*small, cu33, 33)
    assert launches[-1][3]["OFF64"] is False
    vit_attention(*big, cu33, 33)
    assert launches[-1][3]["OFF64"] is True
    vit_attention(*small, cu33, 33)
    assert launches[-1][3]["OFF64"] is False


def test_a_new_config_table_or_an_explicit_config_is_not_served_from_the_cache(launches, monkeypatch):
    q, k, v = qkv(256, 16, 16, 80)
    cu = cu_for([64] * 4)
    vit_attention(q, k, v, cu, 64)
    before = launches[-1]
    table = tv.load_configs()
    changed = dict(table, rules=[dict(r, config=dict(r["config"], num_warps=2)) for r in table["rules"]])
    monkeypatch.setattr(tv, "load_configs", lambda: changed)
    vit_attention(q, k, v, cu, 64)
    assert before[3]["num_warps"] != 2 and launches[-1][3]["num_warps"] == 2
    cfg = {"kernel": "main", "BLOCK_M": 32, "BLOCK_N": 16, "num_warps": 8, "num_stages": 1}
    vit_attention(q, k, v, cu, 64, config=cfg)
    assert launches[-1][0] == "main" and launches[-1][3]["BLOCK_M"] == 32
    assert launches[-1][3]["num_warps"] == 8


def test_interpreter_mode_is_part_of_the_key(launches, monkeypatch):
    q, k, v = qkv(64, 2, 2, 64)
    cu = cu_for([64])
    vit_attention(q, k, v, cu, 64)
    assert launches[-1][3]["UPCAST"] is False
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    vit_attention(q, k, v, cu, 64)
    assert launches[-1][3]["UPCAST"] is True and launches[-1][3]["CACHE_KV"] == ""


def test_plan_caches_stay_bounded(launches, monkeypatch):
    monkeypatch.setattr(tv, "_PLANS_CAP", 4)
    monkeypatch.setattr(_validate, "_VALID_METADATA_CAP", 3)
    cu = cu_for([64])
    for d in (32, 40, 48, 56, 64, 72, 80):
        q, k, v = qkv(64, 2, 2, d)
        vit_attention(q, k, v, cu, 64)
        assert launches[-1][3]["HEAD_DIM"] == d
    assert len(tv._PLANS) <= 4 and len(_validate._VALID_METADATA) <= 3


BAD = {  # name -> (change to a good (q, k, v, cu, max_seqlen), expected message fragment)
    "dtype": (lambda q, k, v, cu, ms: (q.to(torch.int16), k.to(torch.int16), v.to(torch.int16), cu, ms), "dtype"),
    "mixed_dtype": (lambda q, k, v, cu, ms: (q, k.half(), v, cu, ms), "dtypes differ"),
    "heads": (lambda q, k, v, cu, ms: (torch.empty(10, 3, 64, dtype=q.dtype, device=META), k, v, cu, ms),
              "num_kv_heads"),
    "head_dim_mismatch": (lambda q, k, v, cu, ms: (q, k[..., :32], v[..., :32], cu, ms), "head_dim"),
    "rank": (lambda q, k, v, cu, ms: (q[None], k, v, cu, ms), "total_tokens, num_heads, head_dim"),
    "tokens": (lambda q, k, v, cu, ms: (q, k[:8], v[:8], cu, ms), "tokens"),
    "kv_shape": (lambda q, k, v, cu, ms: (q, k, v[:, :1], cu, ms), "shapes differ"),
    "head_stride": (lambda q, k, v, cu, ms: (q, k, torch.empty(10, 2, 128, dtype=v.dtype, device=META)[..., ::2],
                                             cu, ms), "contiguous in head_dim"),
    "device": (lambda q, k, v, cu, ms: (q, torch.empty(k.shape, dtype=k.dtype), v, cu, ms), "is on cpu"),
    "cu_dtype": (lambda q, k, v, cu, ms: (q, k, v, cu.long(), ms), "int32"),
    "cu_rank": (lambda q, k, v, cu, ms: (q, k, v, cu.reshape(1, -1), ms), "1-D"),
    "cu_strided": (lambda q, k, v, cu, ms: (q, k, v, torch.empty(6, dtype=torch.int32, device=META)[::2], ms),
                   "contiguous"),
    "max_seqlen": (lambda q, k, v, cu, ms: (q, k, v, cu, 6.5), "must be an int"),
    "max_seqlen_negative": (lambda q, k, v, cu, ms: (q, k, v, cu, -1), ">= 0"),
}


def _message(fn, args):
    with pytest.raises(ValueError) as e:
        fn(*args)
    return str(e.value)


@pytest.mark.parametrize("fn", [vit_attention, vit_auto_attention], ids=["VIT_TRITON", "VIT_AUTO"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_the_same_error_right_after_a_cached_good_call(launches, fn, case):
    q, k, v = qkv(10, 2, 2, 64)
    cu = cu_for([4, 6])
    change, fragment = BAD[case]
    bad = change(q, k, v, cu, 6)
    _validate._VALID_METADATA.clear()
    cold = _message(fn, bad)  # nothing cached: the full checks
    assert fragment in cold
    for _ in range(2):
        fn(q, k, v, cu, 6)  # good call: its metadata (and plan) cached
    assert _validate._VALID_METADATA
    assert _message(fn, bad) == cold
    fn(q, k, v, cu, 6)  # the good input still runs after the bad one
    assert launches[-1][3]["HEAD_DIM"] == 64


# ---------------------------------------------------------------- the op path (mm_encoder)


def test_op_helpers_keep_reshape_and_conversion_semantics():
    pytest.importorskip("vllm")
    from vit_backend_plugin.vllm_glue import mm_encoder as mm

    x = torch.randn(2, 5, 3, 8)
    y = mm._tokens_first(x)
    assert y.shape == (10, 3, 8) and y.data_ptr() == x.data_ptr() and y.stride() == x.reshape(10, 3, 8).stride()
    packed = torch.randn(1, 5, 3, 2, 8).unbind(2)[1]  # a strided view: still a view
    assert mm._tokens_first(packed).stride() == packed.reshape(-1, 2, 8).stride()
    assert mm._tokens_first(packed).data_ptr() == packed.data_ptr()
    t = x.transpose(0, 1)  # no view exists: copied, like reshape
    assert torch.equal(mm._tokens_first(t), t.reshape(-1, 3, 8))
    assert mm._given_max_len(None) == 0 and mm._given_max_len(torch.tensor([3, 4])) == 0
    assert mm._given_max_len(torch.tensor(7)) == 7
    a, b = mm._max_seqlen_tensor(64), mm._max_seqlen_tensor(64)
    assert a is b and a.dtype == torch.int32 and int(a) == 64 and not a.is_inference()
    with torch.inference_mode():
        c = mm._max_seqlen_tensor(65)
    assert not c.is_inference() and int(c) == 65


_LAYER = """
import json, torch
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
import vit_backend_plugin.vllm_glue.mm_encoder as mm
with set_current_vllm_config(VllmConfig()):
    layer = MMEncoderAttention(num_heads=2, head_size=72)
layer.attn_backend = E.VIT_TRITON
torch.manual_seed(0)
qkv = torch.randn(1, 40, 3, 2 * 72)
q, k, v = qkv.unbind(2)
def ref(bounds):
    return torch.cat([torch.nn.functional.scaled_dot_product_attention(
        *(x[:, a:b].view(1, b - a, 2, 72).transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
        for a, b in bounds], dim=1).reshape(1, 40, 144)
"""


def test_plugin_op_with_int_max_seqlen_and_int64_cu_seqlens_in_a_real_layer():
    pytest.importorskip("vllm")
    from _subproc import run_snippet

    proc, res = run_snippet(_LAYER + """
r = ref(((0, 7), (7, 40)))
cu32 = torch.tensor([0, 7, 40], dtype=torch.int32)
errs = {}
with torch.inference_mode():
    errs["int"] = [float((layer.forward_cuda(q, k, v, cu32, 33) - r).abs().max()) for _ in range(2)]
    errs["tensor"] = float((layer.forward_cuda(q, k, v, cu32, torch.tensor(33)) - r).abs().max())
    errs["int64_cu"] = float((layer.forward_cuda(q, k, v, cu32.long(), 33) - r).abs().max())
    errs["no_max"] = float((layer.forward_cuda(q, k, v, cu32, None) - r).abs().max())
    errs["no_cu"] = float((layer.forward_cuda(q, k, v, None, None) - ref(((0, 40),))).abs().max())
print("RESULT " + json.dumps({"errs": errs, "cached": sorted(mm._MAX_SEQLEN_TENSORS),
                              "name": layer.attn_backend.name}))
""", env={"TRITON_INTERPRET": "1"})
    assert res is not None, proc.stderr[-3000:]
    assert res["name"] == "VIT_TRITON"  # no run-time fallback happened
    errs = res["errs"]
    assert max(errs["int"]) < 1e-4 and errs["tensor"] < 1e-4 and errs["int64_cu"] < 1e-4
    assert errs["no_max"] < 1e-4 and errs["no_cu"] < 1e-4
    assert res["cached"] == [33]


def test_int_max_seqlen_traces_into_one_graph_without_the_cache():
    pytest.importorskip("vllm")
    from _subproc import run_snippet

    proc, res = run_snippet(_LAYER + """
cu = torch.tensor([0, 7, 40], dtype=torch.int32)
def f(q, k, v, cu):
    return layer.forward_cuda(q, k, v, cu, 33)
ex = torch._dynamo.explain(f)(q, k, v, cu)
torch._dynamo.reset()
y = torch.compile(f, fullgraph=True, backend="eager")(q, k, v, cu)
print("RESULT " + json.dumps({"breaks": ex.graph_break_count, "graphs": ex.graph_count,
      "err": float((y - ref(((0, 7), (7, 40)))).abs().max()), "cached": len(mm._MAX_SEQLEN_TENSORS)}))
""", env={"TRITON_INTERPRET": "1"})
    assert res is not None, proc.stderr[-3000:]
    assert res["breaks"] == 0 and res["graphs"] == 1
    assert res["err"] < 1e-4
    assert res["cached"] == 0  # traced code made its own constant, the eager cache stayed empty
