"""``vit-parity bench-builder``: FlashInfer metadata ``build()``, stock vs FLASHINFER_HOST.

Default mode (needs vLLM + flashinfer + a CUDA GPU): builds vLLM's stock
``FlashInferMetadataBuilder`` and our ``FlashInferHostMetadataBuilder`` from the same
VllmConfig (a tiny local Llama config, no weights), times ``build()`` per step for each batch
size, then runs each builder's ``build()`` under ``torch.cuda.set_sync_debug_mode("error")``.

``--planner-only`` (needs only torch + numpy + a CUDA GPU): times the pure numpy planner
plus its host-to-device copies (pinned, non_blocking) under sync-debug "error", side by side
with a stock-like baseline that reads ``seq_lens`` back from the device (what vLLM 0.32's
builder does under speculative decoding) and pins fresh host tensors per step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

from vit_backend_plugin.flashinfer_host import planning

DEFAULT_BATCH_SIZES = "1,2,4,8,16,32,64,128,256"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--planner-only", action="store_true",
                        help="no vLLM: time the pure planner + its H2D copies under sync-debug 'error'")
    parser.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES, help="comma-separated (default %(default)s)")
    parser.add_argument("--mode", choices=["decode", "mixed", "spec"], default="spec",
                        help="decode: 1 token/row; mixed: 1/4 prefill rows; spec: decode rows with "
                             "--spec-tokens drafts + 1/8 prefills (default %(default)s)")
    parser.add_argument("--spec-tokens", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=16)
    parser.add_argument("--max-context", type=int, default=4096)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the JSON result here")


def _require_cuda():
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, "no CUDA GPU visible to torch (bench-builder times GPU host-to-device work)"
    return torch, None


def make_batch(rng, bs: int, mode: str, spec_tokens: int, page_size: int, max_context: int):
    """Host-side batch state: query lengths (decodes first), num_computed_tokens, block table."""
    n_pre = {"decode": 0, "mixed": bs // 4, "spec": bs // 8}[mode]
    q_dec = 1 + (spec_tokens if mode == "spec" else 0)
    qlens = np.array([q_dec] * (bs - n_pre) + list(rng.integers(q_dec + 1, 512, n_pre)), np.int32)
    computed = rng.integers(0, max_context, bs).astype(np.int32)
    qo = np.zeros(bs + 1, np.int32)
    qo[1:] = np.cumsum(qlens)
    width = -(-(max_context + 512) // page_size)
    block_table = rng.permutation(bs * width).reshape(bs, width).astype(np.int32)
    return qo, computed, block_table, q_dec


# ----------------------------------------------------------------------------- planner-only
class _PlannerState:
    """Persistent pinned host buffers + device buffers, sized once (as the builder does)."""

    def __init__(self, torch, max_reqs: int, max_pages: int, dev):
        n = max_reqs + 1
        self.host = {k: torch.zeros(n, dtype=torch.int32, pin_memory=True) for k in
                     ("indptr", "last", "qo_p", "kvl_p", "kvl_d", "seq", "pages")}
        self.np = {k: v.numpy() for k, v in self.host.items()}
        self.idx_host = torch.zeros(max_pages, dtype=torch.int32, pin_memory=True)
        self.dev = {k: torch.zeros(n, dtype=torch.int32, device=dev) for k in ("indptr", "last", "qo_p", "kvl_p", "kvl_d")}
        self.idx_dev = torch.zeros(max_pages, dtype=torch.int32, device=dev)


def _planner_step(st: _PlannerState, qo, computed, block_table, threshold, page_size):
    n = len(computed)
    seq = planning.host_seq_lens(computed, qo, out=st.np["seq"][:n])
    split = planning.split_decodes_and_prefills(qo, int(qo[-1]), int((qo[1:] - qo[:-1]).max()),
                                                threshold, require_uniform=True)
    plan = planning.plan_batch(qo, seq, page_size, split, indptr_out=st.np["indptr"],
                               last_page_len_out=st.np["last"], qo_indptr_prefill_out=st.np["qo_p"],
                               kv_lens_prefill_out=st.np["kvl_p"], kv_lens_decode_out=st.np["kvl_d"],
                               pages_scratch=st.np["pages"])
    total = int(plan.paged_kv_indptr[n])
    planning.paged_kv_indices(block_table, plan.paged_kv_indptr, st.idx_host.numpy())
    for k, m in (("indptr", n + 1), ("last", n), ("qo_p", len(plan.qo_indptr_prefill)),
                 ("kvl_p", len(plan.kv_lens_prefill)), ("kvl_d", len(plan.kv_lens_decode))):
        if m:
            st.dev[k][:m].copy_(st.host[k][:m], non_blocking=True)
    st.idx_dev[:total].copy_(st.idx_host[:total], non_blocking=True)
    return plan


def _stock_like_step(torch, seq_lens_dev, qo_cpu, page_size):
    """What the stock builder does per build under spec decode, minus FlashInfer: a D2H
    read of seq_lens, torch CPU math, then fresh pinned copies of each planning array."""
    seq = seq_lens_dev.cpu()  # device -> host: waits for the GPU
    pages = (seq + page_size - 1) // page_size
    indptr = torch.zeros(len(seq) + 1, dtype=torch.int32)
    torch.cumsum(pages, 0, out=indptr[1:])
    last = seq % page_size
    last = torch.where((last == 0) & (seq != 0), page_size, last).to(torch.int32)
    kvl = (torch.clamp(indptr[1:] - indptr[:-1] - 1, min=0) * page_size + last)
    out = [t.pin_memory().to("cuda", non_blocking=True) for t in (qo_cpu, indptr, last, kvl)]
    return out


def _time(fn, iters, warmup, torch):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    torch.cuda.synchronize()
    ts = np.array(ts) * 1e6
    return {"median_us": float(np.median(ts)), "p90_us": float(np.percentile(ts, 90)), "mean_us": float(ts.mean())}


def _under_sync_error(torch, fn, reps=5):
    """Run fn with sync-debug 'error'; return (ok, error text)."""
    torch.cuda.synchronize()
    prev = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(reps):
            fn()
        return True, None
    except RuntimeError as e:
        return False, str(e).splitlines()[0][:300]
    finally:
        torch.cuda.set_sync_debug_mode(prev)
        torch.cuda.synchronize()


def run_planner_only(args, torch) -> dict:
    dev = torch.device("cuda")
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    rng = np.random.default_rng(args.seed)
    max_pages = max(sizes) * (-(-(args.max_context + 512) // args.page_size))
    st = _PlannerState(torch, max(sizes), max_pages, dev)
    # the detector is armed: a device->host read must raise under "error"
    probe = torch.ones(4, device=dev)
    armed_ok, armed_msg = _under_sync_error(torch, lambda: probe.sum().item(), reps=1)
    rows = []
    for bs in sizes:
        qo, computed, bt, q_dec = make_batch(rng, bs, args.mode, args.spec_tokens, args.page_size, args.max_context)
        threshold = q_dec if args.mode == "spec" else 1
        seq_dev = torch.from_numpy(planning.host_seq_lens(computed, qo)).to(dev)
        qo_cpu = torch.from_numpy(qo)
        ours = lambda qo=qo, computed=computed, bt=bt, threshold=threshold: _planner_step(  # noqa: E731
            st, qo, computed, bt, threshold, args.page_size)
        stock = lambda seq_dev=seq_dev, qo_cpu=qo_cpu: _stock_like_step(  # noqa: E731
            torch, seq_dev, qo_cpu, args.page_size)
        plan = ours()
        torch.cuda.synchronize()
        n = bs
        # what reached the device equals the pure planner's arrays and the reference
        dev_ok = (st.dev["indptr"][: n + 1].cpu().numpy().tolist() == plan.paged_kv_indptr.tolist()
                  and st.dev["last"][:n].cpu().numpy().tolist() == plan.last_page_len.tolist())
        t_ours = _time(ours, args.iters, args.warmup, torch)
        t_stock = _time(stock, args.iters, args.warmup, torch)
        ok_ours, err_ours = _under_sync_error(torch, ours)
        ok_stock, err_stock = _under_sync_error(torch, stock)
        rows.append({"batch_size": bs, "num_tokens": int(qo[-1]), "num_pages": int(plan.paged_kv_indptr[n]),
                     "split": list(map(int, plan.split)), "device_arrays_match_planner": bool(dev_ok),
                     "host_planner_us": t_ours, "stock_like_us": t_stock,
                     "host_planner_sync_free": ok_ours, "host_planner_sync_error": err_ours,
                     "stock_like_sync_free": ok_stock, "stock_like_sync_error": err_stock})
        print(f"bs={bs:4d} ours {t_ours['median_us']:8.1f} us  sync-free={ok_ours} | "
              f"stock-like {t_stock['median_us']:8.1f} us  sync-free={ok_stock}", flush=True)
    return {"mode": "planner-only", "detector_armed": (not armed_ok), "detector_message": armed_msg,
            "rows": rows}


# ----------------------------------------------------------------------------- full (vLLM)
def _make_builders(torch, num_spec: int, page_size: int, max_seqs: int, max_len: int):
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

    from vit_backend_plugin import flashinfer_host
    flashinfer_host.register()
    from vit_backend_plugin.flashinfer_host.backend import FlashInferHostBackend

    heads, kv_heads, head_dim = 32, 8, 128
    d = tempfile.mkdtemp(prefix="fi_host_bench_")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": heads * head_dim,
                   "intermediate_size": 8192, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                   "head_dim": head_dim, "num_hidden_layers": 2, "vocab_size": 32000,
                   "max_position_embeddings": max_len, "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5}, f)
    mc = ModelConfig(model=d, skip_tokenizer_init=True, dtype="bfloat16", max_model_len=max_len)
    spec = FullAttentionSpec(block_size=page_size, num_kv_heads=kv_heads, head_size=head_dim, dtype=torch.bfloat16)
    sc = None
    if num_spec:
        sc = SpeculativeConfig(method="ngram", num_speculative_tokens=num_spec, prompt_lookup_max=3,
                               prompt_lookup_min=1, target_model_config=mc, target_parallel_config=ParallelConfig())
    vc = VllmConfig(model_config=mc, cache_config=CacheConfig(block_size=page_size), speculative_config=sc,
                    scheduler_config=SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=16384,
                                                     max_model_len=max_len, is_encoder_decoder=False),
                    attention_config=AttentionConfig(backend="FLASHINFER_HOST"))
    vc.cache_config.kv_cache_layout = "HND"

    class Layer(torch.nn.Module, AttentionLayerBase):
        def __init__(self, impl):
            super().__init__()
            self.impl = impl

        def get_attn_backend(self):
            return FlashInferHostBackend

        def get_kv_cache_spec(self, vllm_config):
            return spec

    names = ["model.layers.0.attn", "model.layers.1.attn"]
    with set_current_vllm_config(vc):
        impl = FlashInferImpl(num_heads=heads, head_size=head_dim, scale=head_dim ** -0.5, num_kv_heads=kv_heads,
                              alibi_slopes=None, sliding_window=None, kv_cache_dtype="auto")
        for nm in names:
            vc.compilation_config.static_forward_context[nm] = Layer(impl)
        dev = torch.device("cuda")
        stock = FlashInferMetadataBuilder(spec, names, vc, dev)
        ours = FlashInferHostBackend.get_builder_cls()(spec, names, vc, dev)
    return vc, stock, ours


def run_full(args, torch) -> dict:
    from vllm.config import set_current_vllm_config
    from vllm.v1.attention.backend import CommonAttentionMetadata

    sizes = [int(x) for x in args.batch_sizes.split(",")]
    num_spec = args.spec_tokens if args.mode == "spec" else 0
    max_len = args.max_context + 1024
    vc, stock, ours = _make_builders(torch, num_spec, args.page_size, max(sizes), max_len)
    dev = torch.device("cuda")
    rng = np.random.default_rng(args.seed)
    rows = []
    for bs in sizes:
        qo, computed, _, _ = make_batch(rng, bs, args.mode, args.spec_tokens, args.page_size, args.max_context)
        seq = planning.host_seq_lens(computed, qo)
        width = -(-max_len // args.page_size)
        bt = torch.from_numpy(rng.permutation(bs * width).reshape(bs, width).astype(np.int32)).to(dev)
        qo_t = torch.from_numpy(qo)
        cam = CommonAttentionMetadata(
            query_start_loc=qo_t.to(dev), query_start_loc_cpu=qo_t.pin_memory(),
            seq_lens=torch.from_numpy(seq).to(dev), num_reqs=bs, num_actual_tokens=int(qo[-1]),
            max_query_len=int((qo[1:] - qo[:-1]).max()), max_seq_len=int(seq.max()), block_table_tensor=bt,
            slot_mapping=torch.zeros(int(qo[-1]), dtype=torch.int64, device=dev),
            seq_lens_cpu_upper_bound=torch.from_numpy(seq.copy()))
        row = {"batch_size": bs, "num_tokens": int(qo[-1])}
        with set_current_vllm_config(vc):
            for name, b in (("stock", stock), ("host", ours)):
                fn = lambda b=b, cam=cam: b.build(0, cam)  # noqa: E731
                row[f"{name}_us"] = _time(fn, args.iters, args.warmup, torch)
                ok, err = _under_sync_error(torch, fn)
                row[f"{name}_sync_free"], row[f"{name}_sync_error"] = ok, err
        row["host_fallbacks"] = dict(ours.fallback_counts)
        rows.append(row)
        print(f"bs={bs:4d} stock {row['stock_us']['median_us']:8.1f} us sync-free={row['stock_sync_free']} | "
              f"host {row['host_us']['median_us']:8.1f} us sync-free={row['host_sync_free']}", flush=True)
    return {"mode": "full", "rows": rows}


def main(args) -> int:
    torch, err = _require_cuda()
    if err:
        print(f"vit-parity bench-builder: {err}. Run it on a machine with an NVIDIA GPU "
              f"(--planner-only needs torch+numpy only; the default mode also needs vLLM and flashinfer).",
              file=sys.stderr)
        return 2
    if not args.planner_only:
        try:
            import flashinfer  # noqa: F401
            import vllm  # noqa: F401
        except ImportError as e:
            print(f"vit-parity bench-builder: {e}; install vLLM with flashinfer, or use --planner-only",
                  file=sys.stderr)
            return 2
    result = run_planner_only(args, torch) if args.planner_only else run_full(args, torch)
    result.update({
        "args": vars(args), "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(), "python": platform.python_version(), "numpy": np.__version__,
    })
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    rows = result["rows"]
    key = "host_planner_sync_free" if args.planner_only else "host_sync_free"
    return 0 if all(r[key] for r in rows) else 1
