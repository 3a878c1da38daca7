"""``vit-parity check-flashinfer-host``: FLASHINFER vs FLASHINFER_HOST inside a real vLLM engine.

Each (backend, phase) runs ``vllm.LLM`` in its own child process, on a decoder with dummy
weights (a Qwen2.5-0.5B-shaped ``config.json`` plus the demo tokenizer, ``load_format="dummy"``,
weights re-drawn from a seeded N(0, 0.02) so greedy text is not degenerate):

* ``parity``: greedy generation over prompts of mixed lengths with a small token budget, so
  steps mix chunked prefills and decodes; once without and once with n-gram speculative
  decoding. The engine core runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so every
  ``build()`` of the FlashInfer metadata builder in use is wrapped by a counter of the host
  synchronisations torch sees (:mod:`.sync_count`). The parent compares token ids and counts.
* ``decode``: seed 003's shape, 256 input tokens and 128 output tokens at batch sizes 1..256:
  wall time of ``max_tokens=128`` and ``max_tokens=1`` generations give TPOT and output tokens/s.
  No counter is installed in this phase (it costs host time).
* ``decode_paired``: the same shape, with both engines alive in ONE child (each with its own
  engine-core process, vLLM's multiprocess client) and timed alternately, stock then ours in
  even pairs and ours then stock in odd ones, on the same prompts; the ratio is taken per pair
  so drift between engines started at different times cancels (:func:`paired_decode_stats`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
import zlib
from pathlib import Path

from vit_backend_plugin.tools.decode_stats import (
    ROLES,
    decode_row,
    pair_order,
    paired_decode_stats,
    paired_line,
    pooled_pair_stats,
)

BACKENDS = ("FLASHINFER", "FLASHINFER_HOST")
PHASES = ("parity", "decode", "decode_paired")
# Qwen2.5-0.5B's text shape (head size 64, GQA 14/2, 24 layers).
DECODER_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
    "intermediate_size": 4864, "num_attention_heads": 14, "num_key_value_heads": 2,
    "num_hidden_layers": 24, "vocab_size": 151936, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16", "hidden_act": "silu", "sliding_window": None,
    "use_sliding_window": False, "bos_token_id": 0, "eos_token_id": 1,
}
SPEC_CONFIG = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for the per-child JSON and summary.json")
    parser.add_argument("--phases", default="parity,decode",
                        help="comma-separated: parity, decode, decode_paired")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="stock first, ours second; decode_paired takes exactly two (any two "
                             "backends the platform runs, e.g. CPU_ATTN,CPU_ATTN for its mechanics)")
    parser.add_argument("--parity-modes", default="no_spec,spec_ngram",
                        help="comma-separated: no_spec, spec_ngram (n-gram speculative decoding)")
    parser.add_argument("--decode-batch-sizes", default="1,2,4,8,16,32,64,128,256")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per decode batch size")
    parser.add_argument("--rounds", type=int, default=1,
                        help="decode phase: engines per backend, started in ABBA order (stock, ours, "
                             "ours, stock, ...); each batch size's medians pool every round's repeats")
    parser.add_argument("--paired-gpu-memory", type=float, default=0.35,
                        help="decode_paired: gpu_memory_utilization of each of the two engines (both "
                             "share one GPU; vLLM's CPU platform sizes its cache from VLLM_CPU_KVCACHE_SPACE)")
    parser.add_argument("--cudagraphs", action="store_true",
                        help="both phases with vLLM's default compilation and CUDA graphs "
                             "(default: enforce_eager)")
    parser.add_argument("--model-runner", choices=["default", "v1", "v2"], default="default",
                        help="vLLM's model runner (0.32 uses V2 on CUDA by default)")
    parser.add_argument("--v2-spec-host", choices=["default", "on", "off"], default="default",
                        help="VIT_FLASHINFER_HOST_V2_SPEC for the children: FLASHINFER_HOST plans V2-runner "
                             "spec-decode steps on the host (on by default since the H100 check)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per child")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)


# ----------------------------------------------------------------------------- model
def make_model_dir(root: Path) -> Path:
    """A weightless Qwen2.5-0.5B-shaped model folder with the demo tokenizer."""
    from vit_backend_plugin.harness.demo_assets import ensure_demo_assets

    d = root / "decoder_qwen2_5_0_5b_shape"
    if (d / "config.json").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    demo = ensure_demo_assets().model_dir
    for name in TOKENIZER_FILES:
        if (demo / name).is_file():
            shutil.copy(demo / name, d / name)
    (d / "config.json").write_text(json.dumps(DECODER_CONFIG, indent=1))
    return d


def redraw_weights(model) -> int:
    """Seeded N(0, 0.02) weights (norm weights 1) so both processes hold the same, non-flat model."""
    import torch

    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not torch.is_floating_point(p):
                continue
            if "norm" in name:
                p.fill_(1.0)
            else:
                g = torch.Generator(device=p.device).manual_seed(zlib.crc32(name.encode()))
                p.copy_(torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32) * 0.02)
            n += 1
    return n


def parity_prompts(seed: int, n: int = 48, vocab: int = 4000) -> list[list[int]]:
    """Token prompts of 8..700 tokens; each repeats a motif so n-gram lookup proposes drafts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(n):
        length = int(rng.integers(8, 700))
        motif = rng.integers(10, vocab, int(rng.integers(4, 24))).tolist()
        body = (motif * (length // len(motif) + 1))[:length]
        noise = rng.integers(0, length, length // 10)
        for j in noise:
            body[int(j)] = int(rng.integers(10, vocab))
        prompts.append(body)
    return prompts


# ----------------------------------------------------------------------------- the counter
class BuildCounter:
    """Wraps ``build()`` of the builder classes in use; per outermost build: host seconds and,
    with ``count_syncs`` (parity phase), host syncs. Timing alone costs two perf_counter calls,
    so the decode phase keeps it on: it says whether ``build()`` explains a throughput gap."""

    def __init__(self, count_syncs: bool = True):
        self.count_syncs = count_syncs
        self.builds = 0
        self.build_host_s = 0.0
        self.syncs = 0
        self.builds_with_sync = 0
        self.first_message: str | None = None
        self.mixed_builds = 0  # steps with both decode rows and longer (prefill) rows
        self.max_reqs = 0
        self._depth = threading.local()
        self._builders: dict[int, object] = {}  # every builder seen (the engine keeps them alive)

    def wrap(self, cls) -> None:
        from vit_backend_plugin.tools.sync_count import count_syncs

        original = cls.build
        counter = self

        def build(self_b, *args, **kwargs):  # vLLM passes positionally or by keyword
            depth = getattr(counter._depth, "v", 0)
            if depth:  # our builder's fallback calls stock build(): count once
                return original(self_b, *args, **kwargs)
            cam = kwargs["common_attn_metadata"] if "common_attn_metadata" in kwargs else args[1]
            counter._depth.v = 1
            counter._builders[id(self_b)] = self_b
            t0 = time.perf_counter()
            try:
                if counter.count_syncs:
                    md, n, msg = count_syncs(lambda: original(self_b, *args, **kwargs))
                else:
                    md, n, msg = original(self_b, *args, **kwargs), 0, None
            finally:
                counter._depth.v = 0
            counter.build_host_s += time.perf_counter() - t0
            counter.record(cam, n, msg, getattr(self_b, "reorder_batch_threshold", 1) or 1)
            return md

        cls.build = build

    def record(self, cam, n: int, msg: str | None, threshold: int) -> None:
        q = cam.query_start_loc_cpu[: cam.num_reqs + 1]
        lens = (q[1:] - q[:-1]).tolist()
        self.builds += 1
        self.syncs += n
        self.builds_with_sync += bool(n)
        self.first_message = self.first_message or msg
        self.max_reqs = max(self.max_reqs, cam.num_reqs)
        short = [x for x in lens if x <= threshold]
        self.mixed_builds += bool(short) and len(short) < len(lens)

    def builder_stats(self) -> dict:
        """host_builds / fallback_counts of the FLASHINFER_HOST builders seen (zeros for stock)."""
        out = {"builders": len(self._builders), "host_builds": 0, "fallback_counts": {}}
        for b in self._builders.values():
            out["host_builds"] += getattr(b, "host_builds", 0)
            for k, v in getattr(b, "fallback_counts", {}).items():
                out["fallback_counts"][k] = out["fallback_counts"].get(k, 0) + v
        return out

    def as_dict(self) -> dict:
        d = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        d["mean_build_host_us"] = self.build_host_s / self.builds * 1e6 if self.builds else None
        return d


def wrap_builders(backend: str, count_syncs: bool) -> BuildCounter:
    """A counter around the stock builder and, for FLASHINFER_HOST, ours (its fallback calls
    stock's build(): counted once)."""
    from vllm.v1.attention.backends.flashinfer import FlashInferMetadataBuilder

    counter = BuildCounter(count_syncs=count_syncs)
    counter.wrap(FlashInferMetadataBuilder)
    if backend == "FLASHINFER_HOST":
        from vit_backend_plugin.flashinfer_host.builder import FlashInferHostMetadataBuilder

        counter.wrap(FlashInferHostMetadataBuilder)
    return counter


# ----------------------------------------------------------------------------- children
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
    # this module under its import name: a child runs it as ``-m`` (``__main__``), whose functions
    # an engine-core process (decode_paired) cannot unpickle by reference
    from vit_backend_plugin.tools import flashinfer_check as engine_check

    return llm.apply_model(engine_check.attention_backend_names)[0]


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


def pool_decode_rounds(results: list[dict]) -> list[dict]:
    """One backend's decode children (one per round) as one row per batch size, every round's
    repeats pooled before the medians."""
    by_bs: dict[int, tuple[list, list]] = {}
    build_us: dict[int, list] = {}
    for res in results:
        for r in res["rows"]:
            t128, t1 = by_bs.setdefault(r["batch_size"], ([], []))
            t128 += r["t128_s"]
            t1 += r["t1_s"]
            if r.get("mean_build_host_us") is not None:
                build_us.setdefault(r["batch_size"], []).append(r["mean_build_host_us"])
    return [{**decode_row(bs, *ts),
             **({"mean_build_host_us": statistics.fmean(build_us[bs])} if bs in build_us else {})}
            for bs, ts in by_bs.items()]


def abba(backends: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, backend) in start order: stock, ours, ours, stock, ... so drift hits both alike."""
    return [(r, b) for r in range(rounds) for b in (backends if r % 2 == 0 else backends[::-1])]


def child_name(spec: dict) -> str:
    runner = spec.get("model_runner", "default")
    return (f"{spec['phase']}_{spec['backend']}{'_spec' if spec.get('spec') else ''}"
            f"{'_cudagraphs' if spec.get('cudagraphs') else ''}{'_r' + str(spec['round']) if spec.get('round') else ''}"
            f"{'_vllmcheck' if spec.get('vllm_check') else ''}{'' if runner == 'default' else '_' + runner}"
            f"{'' if spec.get('v2_spec_host', 'default') == 'default' else '_v2spechost_' + spec['v2_spec_host']}")


def run_child(spec: dict) -> dict:
    if spec["phase"] == "decode_paired":
        # one engine-core process per LLM (vLLM's multiprocess client, its own ZMQ context and
        # IPC paths per instance): neither engine shares a Python process with the other or with
        # the timing loop. Spawned, not forked from a process whose first client runs threads.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
        os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
        # apply_model (the backend-name check) pickles its function across the process boundary
        os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
    else:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in this process
    if spec.get("v2_spec_host", "default") != "default":
        from vit_backend_plugin.flashinfer_host.builder import V2_SPEC_ENV

        os.environ[V2_SPEC_ENV] = "1" if spec["v2_spec_host"] == "on" else "0"
    if spec.get("model_runner") in ("v1", "v2"):
        os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "1" if spec["model_runner"] == "v2" else "0"
    if spec.get("vllm_check"):
        # vLLM's own detector: torch's sync-debug "warn" plus checks of pageable
        # non_blocking copies, raising on any sync in execute_model outside gpu_sync_allowed().
        os.environ["VLLM_GPU_SYNC_CHECK"] = "error"
    model_dir = Path(spec["model_dir"])
    if spec["phase"] == "decode_paired":
        return child_decode_paired(model_dir, spec["backends"], spec["sizes"], spec["repeats"],
                                   spec["cudagraphs"], spec["gpu_memory"])
    if spec["phase"] == "decode":
        return child_decode(model_dir, spec["backend"], spec["sizes"], spec["repeats"], spec["cudagraphs"])
    return child_parity(model_dir, spec["backend"], spec["spec"], bool(spec.get("vllm_check")),
                        bool(spec.get("cudagraphs")))


# ----------------------------------------------------------------------------- parent
def compare_parity(results: dict[str, dict]) -> dict:
    """Token-for-token comparison of each backend with the first one (stock)."""
    base_name = next(iter(results))
    base = results[base_name]["tokens"]
    out = {}
    for name, r in results.items():
        diff = [i for i, (a, b) in enumerate(zip(base, r["tokens"], strict=True)) if a != b]
        out[name] = {"identical": not diff, "differing_prompts": diff,
                     "tokens": sum(len(t) for t in r["tokens"])}
    return out


def _spawn(spec: dict, out: Path, args) -> dict | None:
    """One child through the harness's runner: it kills the child's whole process group on a
    timeout and waits until it is gone, so the next engine finds the GPU memory free."""
    from vit_backend_plugin.harness.commands import PhaseCommand
    from vit_backend_plugin.harness.runner import run_child

    spec = {**spec, "model_runner": args.model_runner, "v2_spec_host": args.v2_spec_host}
    path = out / f"{child_name(spec)}.json"
    cmd = PhaseCommand(argv=[sys.executable, "-m", "vit_backend_plugin.tools.flashinfer_check",
                             "--out", str(out), "--child", json.dumps(spec)], env={})
    print(f"[check-flashinfer-host] {path.stem} ...", flush=True)
    res = run_child(cmd, path.with_suffix(".log"), timeout=args.timeout)
    if not res.ok or not path.is_file():
        print(f"[check-flashinfer-host] {path.stem} FAILED ({res.seconds:.0f} s): {res.error_text()}", flush=True)
        return None
    print(f"[check-flashinfer-host] {path.stem} done in {res.seconds:.0f} s", flush=True)
    return json.loads(path.read_text())


def main(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        spec = json.loads(args.child)
        res = run_child(spec)
        name = f"{child_name(spec)}.json"
        tmp = out / (name + ".tmp")
        tmp.write_text(json.dumps(res))
        os.replace(tmp, out / name)
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    phases = [p.strip() for p in args.phases.split(",")]
    if set(phases) - set(PHASES):
        print(f"[check-flashinfer-host] unknown phases {sorted(set(phases) - set(PHASES))}; "
              f"choices: {', '.join(PHASES)}", flush=True)
        return 2
    if "decode_paired" in phases and len(backends) != 2:
        print("[check-flashinfer-host] decode_paired takes two backends: stock,ours", flush=True)
        return 2
    model_dir = make_model_dir(out)
    prev = out / "summary.json"  # phases run by separate invocations accumulate in one summary
    summary: dict = json.loads(prev.read_text()) if prev.is_file() else {}
    summary.update({"model": DECODER_CONFIG, "spec_config": SPEC_CONFIG, "backends": backends,
                    "model_runner": args.model_runner, "v2_spec_host": args.v2_spec_host})
    ok = True
    if "parity" in phases:
        modes = [m.strip() for m in args.parity_modes.split(",")]
        for spec in [m == "spec_ngram" for m in modes]:
            res = {b: _spawn({"phase": "parity", "backend": b, "spec": spec, "cudagraphs": args.cudagraphs,
                              "model_dir": str(model_dir)}, out, args) for b in backends}
            key = (("spec_ngram" if spec else "no_spec") + ("_cudagraphs" if args.cudagraphs else "")
                   + ("" if args.model_runner == "default" else f"_{args.model_runner}")
                   + ("" if args.v2_spec_host == "default" else f"_v2spechost_{args.v2_spec_host}"))
            done = {b: r for b, r in res.items() if r is not None}
            entry = {"ran": sorted(done), "counters": {b: r["counter"] for b, r in done.items()},
                     "builder": {b: r["builder"] for b, r in done.items()},
                     "spec_decode": {b: r.get("spec_decode") for b, r in done.items()},
                     "in_engine": {b: r["attention_backend_in_engine"] for b, r in done.items()}}
            if len(done) == len(backends):
                entry["parity"] = compare_parity(done)
                ok &= all(v["identical"] for v in entry["parity"].values())
            else:
                ok = False
            host = entry["counters"].get("FLASHINFER_HOST")
            ok &= host is not None and host["syncs"] == 0 and host["builds"] > 0
            if "FLASHINFER_HOST" in backends:
                # The same engine run once more under vLLM's own sync checker, in error mode.
                chk = _spawn({"phase": "parity", "backend": "FLASHINFER_HOST", "spec": spec, "vllm_check": True,
                              "cudagraphs": args.cudagraphs, "model_dir": str(model_dir)}, out, args)
                entry["vllm_gpu_sync_check_error_mode"] = {
                    "completed": chk is not None,
                    "tokens_identical_to_counted_run": chk is not None and "FLASHINFER_HOST" in done
                    and chk["tokens"] == done["FLASHINFER_HOST"]["tokens"]}
                ok &= entry["vllm_gpu_sync_check_error_mode"]["tokens_identical_to_counted_run"]
                print(f"{key:10s} FLASHINFER_HOST under VLLM_GPU_SYNC_CHECK=error: "
                      f"{entry['vllm_gpu_sync_check_error_mode']}", flush=True)
            summary[key] = entry
            for b, c in entry["counters"].items():
                print(f"{key:10s} {b:16s} builds {c['builds']:5d} (mixed {c['mixed_builds']})  "
                      f"host syncs {c['syncs']:5d} in {c['builds_with_sync']} builds"
                      + (f"  identical={entry['parity'][b]['identical']}" if "parity" in entry else "")
                      + f"  drafts {(entry['spec_decode'].get(b) or {}).get('spec_decode_num_drafts')}",
                      flush=True)
    if "decode" in phases:
        sizes = [int(x) for x in args.decode_batch_sizes.split(",")]
        runs: dict[str, list] = {b: [] for b in backends}
        for rnd, b in abba(backends, args.rounds):
            runs[b].append(_spawn({"phase": "decode", "backend": b, "sizes": sizes, "repeats": args.repeats,
                                   "cudagraphs": args.cudagraphs, "round": rnd, "model_dir": str(model_dir)},
                                  out, args))
        # per-engine counts stay per round (rs[0]'s alone would pass for the pooled engines')
        dec = {b: ({**rs[0], "rounds": len(rs), "rows": pool_decode_rounds(rs),
                    "builder": [r.get("builder") for r in rs], "counter": [r.get("counter") for r in rs]}
                   if all(rs) else None)
               for b, rs in runs.items()}
        key = ("decode" + ("_cudagraphs" if args.cudagraphs else "")
               + ("" if args.model_runner == "default" else f"_{args.model_runner}"))
        summary[key] = {b: r for b, r in dec.items() if r is not None}
        if all(dec.values()) and sorted(backends) == sorted(BACKENDS):
            a, b = (dec[x]["rows"] for x in BACKENDS)  # stock, ours: whatever order they ran in
            summary[key + "_ratio_host_over_stock"] = [
                {"batch_size": ra["batch_size"], "tpot_stock_over_host": ra["tpot_ms"] / rb["tpot_ms"],
                 "tok_s_host_over_stock": rb["output_tokens_per_s"] / ra["output_tokens_per_s"],
                 # the fastest repeat of each: host jitter (the engine core shares its process
                 # with the timing loop) only ever adds time, so this bounds it from the other side
                 "tok_s_host_over_stock_best": min(ra["t128_s"]) / min(rb["t128_s"]),
                 "build_host_us_stock_host": [ra.get("mean_build_host_us"), rb.get("mean_build_host_us")]}
                for ra, rb in zip(a, b, strict=True)]
            for r in summary[key + "_ratio_host_over_stock"]:
                us = r["build_host_us_stock_host"]
                print(f"decode bs={r['batch_size']:4d} tok/s host/stock {r['tok_s_host_over_stock']:.3f} "
                      f"(best repeats {r['tok_s_host_over_stock_best']:.3f})  "
                      f"TPOT stock/host {r['tpot_stock_over_host']:.3f}  build() host us stock/ours "
                      f"{us[0] or 0:.0f}/{us[1] or 0:.0f}", flush=True)
            for b in backends:
                print(f"decode {b}: builder per round {dec[b]['builder']}", flush=True)
    if "decode_paired" in phases:
        sizes = [int(x) for x in args.decode_batch_sizes.split(",")]
        res = _spawn({"phase": "decode_paired", "backend": "_vs_".join(backends), "backends": backends,
                      "sizes": sizes, "repeats": args.repeats, "cudagraphs": args.cudagraphs,
                      "gpu_memory": args.paired_gpu_memory, "model_dir": str(model_dir)}, out, args)
        key = ("decode_paired" + ("_cudagraphs" if args.cudagraphs else "")
               + ("" if args.model_runner == "default" else f"_{args.model_runner}"))
        ok &= res is not None
        if res is not None:
            summary[key] = res
            summary[key + "_ratio_ours_over_stock"] = [
                {k: v for k, v in r.items() if k not in (*ROLES, "pair_timings")} for r in res["rows"]]
            for r in res["rows"]:
                print(paired_line(r), flush=True)
            pooled = summary[key + "_pooled"] = pooled_pair_stats(res["rows"])
            ci = pooled["tok_s_ours_over_stock_geomean_ci95"] or [float("nan")] * 2
            print(f"paired, all {pooled['pairs']} pairs: tok/s ours/stock geomean "
                  f"{pooled['tok_s_ours_over_stock_geomean']:.3f} [{ci[0]:.3f}-{ci[1]:.3f}] "
                  f"p(ours slower)={pooled['p_ours_slower_wilcoxon']}", flush=True)
            print(f"decode_paired {res['backends']} in engine {res['attention_backend_in_engine']}", flush=True)
    summary["ok"] = bool(ok) and summary.get("ok", True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    add_arguments(p)
    sys.exit(main(p.parse_args()))
