"""FLASHINFER_HOST against real vLLM 0.32 (+ flashinfer-python, imported only) on CPU.

The builder is vLLM's FlashInferMetadataBuilder subclass constructed from a real VllmConfig
(a tiny local Llama config, no weights) and a real FullAttentionSpec / FlashInferImpl. The
one stand-in is at the FlashInfer boundary: the prefill/decode wrappers are recorders of
what the builder hands to FlashInfer's ``plan()`` (flashinfer's wrappers need CUDA). What
ours hands over is compared with what vLLM's stock builder hands over on the same inputs.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vllm")
pytest.importorskip("flashinfer")

import torch  # noqa: E402
from _subproc import run_snippet  # noqa: E402

from vit_backend_plugin import flashinfer_host  # noqa: E402
from vit_backend_plugin.flashinfer_host import planning  # noqa: E402

BLOCK = 16
HEADS, KV_HEADS, HEAD_DIM = 4, 2, 64
MAX_SEQS, MAX_LEN = 64, 1024
TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HEADS * HEAD_DIM,
    "intermediate_size": 512, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
    "head_dim": HEAD_DIM, "num_hidden_layers": 2, "vocab_size": 1000,
    "max_position_embeddings": 4096, "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5}


def test_registered_after_load_general_plugins():
    proc, res = run_snippet("""
import json
from pathlib import Path
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.v1.attention.backends.registry import AttentionBackendEnum
from vllm.v1.attention.backends.flashinfer import FlashInferBackend, FlashInferMetadataBuilder
from vllm.config.attention import AttentionConfig
from vit_backend_plugin.plugin import status
m = AttentionBackendEnum["FLASHINFER_HOST"]
cls = m.get_class()
import vit_backend_plugin.flashinfer_host as fh
again = fh.register()
print("RESULT " + json.dumps({
  "status": status(), "path": m.get_path(), "name": cls.get_name(),
  "is_fi": issubclass(cls, FlashInferBackend),
  "builder_sub": issubclass(cls.get_builder_cls(), FlashInferMetadataBuilder),
  "stock_builder": cls.get_builder_cls() is FlashInferMetadataBuilder,
  "parsed": AttentionConfig(backend="flashinfer_host").backend.name,
  "again": again}))
""")
    assert res is not None, proc.stderr[-3000:]
    assert res["path"] == flashinfer_host.CLASS_PATH and res["name"] == "FLASHINFER_HOST"
    assert res["is_fi"] and res["builder_sub"] and not res["stock_builder"]
    assert res["parsed"] == "FLASHINFER_HOST"
    assert res["again"] is False  # idempotent: the plugin already registered it


def test_cli_selection_parses_to_our_backend(tmp_path):
    """`--attention-backend FLASHINFER_HOST` goes through EngineArgs, which loads general
    plugins in __post_init__ and converts the string in create_engine_config."""
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG))
    proc, res = run_snippet(f"""
import json
from pathlib import Path
from vllm.engine.arg_utils import EngineArgs
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
args = parser.parse_args(["--model", "{tmp_path}", "--skip-tokenizer-init",
                          "--attention-backend", "FLASHINFER_HOST"])
ea = EngineArgs.from_cli_args(args)
vc = ea.create_engine_config()
print("RESULT " + json.dumps({{"raw": ea.attention_backend,
    "config": vc.attention_config.backend.name}}))
""")
    assert res is not None, proc.stderr[-3000:]
    assert res == {"raw": "FLASHINFER_HOST", "config": "FLASHINFER_HOST"}


def test_selection_reaches_a_spawned_engine_core():
    """A spawned engine core unpickles its config before it loads vLLM's plugins: the member's
    value (our class path) is unknown there, so the enum's own pickling fails in the child
    (the negative control below) and the plugin's pickles it by name instead."""
    proc, res = run_snippet("""
import copyreg, json, multiprocessing as mp
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.config.attention import AttentionConfig
from vllm.v1.attention.backends.registry import AttentionBackendEnum
ctx = mp.get_context("spawn")
def spawn(obj):
    p = ctx.Process(target=print, args=("CHILD", obj))  # the child only unpickles and prints
    p.start(); p.join(120)
    return p.exitcode
cfg = AttentionConfig(backend="FLASHINFER_HOST")
ok = spawn(cfg)
stock = spawn(AttentionBackendEnum.FLASH_ATTN)
copyreg.dispatch_table.pop(AttentionBackendEnum)  # the enum's own pickling, as without the fix
without = spawn(AttentionBackendEnum["FLASHINFER_HOST"])
print("RESULT " + json.dumps({"ok": ok, "stock": stock, "without": without}))
""", env={"VLLM_PLUGINS": None})
    assert res is not None, proc.stderr[-3000:]
    assert res == {"ok": 0, "stock": 0, "without": 1}, proc.stderr[-3000:]
    lines = [x for x in proc.stdout.splitlines() if x.startswith("CHILD")]
    assert any("FLASHINFER_HOST" in x for x in lines) and any("FLASH_ATTN" in x for x in lines)
    assert "is not a valid AttentionBackendEnum" in proc.stderr  # the control failed as expected


# ----------------------------------------------------------------------------- in-process
class Recorder:
    """Stands where flashinfer's Batch{Prefill,Decode}...Wrapper stands: records plan()."""

    is_cuda_graph_enabled = False

    def __init__(self):
        self.calls = []

    def plan(self, *args, **kw):
        self.calls.append({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return make_env(tmp_path_factory.mktemp("tiny"))


def make_env(d):
    """Builders (ours or stock) from a real VllmConfig for a tiny local Llama config in ``d``."""
    from vllm.config import (
        AttentionConfig,
        CacheConfig,
        ModelConfig,
        ParallelConfig,
        SchedulerConfig,
        SpeculativeConfig,
        VllmConfig,
        set_current_vllm_config,
    )
    from vllm.model_executor.layers.attention_layer_base import AttentionLayerBase
    from vllm.v1.attention.backends.flashinfer import FlashInferImpl, FlashInferMetadataBuilder
    from vllm.v1.kv_cache_interface import FullAttentionSpec

    flashinfer_host.register()
    from vit_backend_plugin.flashinfer_host.backend import FlashInferHostBackend

    (d / "config.json").write_text(json.dumps(TINY_CONFIG))
    mc = ModelConfig(model=str(d), skip_tokenizer_init=True, dtype="bfloat16", max_model_len=MAX_LEN)
    spec = FullAttentionSpec(block_size=BLOCK, num_kv_heads=KV_HEADS, head_size=HEAD_DIM, dtype=torch.bfloat16)

    class Layer(torch.nn.Module, AttentionLayerBase):
        def __init__(self, impl):
            super().__init__()
            self.impl = impl

        def get_attn_backend(self):
            return FlashInferHostBackend

        def get_kv_cache_spec(self, vllm_config):
            return spec

    def make(num_spec=0, async_sched=False, padded=True, stock=False, cudagraph=False, capture_size=None,
             xqa=False):
        sched = SchedulerConfig(max_num_seqs=MAX_SEQS, max_num_batched_tokens=4096, max_model_len=MAX_LEN,
                                is_encoder_decoder=False, async_scheduling=False)
        sc = None
        if num_spec:
            sc = SpeculativeConfig(method="ngram", num_speculative_tokens=num_spec, prompt_lookup_max=3,
                                   prompt_lookup_min=1, target_model_config=mc,
                                   target_parallel_config=ParallelConfig(),
                                   disable_padded_drafter_batch=not padded)
        vc = VllmConfig(model_config=mc, cache_config=CacheConfig(block_size=BLOCK), scheduler_config=sched,
                        speculative_config=sc,
                        attention_config=AttentionConfig(backend="FLASHINFER_HOST", use_trtllm_attention=False))
        # async + spec is validated against EAGLE/MTP/draft-model drafters (which need a
        # checkpoint); the builder only reads the flag, so set it after validation.
        vc.scheduler_config.async_scheduling = async_sched
        vc.cache_config.kv_cache_layout = "HND"  # what the engine core resolves for FlashInfer
        if cudagraph:  # the CPU platform turns CUDA graphs off; the builder only reads these
            from vllm.config import CUDAGraphMode
            vc.compilation_config.cudagraph_mode = CUDAGraphMode.FULL_AND_PIECEWISE
            vc.compilation_config.max_cudagraph_capture_size = capture_size
        names = ["model.layers.0.attn", "model.layers.1.attn"]
        with set_current_vllm_config(vc):
            impl = FlashInferImpl(num_heads=HEADS, head_size=HEAD_DIM, scale=HEAD_DIM ** -0.5,
                                  num_kv_heads=KV_HEADS, alibi_slopes=None, sliding_window=None,
                                  kv_cache_dtype="auto")
            for nm in names:
                vc.compilation_config.static_forward_context[nm] = Layer(impl)
            cls = FlashInferMetadataBuilder if stock else FlashInferHostBackend.get_builder_cls()
            b = cls(spec, names, vc, torch.device("cpu"))
        if xqa:  # what __init__ selects on SM90/SM12x (the CPU platform has no XQA)
            from vllm.v1.attention.backends.flashinfer import FlashInferDecodeKernel
            b.use_trtllm_decode_attention, b.use_xqa = True, True
            b.flashinfer_trtllm_api_decode_kernel = FlashInferDecodeKernel.XQA
            b.reorder_batch_threshold = 1 + num_spec  # _init_reorder_batch_threshold, spec-as-decode
        b._prefill_wrapper, b._decode_wrapper = Recorder(), Recorder()
        return b

    return {"make": make, "FlashInferMetadataBuilder": FlashInferMetadataBuilder}


def batch(qlens, ctx, seed=0, seq_device="cpu"):
    """CommonAttentionMetadata the way GPUModelRunner fills it: seq_lens_cpu_upper_bound =
    num_computed_tokens + num_scheduled_tokens. seq_device="meta" makes any read of the
    device seq_lens (``.cpu()``) fail loudly."""
    from vllm.v1.attention.backend import CommonAttentionMetadata

    rng = np.random.default_rng(seed)
    n = len(qlens)
    qo = np.zeros(n + 1, np.int32)
    qo[1:] = np.cumsum(qlens)
    seq = planning.host_seq_lens(np.array(ctx, np.int32), qo)
    width = -(-MAX_LEN // BLOCK)
    bt = rng.permutation(MAX_SEQS * width).reshape(MAX_SEQS, width)[:n].astype(np.int32)
    seq_t = torch.from_numpy(seq.copy())
    return CommonAttentionMetadata(
        query_start_loc=torch.from_numpy(qo.copy()), query_start_loc_cpu=torch.from_numpy(qo.copy()),
        seq_lens=seq_t.to(seq_device), num_reqs=n, num_actual_tokens=int(qo[-1]),
        max_query_len=int(max(qlens)), max_seq_len=int(seq.max()),
        block_table_tensor=torch.from_numpy(bt), slot_mapping=torch.zeros(int(qo[-1]), dtype=torch.int64),
        seq_lens_cpu_upper_bound=seq_t.clone(),
    ), qo, seq, bt


def expected(qo, seq, bt, threshold=1, ntok=None):
    split = planning.split_decodes_and_prefills(qo, int(qo[-1]) if ntok is None else ntok,
                                                int(np.diff(qo).max()), threshold, True)
    n = len(seq)
    bufs = {k: np.zeros(n + 1, np.int32) for k in ("indptr_out", "last_page_len_out",
            "qo_indptr_prefill_out", "kv_lens_prefill_out", "kv_lens_decode_out", "pages_scratch")}
    plan = planning.plan_batch(qo, seq, BLOCK, split, **bufs)
    idx = planning.paged_kv_indices(bt, plan.paged_kv_indptr, np.zeros(int(plan.paged_kv_indptr[-1]) + 1, np.int32))
    return split, plan, idx


def test_builder_is_vllm_flashinfer_builder_subclass(env):
    b = env["make"]()
    assert isinstance(b, env["FlashInferMetadataBuilder"]) and type(b) is not env["FlashInferMetadataBuilder"]
    # persistent host buffers, sized once from max_num_seqs
    assert all(s.t["indptr"].shape[0] == MAX_SEQS + 1 for s in b._slots)


def test_spec_decode_sync_scheduling_never_reads_device_seq_lens(env):
    """With num_speculative_tokens > 0 the stock builder calls seq_lens.cpu(); ours plans
    from num_computed_tokens + scheduled tokens. seq_lens on the meta device proves it:
    any device-to-host read raises."""
    qlens, ctx = [1, 1, 1, 200], [40, 47, 48, 0]  # native decode: 1 token/row (threshold 1)
    ours = env["make"](num_spec=3)
    cam, qo, seq, bt = batch(qlens, ctx, seq_device="meta")
    md = ours.build(0, cam)
    assert ours.host_builds == 1 and not ours.fallback_counts
    _, plan, _ = expected(qo, seq, bt)
    assert ours._decode_wrapper.calls[0]["seq_lens"].tolist() == plan.kv_lens_decode.tolist()
    assert md.num_prefills == 1
    # drafter first pass (draft_index 0) is exact too
    ours.build_for_drafting(batch(qlens, ctx, seq_device="meta")[0], draft_index=0)
    assert ours.host_builds == 2

    stock = env["make"](num_spec=3, stock=True)
    with pytest.raises(NotImplementedError, match="meta"):
        stock.build(0, batch(qlens, ctx, seq_device="meta")[0])


@pytest.mark.parametrize("mode,reason", [
    (dict(num_spec=2, async_sched=True), "async_spec"),
    (dict(num_spec=2, padded=True), "padded_draft_step"),
])
def test_unclaimed_modes_fall_back_to_stock_once_logged(env, caplog, mode, reason):
    b = env["make"](**mode)
    cam_args = ([1, 1, 300], [10, 20, 0])
    call = (lambda cam: b.build_for_drafting(cam, draft_index=1)) if reason == "padded_draft_step" \
        else (lambda cam: b.build(0, cam))
    with caplog.at_level(logging.INFO, logger="vllm.vit_backend_plugin.flashinfer_host"):
        for _ in range(2):
            # stock path reached: it reads the device seq_lens (meta here) and raises
            with pytest.raises(NotImplementedError, match="meta"):
                call(batch(*cam_args, seq_device="meta")[0])
    assert b.fallback_counts == {reason: 2} and b.host_builds == 0
    lines = [r for r in caplog.records if "FLASHINFER_HOST" in r.getMessage()]
    assert len(lines) == 1


def test_v2_runner_spec_decode_plans_on_host_unless_opted_out_and_adaptive_falls_back(env, monkeypatch):
    """vLLM 0.32 runs its V2 model runner on CUDA. Spec-decode steps there plan from the host
    (seq_lens on the meta device: no device read) by default, since the H100 engine check;
    VIT_FLASHINFER_HOST_V2_SPEC=0 sends them to stock; adaptive verification always goes to stock."""
    from vit_backend_plugin.flashinfer_host.builder import V2_SPEC_ENV

    # vLLM refuses a V2-runner config without Triton (the CPU platform): set what __init__
    # derives from vllm_config.use_v2_model_runner (the H100 engine run logged that path).
    monkeypatch.setenv(V2_SPEC_ENV, "0")
    opted_out = env["make"](num_spec=3)
    opted_out._v2_runner = True
    with pytest.raises(NotImplementedError, match="meta"):
        opted_out.build(0, batch([1, 1, 200], [40, 47, 0], seq_device="meta")[0])
    assert opted_out.fallback_counts == {"v2_runner_spec": 1}

    monkeypatch.delenv(V2_SPEC_ENV, raising=False)
    default = env["make"](num_spec=3)
    default._v2_runner = True
    cam, qo, seq, bt = batch([1, 1, 200], [40, 47, 0], seq_device="meta")
    default.build(0, cam)
    assert default.host_builds == 1 and not default.fallback_counts
    _, plan, _ = expected(qo, seq, bt)
    assert default._decode_wrapper.calls[0]["seq_lens"].tolist() == plan.kv_lens_decode.tolist()

    adaptive = env["make"](num_spec=3)
    adaptive._v2_runner = True
    adaptive._adaptive = True  # SpeculativeConfig(enable_adaptive_verification=True) needs a GPU drafter
    with pytest.raises(NotImplementedError, match="meta"):
        adaptive.build(0, batch([1, 1, 200], [40, 47, 0], seq_device="meta")[0])
    assert adaptive.fallback_counts == {"adaptive_verification": 1}


def test_non_padded_drafter_steps_stay_on_host_with_max_len_clamp(env):
    b = env["make"](num_spec=2, padded=False)
    cam, qo, seq, bt = batch([1, 1], [MAX_LEN, 10], seq_device="meta")  # row 0: 1025 > max len
    b.build_for_drafting(cam, draft_index=1)
    assert b.host_builds == 1 and not b.fallback_counts
    assert b._decode_wrapper.calls[0]["seq_lens"].tolist() == [1, 11]


def test_ring_buffers_reused_not_reallocated(env):
    b = env["make"]()
    ids = set()
    for step in range(10):
        b.build(0, batch([1, 1, 20], [step, 2 * step, 0], seed=step)[0])
        ids.add(b.last_plan.paged_kv_indptr.__array_interface__["data"][0])
    assert len(ids) == len(b._slots)  # cycles through the persistent slots


# --------------------------------------------------------------- against the stock builder
# (query lengths, context lengths, causal, builder settings for both builders)
PLAN_CASES = [
    ([1, 1, 1, 37, 100], [15, 16, 17, 0, 31], True, {}),   # mixed, page boundaries, empty ctx
    ([1] * 9, [0, 1, 15, 16, 17, 31, 32, 33, 900], True, {}),  # all decode
    ([5, 64, 17], [0, 16, 3], True, {}),                      # all prefill
    ([4, 4], [0, 8], False, {}),                              # non-causal: ours hands it to stock
    # spec decode, native decode (threshold 1): drafts rows are planned as prefills
    ([1, 1, 4, 4, 30], [10, 16, 31, 5, 0], True, {"num_spec": 3}),
    ([4, 4, 4], [3, 40, 17], True, {"num_spec": 3}),
    # CUDA-graph decode wrappers: within the cap, above a capture-size cap, spec-widened cap
    ([1] * 6, [3, 15, 16, 17, 64, 90], True, {"cudagraph": True}),
    ([1] * 6, [3, 15, 16, 17, 64, 90], True, {"cudagraph": True, "capture_size": 4}),
    ([1] * 5, [3, 15, 16, 17, 64], True, {"cudagraph": True, "capture_size": 5, "num_spec": 1}),
    ([1, 1, 20], [3, 15, 16], True, {"cudagraph": True}),   # mixed: never the graph wrapper
    # XQA decode (SM90) with spec drafts as decodes + native prefill; ragged XQA -> stock
    ([4, 4, 4, 50], [10, 31, 0, 7], True, {"num_spec": 3, "xqa": True}),
    ([1, 1, 50], [10, 31, 7], True, {"xqa": True}),
    ([4, 2, 50], [10, 31, 7], True, {"num_spec": 3, "xqa": True}),
]


def test_same_split_and_plan_arguments_as_vllms_stock_builder(tmp_path):
    """On the same CommonAttentionMetadata: vLLM's own split_decodes_and_prefills gives our
    metadata's split, and FlashInfer's plan() gets from us exactly what it gets from vLLM's stock
    FlashInferMetadataBuilder (the CUDA-graph decode wrapper choice included); the XQA decode
    metadata is field for field the same, and so are the device indptr / last-page-length buffers
    that CUDA-graph decode wrappers read (FlashInfer's graph-mode plan copies neither). vLLM
    disables Triton on CPU, so its page-index copy kernel (vLLM's own function) runs here in
    Triton's interpreter."""
    proc, res = run_snippet(f"""
import dataclasses, json, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
import torch, triton, triton.language
import vllm.v1.attention.backends.flashinfer as fi
fi.tl = triton.language
fi._copy_page_indices_kernel = triton.jit(fi._copy_page_indices_kernel)
from vllm.v1.attention.backends.utils import split_decodes_and_prefills
from test_flashinfer_host_vllm import PLAN_CASES, Recorder, batch, make_env
env = make_env(Path({str(tmp_path)!r}))
# the stock builder checks the wrapper types: recorders that are FlashInfer's classes
class PrefillRecorder(Recorder, fi.BatchPrefillWithPagedKVCacheWrapper): pass
class DecodeRecorder(Recorder, fi.BatchDecodeWithPagedKVCacheWrapper): pass
class GraphDecodeRecorders(dict):  # one recorder per CUDA-graph batch size, as stock keys them
    def get(self, k, default=None):
        return self.setdefault(k, DecodeRecorder())
def make(**kw):
    b = env["make"](**kw)
    b._prefill_wrapper, b._decode_wrapper = PrefillRecorder(), DecodeRecorder()
    b._noncausal_prefill_wrapper = b._prefill_wrapper  # stock keeps non-causal plans apart
    if hasattr(b, "_decode_wrappers_cudagraph"):
        b._decode_wrappers_cudagraph = GraphDecodeRecorders()
    return b
def norm(v):
    if isinstance(v, torch.Tensor):
        return v.tolist()
    return v if isinstance(v, (int, float, bool, str, type(None))) else repr(v)
def calls(b):
    out = {{w: [{{k: norm(v) for k, v in c.items()}} for c in getattr(b, w).calls]
            for w in ("_prefill_wrapper", "_decode_wrapper")}}
    for bs, r in getattr(b, "_decode_wrappers_cudagraph", {{}}).items():
        out[f"graph_decode_{{bs}}"] = [{{k: norm(v) for k, v in c.items()}} for c in r.calls]
    return out
def decode_md(md):
    d = md.decode
    if d is None or isinstance(d, fi.FIDecode):
        return type(d).__name__
    return {{f.name: norm(getattr(d, f.name)) for f in dataclasses.fields(d)}}
out = []
for qlens, ctx, causal, cfg in PLAN_CASES:
    ours, stock = make(**cfg), make(stock=True, **cfg)
    cams = [batch(qlens, ctx)[0] for _ in range(2)]
    for c in cams:
        c.causal = causal
    md, smd = ours.build(0, cams[0]), stock.build(0, cams[1])
    split = split_decodes_and_prefills(cams[0], decode_threshold=stock.reorder_batch_threshold,
                                       require_uniform=not stock.use_xqa)
    out.append({{"split": list(split), "ours_split": [md.num_decodes, md.num_prefills,
                 md.num_decode_tokens, md.num_prefill_tokens],
                 "stock_split": [smd.num_decodes, smd.num_prefills, smd.num_decode_tokens,
                 smd.num_prefill_tokens],
                 "ours": calls(ours), "stock": calls(stock), "host_builds": ours.host_builds,
                 "ours_decode": decode_md(md), "stock_decode": decode_md(smd),
                 # what CUDA-graph decode wrappers read on the device (graph-mode plans copy neither)
                 "ours_bufs": [ours.paged_kv_indptr.gpu[:len(qlens) + 1].tolist(),
                               ours.paged_kv_last_page_len.gpu[:len(qlens)].tolist()],
                 "stock_bufs": [stock.paged_kv_indptr.gpu[:len(qlens) + 1].tolist(),
                                stock.paged_kv_last_page_len.gpu[:len(qlens)].tolist()],
                 "fallbacks": ours.fallback_counts}})
print("RESULT " + json.dumps(out))
""", env={"TRITON_INTERPRET": "1"})
    assert res is not None, proc.stderr[-3000:]
    for (qlens, _, causal, cfg), r in zip(PLAN_CASES, res, strict=True):
        case = (qlens, cfg)
        assert r["ours_split"] == r["split"] == r["stock_split"], case
        ours, stock = r["ours"], r["stock"]
        assert {w: len(v) for w, v in ours.items()} == {w: len(v) for w, v in stock.items()}, case
        assert sum(len(v) for v in stock.values()) >= 1 or r["stock_decode"] != "NoneType", case
        assert r["ours_decode"] == r["stock_decode"], case
        for w in ours:
            for a, b in zip(ours[w], stock[w], strict=True):
                assert set(a) == set(b), (w, set(a) ^ set(b))
                for key in a:
                    x, y = a[key], b[key]
                    if key in ("indices", "paged_kv_indices"):  # buffers: the used prefix counts
                        n = (a.get("indptr") or a["paged_kv_indptr"])[-1]
                        x, y = x[:n], y[:n]
                    assert x == y, (case, w, key, x, y)
        ragged = cfg.get("xqa") and qlens[:2] == [4, 2]
        if sum(len(v) for v in stock.values()):  # a native FlashInfer plan: its device buffers
            assert r["ours_bufs"] == r["stock_bufs"], (case, r["ours_bufs"], r["stock_bufs"])
        if not causal:
            assert r["fallbacks"] == {"non_causal": 1} and r["host_builds"] == 0
            assert ours["_prefill_wrapper"][0]["causal"] is False
        elif ragged:
            assert r["fallbacks"] == {"xqa_ragged": 1} and r["host_builds"] == 0
        else:
            assert r["host_builds"] == 1 and not r["fallbacks"], case
    graph = [r["ours"] for (_, _, _, cfg), r in zip(PLAN_CASES, res, strict=True) if cfg.get("cudagraph")]
    # the cases do exercise both sides of the CUDA-graph cap
    assert [sorted(k for k in g if g[k]) for g in graph] == [
        ["graph_decode_6"], ["_decode_wrapper"], ["graph_decode_5"], ["_decode_wrapper", "_prefill_wrapper"]]
    xqa = [r["ours_decode"] for (_, _, _, cfg), r in zip(PLAN_CASES, res, strict=True) if cfg.get("xqa")]
    assert xqa[0]["q_len_per_req"] == 4 and xqa[0]["mask"] is not None
