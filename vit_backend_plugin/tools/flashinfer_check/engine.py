"""What runs inside a child: the ``vllm.LLM`` and each phase's engine code (parity, decode,
decode_paired)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from vit_backend_plugin.tools.decode_stats import (
    ROLES,
    decode_row,
    pair_order,
    paired_decode_stats,
    paired_line,
)
from vit_backend_plugin.tools.flashinfer_check.counter import wrap_builders
from vit_backend_plugin.tools.flashinfer_check.model import (
    SPEC_CONFIG,
    parity_prompts,
    redraw_weights,
)


def _llm(model_dir: Path, backend: str, **kw):
    from vllm import LLM

    return LLM(model=str(model_dir), load_format="dummy", attention_backend=backend, seed=0,
               dtype="bfloat16", enable_prefix_caching=False, **kw)


def child_parity(model_dir: Path, backend: str, spec: bool, vllm_check: bool, cudagraphs: bool = False) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    # vLLM's own checker owns the sync-debug mode and warning hook when it runs: time only then
    counter = wrap_builders(backend, count_syncs=not vllm_check)
    kw = {"speculative_config": dict(SPEC_CONFIG)} if spec else {}
    llm = _llm(model_dir, backend, enforce_eager=not cudagraphs, max_model_len=2048, max_num_seqs=32,
               max_num_batched_tokens=512, gpu_memory_utilization=0.5, disable_log_stats=False, **kw)
    redrawn = llm.apply_model(redraw_weights)[0]
    prompts = [TokensPrompt(prompt_token_ids=p) for p in parity_prompts(seed=7)]
    params = SamplingParams(temperature=0.0, max_tokens=96, ignore_eos=True, detokenize=False)
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - t0
    builder = counter.builder_stats()
    # vLLM's own counters: how many drafts the n-gram proposer made and how many were accepted
    spec_metrics = {m.name.removeprefix("vllm:"): getattr(m, "value", None) for m in llm.get_metrics()
                    if m.name.startswith("vllm:spec_decode_num_")}
    return {"backend": backend, "spec": spec, "vllm_gpu_sync_check": os.environ.get("VLLM_GPU_SYNC_CHECK"),
            "redrawn_params": redrawn, "wall_s": wall,
            "tokens": [list(o.outputs[0].token_ids) for o in outs],
            "counter": counter.as_dict(), "builder": builder, "spec_decode": spec_metrics,
            "attention_backend_in_engine": _engine_backend_name(llm)}


def attention_backend_names(model) -> list[str]:
    """Names of the attention backends the model's layers run (applied inside the engine)."""
    found = set()
    for m in model.modules():
        get = getattr(m, "get_attn_backend", None)
        if callable(get):
            try:
                found.add(get().get_name())
            except Exception:  # noqa: BLE001 - a description only
                pass
    return sorted(found)


def _engine_backend_name(llm) -> list[str]:
    # apply_model pickles the function by reference, and an engine-core process (decode_paired)
    # must import it by name: it lives here, never in ``__main__`` (a child runs the package's
    # __main__.py as ``-m``, which only calls cli.main)
    return llm.apply_model(attention_backend_names)[0]


def _decode_prompts(rng, bs: int) -> list:
    """Seed 003's decode load: ``bs`` prompts of 256 random token ids."""
    from vllm.inputs import TokensPrompt

    return [TokensPrompt(prompt_token_ids=rng.integers(10, 4000, 256).tolist()) for _ in range(bs)]


def _timed_generation(llm, batch: list, max_tokens: int) -> float:
    """Wall seconds of one greedy generation of exactly ``max_tokens`` per prompt."""
    from vllm import SamplingParams

    p = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, detokenize=False)
    t0 = time.perf_counter()
    outs = llm.generate(batch, p, use_tqdm=False)
    wall = time.perf_counter() - t0
    assert all(len(o.outputs[0].token_ids) == max_tokens for o in outs)
    return wall


def child_decode(model_dir: Path, backend: str, sizes: list[int], repeats: int, cudagraphs: bool) -> dict:
    import numpy as np

    counter = wrap_builders(backend, count_syncs=False)
    llm = _llm(model_dir, backend, enforce_eager=not cudagraphs, max_model_len=1024,
               max_num_seqs=max(sizes), gpu_memory_utilization=0.6)
    llm.apply_model(redraw_weights)
    rng = np.random.default_rng(11)

    def timed(bs, max_tokens):
        return _timed_generation(llm, _decode_prompts(rng, bs), max_tokens)

    rows = []
    timed(max(sizes), 8)  # warm-up at the largest batch
    for bs in sizes:
        timed(bs, 4)
        b0, s0 = counter.builds, counter.build_host_s
        full = [timed(bs, 128) for _ in range(repeats)]
        first = [timed(bs, 1) for _ in range(repeats)]
        # host time of build() per step in this batch size's timed generations
        build_us = (counter.build_host_s - s0) / max(counter.builds - b0, 1) * 1e6
        rows.append({**decode_row(bs, full, first), "mean_build_host_us": build_us,
                     "builds": counter.builds - b0})
        print(f"{backend} bs={bs:4d} TPOT {rows[-1]['tpot_ms']:.3f} ms  "
              f"{rows[-1]['output_tokens_per_s']:.0f} tok/s  build() {build_us:.0f} us host", flush=True)
    return {"backend": backend, "cudagraphs": cudagraphs, "rows": rows, "counter": counter.as_dict(),
            "builder": counter.builder_stats(), "attention_backend_in_engine": _engine_backend_name(llm)}


def child_decode_paired(model_dir: Path, backends: list[str], sizes: list[int], repeats: int,
                        cudagraphs: bool, gpu_memory: float) -> dict:
    """Both engines alive in this process's client, each with its own engine-core process;
    per batch size a warm-up on each, then ``repeats`` pairs in :func:`pair_order`, each engine
    timing a 128-token and a 1-token generation of the pair's prompts. Timing only: the
    weights stay vLLM's dummy ones (``ignore_eos`` keeps every length fixed)."""
    import numpy as np

    llms = {role: _llm(model_dir, b, enforce_eager=not cudagraphs, max_model_len=1024,
                       max_num_seqs=max(sizes), gpu_memory_utilization=gpu_memory)
            for role, b in zip(ROLES, backends, strict=True)}
    in_engine = {r: _engine_backend_name(llm) for r, llm in llms.items()}
    rng = np.random.default_rng(11)

    def timed(role, batch, max_tokens):
        return _timed_generation(llms[role], batch, max_tokens)

    warm = _decode_prompts(rng, max(sizes))
    for role in ROLES:
        timed(role, warm, 8)  # warm-up at the largest batch
    rows = []
    for bs in sizes:
        warm = _decode_prompts(rng, bs)
        for role in ROLES:
            timed(role, warm, 4)
        pairs = []
        for i in range(repeats):
            batch = _decode_prompts(rng, bs)  # the same prompts for both engines of the pair
            first = pair_order(i)
            t128, t1 = {}, {}
            for role in first:
                t128[role] = timed(role, batch, 128)
                t1[role] = timed(role, batch, 1)
            pairs.append({"first": first[0], "t128_s": t128, "t1_s": t1})
        rows.append({**paired_decode_stats(bs, pairs), "pair_timings": pairs})
        print(paired_line(rows[-1]), flush=True)
    return {"backends": dict(zip(ROLES, backends, strict=True)), "cudagraphs": cudagraphs,
            "gpu_memory_utilization": gpu_memory, "repeats": repeats, "rows": rows,
            "attention_backend_in_engine": in_engine}
