"""bench-builder full mode: vLLM's stock FlashInferMetadataBuilder against ours, same VllmConfig,
same CommonAttentionMetadata."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from vit_backend_plugin.flashinfer_host import planning
from vit_backend_plugin.tools.bench_builder.common import (
    SYNC_STEPS,
    _detector_armed,
    _syncs,
    _time,
    _time_alternating,
    make_batch,
)


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
