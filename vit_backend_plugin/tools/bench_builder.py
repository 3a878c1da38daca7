"""``vit-parity bench-builder``: FlashInfer metadata ``build()``, stock vs FLASHINFER_HOST.

Default ("full") mode (needs vLLM + flashinfer + a CUDA GPU): builds vLLM's stock
``FlashInferMetadataBuilder`` and our ``FlashInferHostMetadataBuilder`` from the same
VllmConfig (a tiny local Llama config, no weights; one pair per number of speculative
tokens), builds every batch's ``CommonAttentionMetadata`` once, then per mode and batch size
times ``build()`` of both on that same object (alternating call by call, each from an idle GPU;
and, as ``*_queued_us``, back to back without synchronising) and counts the synchronising CUDA operations
of each (:func:`.sync_count.count_syncs`, torch's detector in "warn" mode).

``--planner-only`` (needs only torch + numpy + a CUDA GPU; vLLM optional): what our builder
does per step without FlashInfer: the pure numpy planner into persistent pinned buffers,
a non-blocking indptr copy and the page-index gather on the device (vLLM's
``_copy_page_indices_kernel`` when vLLM imports, else a torch gather that needs no host
sync), side by side with a stock-like baseline that reads ``seq_lens`` back from the device
(what vLLM 0.32's builder does under speculative decoding) and pins fresh host tensors.

Neither mode counts ``non_blocking`` copies from pageable host memory (the driver stages
them synchronously; torch's detector does not instrument them).
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
from vit_backend_plugin.tools.sync_count import count_syncs

DEFAULT_BATCH_SIZES = "1,2,4,8,16,32,64,128,256"
MODES = ("decode", "mixed", "spec")
SYNC_STEPS = 5  # builds per sync count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--planner-only", action="store_true",
                        help="time the pure planner + its H2D copies + the device page-index gather")
    parser.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES, help="comma-separated (default %(default)s)")
    parser.add_argument("--modes", "--mode", dest="modes", default="spec", type=parse_modes,
                        help="comma-separated, run in one process: decode: 1 token/row; mixed: 1/4 "
                             "prefill rows; spec: decode rows with --spec-tokens drafts + 1/8 "
                             "prefills (default %(default)s)")
    parser.add_argument("--spec-tokens", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=16)
    parser.add_argument("--max-context", type=int, default=4096)
    parser.add_argument("--no-trtllm", action="store_true",
                        help="full mode: --attention-config.use_trtllm_attention=0 (native FlashInfer "
                             "decode even where XQA/trtllm-gen is available)")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the JSON result here")


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"modes must be among {', '.join(MODES)}; got {text!r}")
    return list(dict.fromkeys(modes))


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


def _syncs(fn, steps: int = SYNC_STEPS):
    """Synchronising CUDA operations over ``steps`` calls of fn, and the first report."""
    def run():
        for _ in range(steps):
            fn()
    _, n, first = count_syncs(run)
    return n, first


# ----------------------------------------------------------------------------- planner-only
def gather_page_indices_torch(out, block_table, indptr, num_reqs: int, total: int):
    """Device page-index gather with torch ops only: row ``i``'s first ``indptr[i+1] -
    indptr[i]`` block ids, concatenated into ``out[:total]``. ``total`` (= ``indptr[-1]``) is
    known on the host, so nothing is read back from the device. Works on any device."""
    if total == 0:
        return out[:0]
    import torch

    pos = torch.arange(total, device=indptr.device, dtype=indptr.dtype)
    rows = torch.searchsorted(indptr[1 : num_reqs + 1], pos, right=True)
    cols = (pos - indptr[rows]).long()
    out[:total] = block_table[rows, cols]
    return out[:total]


def page_index_gather():
    """``(name, gather(out, block_table, indptr_dev, num_reqs, total))``: vLLM's own kernel,
    as the builder calls it, when vLLM's FlashInfer backend imports; else the torch gather."""
    try:
        from vllm.v1.attention.backends.flashinfer import _copy_page_indices_kernel as kernel
    except Exception:  # vLLM or flashinfer absent: no vLLM kernel to time
        return "torch_searchsorted", gather_page_indices_torch

    def gather(out, block_table, indptr, num_reqs, total):
        kernel[(num_reqs,)](out[:total], block_table, block_table.stride(0), indptr, BLOCK_SIZE=1024)
        return out[:total]
    return "vllm_copy_page_indices_kernel", gather


class _PlannerState:
    """Persistent pinned host buffers + device buffers, sized once (as the builder does)."""

    def __init__(self, torch, max_reqs: int, max_pages: int, dev):
        n = max_reqs + 1
        self.host = {k: torch.zeros(n, dtype=torch.int32, pin_memory=True) for k in
                     ("indptr", "last", "qo_p", "kvl_p", "kvl_d", "seq", "pages")}
        self.np = {k: v.numpy() for k, v in self.host.items()}
        self.dev = {k: torch.zeros(n, dtype=torch.int32, device=dev) for k in ("indptr", "last", "qo_p", "kvl_p", "kvl_d")}
        self.idx_dev = torch.zeros(max_pages, dtype=torch.int32, device=dev)


def _planner_step(st: _PlannerState, qo, computed, bt_dev, threshold, page_size, gather):
    """The builder's host path minus FlashInfer: plan on the host, copy the indptr (pinned,
    non_blocking), gather page indices on the device, copy the other planning arrays (the
    copies FlashInfer's plan() makes from what the builder passes)."""
    n = len(computed)
    seq = planning.host_seq_lens(computed, qo, out=st.np["seq"][:n])
    split = planning.split_decodes_and_prefills(qo, int(qo[-1]), int((qo[1:] - qo[:-1]).max()),
                                                threshold, require_uniform=True)
    plan = planning.plan_batch(qo, seq, page_size, split, indptr_out=st.np["indptr"],
                               last_page_len_out=st.np["last"], qo_indptr_prefill_out=st.np["qo_p"],
                               kv_lens_prefill_out=st.np["kvl_p"], kv_lens_decode_out=st.np["kvl_d"],
                               pages_scratch=st.np["pages"])
    total = int(plan.paged_kv_indptr[n])
    indptr_dev = st.dev["indptr"][: n + 1]
    indptr_dev.copy_(st.host["indptr"][: n + 1], non_blocking=True)
    gather(st.idx_dev, bt_dev, indptr_dev, n, total)
    for k, m in (("last", n), ("qo_p", len(plan.qo_indptr_prefill)),
                 ("kvl_p", len(plan.kv_lens_prefill)), ("kvl_d", len(plan.kv_lens_decode))):
        if m:
            st.dev[k][:m].copy_(st.host[k][:m], non_blocking=True)
    return plan


def _stock_like_step(torch, seq_lens_dev, qo_cpu, bt_dev, idx_dev, page_size, gather):
    """What the stock builder does per build under spec decode, minus FlashInfer: a D2H
    read of seq_lens, torch CPU math, fresh pinned copies of each planning array, and the
    same device page-index gather."""
    seq = seq_lens_dev.cpu()  # device -> host: waits for the GPU
    pages = (seq + page_size - 1) // page_size
    indptr = torch.zeros(len(seq) + 1, dtype=torch.int32)
    torch.cumsum(pages, 0, out=indptr[1:])
    last = seq % page_size
    last = torch.where((last == 0) & (seq != 0), page_size, last).to(torch.int32)
    kvl = (torch.clamp(indptr[1:] - indptr[:-1] - 1, min=0) * page_size + last)
    out = [t.pin_memory().to("cuda", non_blocking=True) for t in (qo_cpu, indptr, last, kvl)]
    gather(idx_dev, bt_dev, out[1], len(seq), int(indptr[-1]))
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
    return _stats(ts)


def _stats(ts) -> dict:
    ts = np.array(ts) * 1e6
    return {"median_us": float(np.median(ts)), "p90_us": float(np.percentile(ts, 90)), "mean_us": float(ts.mean())}


def _time_alternating(fns: dict, iters, warmup, torch) -> dict:
    """Each call timed alone from an idle GPU (synchronised before, not inside, the timed region),
    the candidates alternating call by call (ABBA), so clock and queue drift hit both alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    ts = {n: [] for n in names}
    for i in range(iters):
        for n in (names if i % 2 == 0 else names[::-1]):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fns[n]()
            ts[n].append(time.perf_counter() - t0)
    torch.cuda.synchronize()
    return {n: _stats(v) for n, v in ts.items()}


def _detector_armed(torch) -> tuple[bool, str | None]:
    """A device-to-host read must be counted, or zero counts prove nothing."""
    probe = torch.ones(4, device="cuda")
    torch.cuda.synchronize()
    _, n, msg = count_syncs(lambda: probe.sum().item())
    return n >= 1, msg


def run_planner_only(args, torch) -> dict:
    dev = torch.device("cuda")
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    gather_name, gather = page_index_gather()
    width = -(-(args.max_context + 512) // args.page_size)
    st = _PlannerState(torch, max(sizes), max(sizes) * width, dev)
    stock_idx = torch.zeros(max(sizes) * width, dtype=torch.int32, device=dev)
    armed, armed_msg = _detector_armed(torch)
    rows = []
    for mode in args.modes:
        rng = np.random.default_rng(args.seed)
        for bs in sizes:
            qo, computed, bt, q_dec = make_batch(rng, bs, mode, args.spec_tokens, args.page_size, args.max_context)
            threshold = q_dec if mode == "spec" else 1
            bt_dev = torch.from_numpy(bt).to(dev)
            seq_dev = torch.from_numpy(planning.host_seq_lens(computed, qo)).to(dev)
            qo_cpu = torch.from_numpy(qo)
            ours = lambda qo=qo, computed=computed, bt_dev=bt_dev, threshold=threshold: _planner_step(  # noqa: E731
                st, qo, computed, bt_dev, threshold, args.page_size, gather)
            stock = lambda seq_dev=seq_dev, qo_cpu=qo_cpu, bt_dev=bt_dev: _stock_like_step(  # noqa: E731
                torch, seq_dev, qo_cpu, bt_dev, stock_idx, args.page_size, gather)
            plan = ours()
            indptr, last, split = plan.paged_kv_indptr.copy(), plan.last_page_len.copy(), plan.split
            torch.cuda.synchronize()
            n, total = bs, int(indptr[bs])
            # what reached the device equals the host planner and the host gather reference
            ref_idx = planning.paged_kv_indices(bt, indptr, np.zeros(total + 1, np.int32))
            dev_ok = (st.dev["indptr"][: n + 1].cpu().numpy().tolist() == indptr.tolist()
                      and st.dev["last"][:n].cpu().numpy().tolist() == last.tolist()
                      and st.idx_dev[:total].cpu().numpy().tolist() == ref_idx.tolist())
            t_ours = _time(ours, args.iters, args.warmup, torch)
            t_stock = _time(stock, args.iters, args.warmup, torch)
            torch.cuda.synchronize()
            s_ours, m_ours = _syncs(ours)
            torch.cuda.synchronize()
            s_stock, m_stock = _syncs(stock)
            torch.cuda.synchronize()
            rows.append({"mode": mode, "batch_size": bs, "num_tokens": int(qo[-1]), "num_pages": total,
                         "split": list(map(int, split)), "device_arrays_match_planner": bool(dev_ok),
                         "host_planner_us": t_ours, "stock_like_us": t_stock,
                         "host_planner_syncs": s_ours, "host_planner_sync_message": m_ours,
                         "stock_like_syncs": s_stock, "stock_like_sync_message": m_stock})
            print(f"{mode:6s} bs={bs:4d} ours {t_ours['median_us']:8.1f} us syncs={s_ours} | "
                  f"stock-like {t_stock['median_us']:8.1f} us syncs={s_stock} | device ok={dev_ok}", flush=True)
    return {"bench": "planner-only", "gather": gather_name, "sync_steps": SYNC_STEPS,
            "detector_armed": armed, "detector_message": armed_msg, "rows": rows}


# ----------------------------------------------------------------------------- full (vLLM)
def _make_builders(torch, num_spec: int, page_size: int, max_seqs: int, max_len: int,
                   max_tokens: int, use_trtllm: bool | None, device: str = "cuda"):
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

    # The attention shape of check-flashinfer-host's engine model (Qwen2.5-0.5B: 14/2 heads of
    # 64): FlashInfer JIT-compiles per head size, so this run also warms the engine's kernels.
    heads, kv_heads, head_dim = 14, 2, 64
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
                    scheduler_config=SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=max_tokens,
                                                     max_model_len=max_len, is_encoder_decoder=False),
                    attention_config=AttentionConfig(backend="FLASHINFER_HOST", use_trtllm_attention=use_trtllm))
    vc.cache_config.kv_cache_layout = "HND"  # what the engine core resolves for FlashInfer

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
        dev = torch.device(device)
        stock = FlashInferMetadataBuilder(spec, names, vc, dev)
        ours = FlashInferHostBackend.get_builder_cls()(spec, names, vc, dev)
    return vc, stock, ours


def builder_facts(b) -> dict:
    """What decides which paths build() takes (for reading the JSON)."""
    kernel = b.flashinfer_trtllm_api_decode_kernel
    return {"enable_cuda_graph": bool(b.enable_cuda_graph), "use_xqa": bool(b.use_xqa),
            "use_trtllm_decode_attention": bool(b.use_trtllm_decode_attention),
            "decode_kernel": None if kernel is None else kernel.value,
            "reorder_batch_threshold": b.reorder_batch_threshold, "max_num_reqs": b.max_num_reqs}


def make_cam(torch, dev, qo, computed, block_table):
    """One CommonAttentionMetadata as GPUModelRunner fills it (seq_lens_cpu_upper_bound =
    num_computed_tokens + num_scheduled_tokens), device tensors already on the GPU."""
    from vllm.v1.attention.backend import CommonAttentionMetadata

    seq = planning.host_seq_lens(computed, qo)
    qo_t = torch.from_numpy(qo.copy())
    return CommonAttentionMetadata(
        query_start_loc=qo_t.to(dev),
        query_start_loc_cpu=qo_t.pin_memory() if torch.device(dev).type == "cuda" else qo_t.clone(),
        seq_lens=torch.from_numpy(seq).to(dev), num_reqs=len(seq), num_actual_tokens=int(qo[-1]),
        max_query_len=int((qo[1:] - qo[:-1]).max()), max_seq_len=int(seq.max()),
        block_table_tensor=torch.from_numpy(block_table).to(dev),
        slot_mapping=torch.zeros(int(qo[-1]), dtype=torch.int64, device=dev),
        seq_lens_cpu_upper_bound=torch.from_numpy(seq.copy()))


def run_full(args, torch) -> dict:
    from vllm.config import set_current_vllm_config

    sizes = [int(x) for x in args.batch_sizes.split(",")]
    max_len = args.max_context + 1024
    dev = torch.device("cuda")
    # every batch first (host state), so the builders' token budget covers the largest one
    batches = {}
    for mode in args.modes:
        rng = np.random.default_rng(args.seed)
        for bs in sizes:
            qo, computed, _, _ = make_batch(rng, bs, mode, args.spec_tokens, args.page_size, args.max_context)
            width = -(-max_len // args.page_size)
            bt = rng.permutation(bs * width).reshape(bs, width).astype(np.int32)
            batches[mode, bs] = (qo, computed, bt)
    max_tokens = max(16384, max(int(b[0][-1]) for b in batches.values()))
    use_trtllm = False if args.no_trtllm else None
    builders = {}  # num_speculative_tokens -> (vllm_config, stock, ours)
    armed, armed_msg = _detector_armed(torch)
    rows = []
    for mode in args.modes:
        num_spec = args.spec_tokens if mode == "spec" else 0
        if num_spec not in builders:
            builders[num_spec] = _make_builders(torch, num_spec, args.page_size, max(sizes), max_len,
                                                max_tokens, use_trtllm)
        vc, stock, ours = builders[num_spec]
        cams = {bs: make_cam(torch, dev, *batches[mode, bs]) for bs in sizes}  # built once, shared
        torch.cuda.synchronize()
        for bs in sizes:
            cam = cams[bs]
            row = {"mode": mode, "batch_size": bs, "num_tokens": cam.num_actual_tokens}
            with set_current_vllm_config(vc):
                decision = ours._decide(cam)
                row["host_path"] = decision if isinstance(decision, str) else "host"
                before = (ours.host_builds, dict(ours.fallback_counts))
                fns = {name: (lambda b=b, cam=cam: b.build(0, cam)) for name, b in (("stock", stock), ("host", ours))}
                md = {name: fn() for name, fn in fns.items()}
                alone = _time_alternating(fns, args.iters, args.warmup, torch)
                for name, fn in fns.items():
                    row[f"{name}_us"] = alone[name]
                    # back to back, no synchronisation between builds (queued GPU work included)
                    row[f"{name}_queued_us"] = _time(fn, args.iters, args.warmup, torch)
                    torch.cuda.synchronize()
                    row[f"{name}_syncs"], row[f"{name}_sync_message"] = _syncs(fn)
                    torch.cuda.synchronize()
            split = lambda m: [m.num_decodes, m.num_prefills, m.num_decode_tokens, m.num_prefill_tokens]  # noqa: E731
            row["split"] = split(md["host"])
            row["same_split"] = split(md["host"]) == split(md["stock"])
            row["host_builds"] = ours.host_builds - before[0]
            row["host_fallbacks"] = {k: v - before[1].get(k, 0) for k, v in ours.fallback_counts.items()
                                     if v != before[1].get(k, 0)}
            rows.append(row)
            print(f"{mode:6s} bs={bs:4d} stock {row['stock_us']['median_us']:8.1f} us syncs={row['stock_syncs']} | "
                  f"host {row['host_us']['median_us']:8.1f} us syncs={row['host_syncs']} ({row['host_path']}) | "
                  f"host/stock {row['host_us']['median_us'] / row['stock_us']['median_us']:.2f} | queued "
                  f"{row['stock_queued_us']['median_us']:.0f}/{row['host_queued_us']['median_us']:.0f} us",
                  flush=True)
    return {"bench": "full", "sync_steps": SYNC_STEPS, "detector_armed": armed, "detector_message": armed_msg,
            "builders": {str(k): builder_facts(v[2]) for k, v in builders.items()}, "rows": rows}


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
    if not args.planner_only:
        import vllm
        result["vllm"] = vllm.__version__
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    key = "host_planner_syncs" if args.planner_only else "host_syncs"
    ok = result["detector_armed"] and all(r[key] == 0 for r in result["rows"])
    if args.planner_only:
        ok = ok and all(r["device_arrays_match_planner"] for r in result["rows"])
    return 0 if ok else 1
