"""`vit-parity bench-kernels`: every ViT attention backend, side by side, on one GPU.

Default (when vLLM imports): **engine-faithful** -- each backend is an ``MMEncoderAttention``
built and called exactly as vLLM 0.32 builds and calls it, under vLLM's global settings (its CUDA
platform disables cuDNN SDPA at import; TORCH_SDPA runs one call per sequence after a host
``.tolist()``; FLASH_ATTN is vLLM's FA with the version vLLM picks; TRITON_ATTN is the installed
vLLM's kernel; the plugin's backends run through the plugin's layer and custom op). ``PICK`` is
the layer the resolver builds with no backend named (the per-process choice) and ``STOCK`` names
what stock vLLM would pick. See :mod:`vit_backend_plugin.tools.bench_vllm_layers`.

``--raw-kernels`` times the kernel functions directly instead (torch SDPA sub-backends, our
kernels, vLLM's FA/Triton kernels where importable): for kernel work, not for choosing backends.

Each candidate is checked against an fp32 reference (relative error ||out - ref|| / ||ref||; NaN
fails; outputs are NaN-poisoned first where a candidate takes ``out``), then timed with CUDA
events, several input sets rotated, in interleaved rounds (the candidates' order rotates each
round; each time is the median over rounds): eager one call at a time (triton.testing.do_bench,
L2 flushed), back to back (as an eager tower runs; the candidates' bursts of calls taking turns),
and as CUDA graphs (GPU time; the candidates' graphs replayed in turn, replay by replay).
TFLOP/s counts 4*S^2*D*H per sequence. Inputs are laid out as in Qwen2.5-VL's vision blocks: q, k
contiguous (after RoPE), v a strided view of the packed qkv tensor.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field

from vit_backend_plugin.kernels.capture import exact_inputs
from vit_backend_plugin.tools import (
    bench_vllm_layers as bench_vllm,  # imports vLLM only when called
)

# Default shapes (the issue's table): name, head_dim, per-sequence lengths; 16 heads, bf16.
DEFAULT_SHAPES: list[tuple[str, int, list[int]]] = [
    ("SigLIP d72, 32 x 729", 72, [729] * 32),
    ("InternViT d64, 32 x 1025", 64, [1025] * 32),
    ("Qwen2.5-VL d80, 16 x 1024", 80, [1024] * 16),
    ("Qwen2.5-VL d80, 4 x 4096", 80, [4096] * 4),
    ("Qwen2.5-VL d80, 1 x 16384", 80, [16384]),
    ("Qwen2.5-VL window d80, 256 x 64", 80, [64] * 256),
    ("mixed lengths d80", 80, [256, 1024, 4096, 729, 64, 2304, 576, 1600]),
    ("d128, 8 x 2048", 128, [2048] * 8),
]
# Shapes beyond the issue's table (issue 11): other head sizes and head counts, odd lengths,
# many short sequences (thumbnails, video frames), windows with ragged tails, fp16.
EXTENDED_SHAPES: list[tuple[str, int, list[int], int, str]] = [
    ("CLIP-L/14-336 d64, 32 x 577", 64, [577] * 32, 16, "bfloat16"),
    ("CLIP-B/16 d64 @12, 64 x 197", 64, [197] * 64, 12, "bfloat16"),
    ("thumbnails d80, 128 x 256", 80, [256] * 128, 16, "bfloat16"),
    ("video frames d72, 64 x 256", 72, [256] * 64, 16, "bfloat16"),
    ("windows ragged d80, 230 x 64 + tails", 80, [64] * 230 + [32] * 12 + [16] * 6 + [8, 40], 16, "bfloat16"),
    ("odd lengths d80", 80, [997, 1531, 263, 4099, 577, 1], 16, "bfloat16"),
    ("mixed d72", 72, [729, 256, 1024, 64, 576, 1369], 16, "bfloat16"),
    ("Llama-4 d88, 16 x 577", 88, [577] * 16, 16, "bfloat16"),
    ("d96, 16 x 1024", 96, [1024] * 16, 16, "bfloat16"),
    ("d128 @12, 16 x 1024", 128, [1024] * 16, 12, "bfloat16"),
    ("d128 mixed", 128, [2048, 512, 1024, 4096, 300], 16, "bfloat16"),
    ("fp16 SigLIP d72, 32 x 729", 72, [729] * 32, 16, "float16"),
    ("fp16 d80, 16 x 1024", 80, [1024] * 16, 16, "float16"),
    ("fp16 window d80, 256 x 64", 80, [64] * 256, 16, "float16"),
]
# Issue 3's reference numbers (H100, TFLOP/s): flash / cuDNN / stock vLLM triton, for context.
ISSUE_REFERENCE = {
    "SigLIP d72, 32 x 729": (185, 273, 30),
    "InternViT d64, 32 x 1025": (232, 319, 166),
    "Qwen2.5-VL d80, 16 x 1024": (239, 380, 153),
    "Qwen2.5-VL d80, 4 x 4096": (263, 421, 178),
    "Qwen2.5-VL d80, 1 x 16384": (274, 420, 191),
    "Qwen2.5-VL window d80, 256 x 64": (49, 57, 28),
    "mixed lengths d80": (194, 208, 164),
    "d128, 8 x 2048": (344, 605, 246),
}
# Per-sequence length buckets of the speed table (inclusive): windows/thumbnails, one image
# at ViT resolution, large images, very large images / video.
SEQ_BUCKETS: list[tuple[int, int]] = [(1, 128), (129, 1024), (1025, 4096), (4097, 1_000_000)]
# Candidates whose speed goes into the speed table, under the resolver's backend names.
TABLE_NAMES = ("TORCH_SDPA", "TORCH_SDPA_CUDNN", "VIT_TRITON", "VIT_AUTO", "TRITON_ATTN",
               "FLASH_ATTN", "FLASH_ATTN_UPSTREAM", "FLASHINFER")
# Candidates that are one backend (not a per-call dispatcher or the resolver's pick).
SINGLE_NAMES = ("TORCH_SDPA", "TORCH_SDPA_CUDNN", "VIT_TRITON", "TRITON_ATTN", "FLASH_ATTN",
                "FLASH_ATTN_UPSTREAM", "FLASHINFER")
REL_TOL = {"bfloat16": 2e-2, "float16": 5e-3, "float32": 1e-3}


@dataclass
class Shape:
    name: str
    head_dim: int
    lens: list[int]
    heads: int = 16
    kv_heads: int = 16
    dtype: str = ""  # "" = the run's --dtype

    @property
    def flops(self) -> float:
        return sum(4.0 * s * s * self.head_dim * self.heads for s in self.lens)

    @property
    def equal(self) -> bool:
        return len(set(self.lens)) == 1


@dataclass
class Result:
    candidate: str
    ms: float | None = None
    tflops: float | None = None
    rel_err: float | None = None
    numerics_ok: bool | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


def parse_shape(spec: str) -> Shape:
    """'[name=]D:BxS[@H[/Hkv]]' or '[name=]D:l1,l2,...[@H[/Hkv]]', e.g. 'd80:16x1024', '80:64,729@16'."""
    name, _, body = spec.rpartition("=")
    m = re.fullmatch(r"d?(\d+):([\dx,]+)(?:@(\d+)(?:/(\d+))?)?", body.strip())
    if not m:
        raise ValueError(f"bad shape {spec!r}; want D:BxS or D:l1,l2,.. (optionally @heads[/kv_heads])")
    d, lens_s, h, hkv = m.groups()
    if "x" in lens_s:
        b, s = lens_s.split("x")
        lens = [int(s)] * int(b)
    else:
        lens = [int(x) for x in lens_s.split(",") if x]
    h = int(h or 16)
    return Shape(name or f"d{d}:{lens_s}@{h}", int(d), lens, h, int(hkv or h))


def seq_bucket(lens: list[int]) -> tuple[int, int]:
    lo = next(b for b in SEQ_BUCKETS if b[0] <= min(lens) <= b[1])[0]
    hi = next(b for b in SEQ_BUCKETS if b[0] <= max(lens) <= b[1])[1]
    return lo, hi


# ------------------------------------------------------------------ candidates


def _candidates(torch, dtype):
    """name -> (fn(inputs) -> out, note). Each fn takes the prepared input dict."""
    from torch.nn.attention import SDPBackend

    from vit_backend_plugin.kernels.auto import vit_auto_attention
    from vit_backend_plugin.kernels.sdpa_cudnn import sdpa_cudnn_attention, sdpa_varlen
    from vit_backend_plugin.kernels.triton_vit import vit_attention

    c = {}
    c["TORCH_SDPA"] = (lambda x: sdpa_varlen(x["q"], x["k"], x["v"], x["cu"], x["max"], None, None), "default dispatch")
    c["SDPA_FLASH"] = (lambda x: sdpa_varlen(x["q"], x["k"], x["v"], x["cu"], x["max"], None,
                                             [SDPBackend.FLASH_ATTENTION]), "")
    c["SDPA_EFFICIENT"] = (lambda x: sdpa_varlen(x["q"], x["k"], x["v"], x["cu"], x["max"], None,
                                                 [SDPBackend.EFFICIENT_ATTENTION]), "")
    c["TORCH_SDPA_CUDNN"] = (lambda x: sdpa_cudnn_attention(x["q"], x["k"], x["v"], x["cu"], x["max"]), "ours")

    def nested(x):
        import torch.nn.functional as F
        from torch.nn.attention import sdpa_kernel

        offs = x["cu"].long()
        q, k, v = (torch.nested.nested_tensor_from_jagged(t, offs, max_seqlen=x["max"]).transpose(1, 2)
                   for t in (x["q"], x["k"], x["v"]))
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            o = F.scaled_dot_product_attention(q, k, v)
        return o.transpose(1, 2).values()

    c["SDPA_CUDNN_NESTED"] = (nested, "mixed only")
    try:
        import inspect

        from torch.nn.attention.varlen import varlen_attn

        has_scale = "scale" in inspect.signature(varlen_attn).parameters

        def varlen(x):
            kw = {"scale": 1.0 / math.sqrt(x["q"].shape[-1])} if has_scale else {}
            return varlen_attn(x["q"], x["k"], x["v"], x["cu"], x["cu"], x["max"], x["max"], **kw)

        c["TORCH_VARLEN"] = (varlen, "")
    except Exception as e:  # noqa: BLE001 -- older torch
        c["TORCH_VARLEN"] = (None, f"unavailable: {type(e).__name__}: {e}")
    c["VIT_TRITON"] = (lambda x: vit_attention(x["q"], x["k"], x["v"], x["cu"], x["max"], out=x.get("out")), "ours")
    c["VIT_AUTO"] = (lambda x: vit_auto_attention(x["q"], x["k"], x["v"], x["cu"], x["max"]),
                     "ours: per call, VIT_TRITON or cuDNN from the installed speed table")

    try:
        from vllm.v1.attention.ops.triton_prefill_attention import context_attention_fwd
    except Exception as e:  # noqa: BLE001 -- no vLLM here: reported, never copied
        context_attention_fwd = None
        stock_note = f"unavailable (needs vLLM): {type(e).__name__}"
    else:
        stock_note = "vllm"

    def stock(x):
        # As vllm's triton_attn_wrapper does: b_start_loc/b_seq_len from cu_seqlens, non-causal.
        q = x["q"]
        o = torch.empty_like(q)
        cu = x["cu"]
        context_attention_fwd(q, x["k"], x["v"], o, b_start_loc=cu[:-1], b_seq_len=cu[1:] - cu[:-1],
                              max_input_len=x["max"], is_causal=False, softmax_scale=None)
        return o

    c["TRITON_ATTN"] = (stock if context_attention_fwd else None, stock_note)

    # FlashAttention, where importable (a user's vLLM GPU env; `vit-parity tune` then measures it).
    def fa(fn, extra):
        return lambda x: fn(x["q"], x["k"], x["v"], cu_seqlens_q=x["cu"], cu_seqlens_k=x["cu"],
                            max_seqlen_q=x["max"], max_seqlen_k=x["max"], causal=False, **extra)

    try:
        from vllm.v1.attention.backends.fa_utils import (
            flash_attn_varlen_func,
            get_flash_attn_version,
        )

        c["FLASH_ATTN"] = (fa(flash_attn_varlen_func, {"fa_version": get_flash_attn_version()}), "vllm")
    except Exception as e:  # noqa: BLE001 -- no vLLM CUDA build here
        c["FLASH_ATTN"] = (None, f"unavailable: {type(e).__name__}")
    try:
        from flash_attn import flash_attn_varlen_func as upstream

        c["FLASH_ATTN_UPSTREAM"] = (fa(upstream, {}), "flash_attn")
    except Exception as e:  # noqa: BLE001
        c["FLASH_ATTN_UPSTREAM"] = (None, f"unavailable: {type(e).__name__}")
    return c


def _reference(torch, x):
    """fp32 reference: SDPA memory-efficient backend on fp32-upcast inputs, per sequence."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v, lens = x["q"], x["k"], x["v"], x["lens"]
    g = q.shape[1] // k.shape[1]
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    start = 0
    for s in lens:
        qi, ki, vi = (t[start:start + s].float().transpose(0, 1)[None] for t in (q, k, v))
        if g > 1:
            ki, vi = ki.repeat_interleave(g, 1), vi.repeat_interleave(g, 1)
        with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
            out[start:start + s] = F.scaled_dot_product_attention(qi, ki, vi)[0].transpose(0, 1)
        start += s
    return out


def _make_inputs(torch, shape: Shape, dtype, n_sets: int):
    cu_list = [0]
    for s in shape.lens:
        cu_list.append(cu_list[-1] + s)
    total = cu_list[-1]
    cu = torch.tensor(cu_list, dtype=torch.int32, device="cuda")
    sets = []
    for _ in range(n_sets):
        # As in Qwen2.5-VL's blocks: q, k contiguous (RoPE output), v = qkv[:, 2] (strided view).
        packed = torch.randn(total, 3, shape.kv_heads, shape.head_dim, dtype=dtype, device="cuda")
        sets.append({
            "q": torch.randn(total, shape.heads, shape.head_dim, dtype=dtype, device="cuda"),
            "k": torch.randn(total, shape.kv_heads, shape.head_dim, dtype=dtype, device="cuda"),
            "v": packed[:, 2],
            "cu": cu, "max": max(shape.lens), "lens": shape.lens,
        })
    return sets


def _brief(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def _calls_off_stream(torch, fn, sets: list[dict], sync_debug: str | None = None) -> None:
    """The calls over every input set on a side stream, as torch wants a capture's warm-up run;
    ``sync_debug``: torch's sync debug mode meanwhile ("error": a host sync raises)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        old = torch.cuda.get_sync_debug_mode()
        if sync_debug is not None:
            torch.cuda.set_sync_debug_mode(sync_debug)
        try:
            for x in sets:
                fn(x)
        finally:
            torch.cuda.set_sync_debug_mode(old)
    torch.cuda.current_stream().wait_stream(side)


def _rotated(items: list, turn: int) -> list:
    """``items`` starting at place ``turn`` (mod its length): the order of one turn."""
    k = turn % len(items) if items else 0
    return items[k:] + items[:k]


def graph_precheck(torch, fn, sets: list[dict]) -> str | None:
    """None if the calls can be captured in a CUDA graph, else why not. A call that syncs with
    the host (vLLM's TORCH_SDPA reads the lengths with ``.tolist()``) cannot be: it is found here,
    under ``torch.cuda.set_sync_debug_mode("error")``, so no capture is ever left half done."""
    try:
        _calls_off_stream(torch, fn, sets, sync_debug="error")
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001
        return f"not capturable: {_brief(e)}"
    return None


def graph_ms(torch, fns: list, sets: list[dict], rep_ms: float) -> list[float | Exception]:
    """GPU time of one call per candidate with the host out of the way: each candidate's calls
    over every input set captured in one CUDA graph (as vLLM's encoder CUDA graphs run a tower),
    then the candidates' graphs replayed in turn, the order rotating every turn, one pair of
    events around each replay: drift of the GPU's clocks falls on all candidates alike, replay by
    replay (timing one candidate's replays, then the next's, read up to 5% between two layers
    of one kernel). Median per candidate; an exception in place of a candidate that failed.
    Run :func:`graph_precheck` first."""
    graphs: list = []
    # Replayed on the very inputs captured: the plugin's op runs as in eager mode (no padding
    # to zero, cuDNN allowed), unlike vLLM's encoder graphs, which replay on other lengths.
    with exact_inputs():
        for fn in fns:
            try:
                _calls_off_stream(torch, fn, sets)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for x in sets:
                        fn(x)
                graphs.append(g)
            except Exception as e:  # noqa: BLE001 -- a candidate failing is a result
                graphs.append(e)
    live = [i for i, g in enumerate(graphs) if not isinstance(g, Exception)]
    if not live:
        return graphs
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in live:
        graphs[i].replay()
    torch.cuda.synchronize()
    turn_ms = max((time.perf_counter() - t0) * 1e3, 1e-3)
    turns = max(5, min(1000, math.ceil(rep_ms / turn_ms)))
    events = {i: [] for i in live}
    for j in range(turns):
        for i in _rotated(live, j):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            graphs[i].replay()
            end.record()
            events[i].append((start, end))
    torch.cuda.synchronize()
    out: list = list(graphs)
    for i in live:
        out[i] = statistics.median(a.elapsed_time(b) for a, b in events[i]) / len(sets)
    return out


def eager_ms(torch, fn, sets: list[dict], rep_ms: float, warmup_ms: float) -> float:
    """One call at a time (``triton.testing.do_bench``: L2 flushed before each call, events
    around it): the latency of an isolated call, its host time included where that exceeds the
    flush. Not how a tower runs (see :func:`back_to_back_ms`)."""
    import triton.testing

    i = [0]

    def step():
        i[0] = (i[0] + 1) % len(sets)
        fn(sets[i[0]])

    return triton.testing.do_bench(step, warmup=warmup_ms, rep=rep_ms, return_mode="median")


BURST_MS = 5.0  # one back-to-back burst: long enough that its first call's latency is ~1%


def back_to_back_ms(torch, fns: list, sets: list[dict], rep_ms: float,
                    est_ms: list[float]) -> list[float | Exception]:
    """Calls issued back to back over the rotated input sets, one pair of events around a burst
    of ~BURST_MS: as vLLM's eager vision tower runs its layers, the host issuing ahead of the GPU.
    Per call this is the larger of host time and GPU time (a call that syncs pays its sync). The
    candidates' bursts take turns, the order rotating every turn, each from an idle GPU: a busy
    spell of the host's other work falls on all alike (one long run per candidate put up to 20%
    between two layers of one kernel). Median per candidate; an exception where one failed.
    ``est_ms``: each candidate's time per call, roughly (its eager time)."""
    calls = [max(2 * len(sets), min(2000, math.ceil(BURST_MS / max(e, 1e-3)))) for e in est_ms]
    out: list = [None] * len(fns)
    samples: dict[int, list[float]] = {i: [] for i in range(len(fns))}
    turns = max(5, math.ceil(rep_ms / (BURST_MS * max(len(fns), 1))))
    for j in range(turns):
        for i in _rotated(list(range(len(fns))), j):
            if isinstance(out[i], Exception):
                continue
            try:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                for c in range(calls[i]):
                    fns[i](sets[c % len(sets)])
                end.record()
                end.synchronize()
                samples[i].append(start.elapsed_time(end) / calls[i])
            except Exception as e:  # noqa: BLE001 -- a candidate failing is a result
                out[i] = e
    return [o if isinstance(o, Exception) else statistics.median(samples[i])
            for i, o in enumerate(out)]


def host_us_per_call(torch, fn, sets: list[dict], calls: int = 32, rounds: int = 10) -> float | None:
    """Host time to issue one call, with the GPU held busy (``torch.cuda._sleep``) so that no
    call waits for the device: what a layer costs the CPU in an eager forward. The fastest of
    ``rounds`` rounds (other work on the host only ever adds time)."""
    if not hasattr(torch.cuda, "_sleep"):
        return None
    out = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        torch.cuda._sleep(30_000_000)  # ~17 ms of GPU clock cycles: longer than issuing 32 calls
        t0 = time.perf_counter()
        for i in range(calls):
            fn(sets[i % len(sets)])
        out.append((time.perf_counter() - t0) / calls * 1e6)
    torch.cuda.synchronize()
    return round(min(out), 1)


def round_orders(n: int, rounds: int) -> list[list[int]]:
    """The candidates' order in each timing round, rotated so that each candidate's place moves
    through the round: every candidate is sampled across the whole span of the shape's timing,
    and slow drift of the GPU's clocks or the host's load falls on all alike (timing one
    candidate whole, then the next, put up to 10% between equals on the H100)."""
    step = max(1, math.ceil(n / max(rounds, 1)))
    return [[(i + k * step) % n for i in range(n)] for k in range(rounds)] if n else [[] for _ in range(rounds)]


def _keep(samples: dict, timed: list, got: list, key: str, fatal: bool) -> None:
    """Each candidate's time of one round under ``key``; a failure there ends the candidate
    (``fatal``) or only that timing (``<timing>_error``, e.g. a graph that did not capture)."""
    for (r, _), ms in zip(timed, got, strict=True):
        if not isinstance(ms, Exception):
            samples[r.candidate].setdefault(key, []).append(ms)
        elif fatal:
            r.error = _brief(ms)
        else:
            r.extra[key.replace("_ms", "_error")] = _brief(ms)


def _tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12


def run_shape(torch, shape: Shape, dtype, names: list[str], *, rep_ms: int = 200,
              configs: list[dict] | None = None, cands: dict | None = None,
              timing_graph: bool = False, timing_host: bool = False,
              timing_stream: bool = False, rounds: int = 5) -> tuple[list[Result], list[dict]]:
    """Check each candidate on one shape, then time them all in ``rounds`` interleaved rounds
    (:func:`round_orders`; per candidate the median over rounds, each round ``rep_ms / rounds``
    per timing). ``cands``: name -> (fn, note); default: the raw kernels. With ``configs``, also
    sweep VIT_TRITON configs (eager, one candidate at a time). Timings: eager always;
    ``timing_stream`` back to back; ``timing_graph`` GPU time under a CUDA graph;
    ``timing_host`` host time to issue one call."""
    from vit_backend_plugin.kernels.triton_vit import vit_attention

    bytes_per_set = 4 * sum(shape.lens) * shape.heads * shape.head_dim * dtype.itemsize
    n_sets = max(2, min(8, math.ceil(200e6 / bytes_per_set)))  # rotate > 4x the 50 MB L2
    sets = _make_inputs(torch, shape, dtype, n_sets)
    ref = _reference(torch, sets[0])
    ref_norm = ref.norm().item()
    dname = str(dtype).removeprefix("torch.")
    cands = cands if cands is not None else _candidates(torch, dtype)

    def check(name, fn) -> Result:
        r = Result(name)
        try:
            x = dict(sets[0])
            x["out"] = torch.full_like(x["q"], float("nan"))  # poison: unwritten rows fail
            out = fn(x)
            torch.cuda.synchronize()
            err = ((out.float() - ref).norm().item()) / ref_norm
            r.rel_err = err
            r.numerics_ok = bool(math.isfinite(err) and err < REL_TOL[dname])
        except Exception as e:  # noqa: BLE001 -- a candidate failing is a result, not a crash
            r.error = _brief(e)
        return r

    results, timed = [], []
    for name in names:
        fn, note = cands[name]
        if fn is None:
            results.append(Result(name, error=note))
            continue
        if name == "SDPA_CUDNN_NESTED" and shape.equal:
            continue
        r = check(name, fn)
        r.extra["note"] = note
        results.append(r)
        if r.error is None:
            timed.append((r, fn))
            if timing_graph and (why := graph_precheck(torch, fn, sets)):
                r.extra["graph_error"] = why

    samples: dict[str, dict[str, list[float]]] = {r.candidate: {} for r, _ in timed}
    per = max(rep_ms / max(rounds, 1), 5.0)
    for k, order in enumerate(round_orders(len(timed), rounds)):
        for i in order:
            r, fn = timed[i]
            if r.error is not None:
                continue
            got = samples[r.candidate]
            try:
                got.setdefault("ms", []).append(eager_ms(torch, fn, sets, per, 25 if k == 0 else 5))
            except Exception as e:  # noqa: BLE001
                r.error = _brief(e)
        # The next two time every candidate at once, taking turns (back_to_back_ms, graph_ms).
        if timing_stream:
            streamed = [timed[i] for i in order if timed[i][0].error is None]
            est = [samples[r.candidate]["ms"][-1] for r, _ in streamed]
            got = back_to_back_ms(torch, [fn for _, fn in streamed], sets, per * len(streamed), est)
            _keep(samples, streamed, got, "stream_ms", fatal=True)
        if timing_graph:
            graphed = [timed[i] for i in order
                       if timed[i][0].error is None and "graph_error" not in timed[i][0].extra]
            got = graph_ms(torch, [fn for _, fn in graphed], sets, per * len(graphed))
            _keep(samples, graphed, got, "graph_ms", fatal=False)
    for r, fn in timed:
        got = samples[r.candidate]
        if r.error is not None or not got.get("ms"):
            continue
        r.ms = statistics.median(got["ms"])
        r.tflops = _tflops(shape.flops, r.ms)
        r.extra["rounds_ms"] = [round(v, 5) for v in got["ms"]]
        for key in ("stream_ms", "graph_ms"):
            if got.get(key) and not (key == "graph_ms" and "graph_error" in r.extra):
                ms = statistics.median(got[key])
                r.extra[key] = ms
                r.extra[key.replace("_ms", "_tflops")] = _tflops(shape.flops, ms)
                r.extra["rounds_" + key] = [round(v, 5) for v in got[key]]
        if timing_host and not r.extra.get("graph_error", "").startswith("not capturable"):
            r.extra["host_us"] = host_us_per_call(torch, fn, sets)

    sweep = []
    for cfg in configs or []:
        def fn(x, cfg=cfg):
            return vit_attention(x["q"], x["k"], x["v"], x["cu"], x["max"], out=x.get("out"), config=cfg)

        r = check("VIT_TRITON", fn)
        if r.error is None:  # configs of one kernel: eager timing, one at a time, compares them
            try:
                r.ms = eager_ms(torch, fn, sets, rep_ms, 25)
                r.tflops = _tflops(shape.flops, r.ms)
            except Exception as e:  # noqa: BLE001
                r.error = _brief(e)
        sweep.append({"config": cfg, "ms": r.ms, "tflops": r.tflops, "rel_err": r.rel_err,
                      "numerics_ok": r.numerics_ok, "error": r.error})
    return results, sweep


def sweep_configs(shape: Shape, splits: tuple[int, ...] = (16, 256)) -> list[dict]:
    """VIT_TRITON configs worth trying for a shape (tuning; see NOTES.md). ``splits`` are min_d1
    values: 16 splits head_dim (80 -> 64+16), 256 pads it to the next power of two."""
    if not shape.head_dim & (shape.head_dim - 1):
        splits = (256,)  # power of two: nothing to split
    out = []
    if max(shape.lens) <= 128:
        for md in splits:
            for pack in (2, 4, 8):  # PACK=1 hit an illegal address on Triton 3.6 (NOTES.md)
                for nw in (4, 8):
                    for ns in (2, 3):
                        out.append({"kernel": "packed", "PACK": pack, "num_warps": nw, "num_stages": ns,
                                    "cache_kv": ".cg", "min_d1": md})
        tiles = [(64, 64, 4), (64, 32, 4)]
    else:
        tiles = [(128, 64, 8), (128, 128, 8), (64, 64, 4), (64, 128, 4), (128, 64, 4), (128, 32, 4)]
        if shape.head_dim > 128:
            tiles = [(64, 64, 4), (64, 32, 4), (128, 32, 8), (64, 64, 8), (128, 64, 8)]
    n_main = len(out)
    for md in splits:
        for bm, bn, nw in tiles:
            for ns in (2, 3):
                out.append({"kernel": "main", "BLOCK_M": bm, "BLOCK_N": bn, "num_warps": nw,
                            "num_stages": ns, "cache_kv": ".cg", "min_d1": md})
    for cfg in out[n_main:n_main + 4]:  # does the .cg hint matter? (same tiles, default caching)
        out.append(dict(cfg, cache_kv=""))
    return out


# ------------------------------------------------------------------ reporting


def _geomean(vals):
    vals = [v for v in vals if v and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else float("nan")


METRICS = {"tflops": "eager, one call at a time (do_bench: L2 flushed, host latency + GPU)",
           "stream_tflops": "back to back, as an eager tower runs (max of host and GPU)",
           "graph_tflops": "CUDA graph (GPU time)"}
# summary key per timing in a run's JSON
SUMMARY_KEYS = {"tflops": "summary", "stream_tflops": "summary_stream", "graph_tflops": "summary_graph"}


def metric_value(result: dict, metric: str = "tflops") -> float | None:
    """A result's TFLOP/s under one timing: eager lives at the top, the others in ``extra``."""
    return result.get(metric) if metric == "tflops" else (result.get("extra") or {}).get(metric)


def _ok_values(row: dict, metric: str) -> dict[str, float]:
    return {r["candidate"]: v for r in row["results"]
            if (v := metric_value(r, metric)) and r.get("numerics_ok")}


def summarize(rows: list[dict], metric: str = "tflops") -> dict:
    """Per-shape ratios and issue 11's checks under one timing (``METRICS``): VIT_AUTO against the
    best single backend, the resolver's per-process pick against stock vLLM's default, our Triton
    kernel's gap to vLLM's."""
    checks, auto_vs_best, pick_vs_stock, ours_vs_stock_triton, same_kernel = [], [], [], [], []
    for row in rows:
        t = _ok_values(row, metric)
        singles = {n: v for n, v in t.items() if n in SINGLE_NAMES}
        name = row["shape"]["name"]
        if not singles:
            continue
        best = max(singles, key=singles.get)
        row.setdefault("best_single_by", {})[metric] = best
        if metric == "tflops":
            row["best_single"] = best
        if "VIT_AUTO" in t:
            ratio = t["VIT_AUTO"] / singles[best]
            auto_vs_best.append(ratio)
            checks.append({"target": f"{name}: VIT_AUTO >= 0.97x best single ({best})",
                           "value": round(ratio, 3), "ok": ratio >= 0.97})
        stock, pick = row.get("stock"), row.get("pick")
        if "PICK" in t and stock in t:
            ratio = t["PICK"] / t[stock]
            pick_vs_stock.append(ratio)
            # The same backend timed twice differs by noise only: 3% margin, and ok when equal.
            checks.append({"target": f"{name}: pick {pick} vs stock vLLM {stock}",
                           "value": round(ratio, 3), "ok": pick == stock or ratio >= 0.97})
        if "VIT_TRITON" in t and "TRITON_ATTN" in t:
            ours_vs_stock_triton.append(t["VIT_TRITON"] / t["TRITON_ATTN"])
        if "PICK" in t and pick in singles:  # one backend timed as two layers: the run's resolution
            same_kernel.append(t["PICK"] / singles[pick])
    if metric == "tflops" and not any("PICK" in {r["candidate"] for r in row["results"]} for row in rows):
        checks += resolver_pick_checks(rows)  # raw-kernel runs: what the resolver would pick
    return {"metric": metric, "geomean_auto_vs_best_single": _geomean(auto_vs_best),
            "geomean_pick_vs_stock": _geomean(pick_vs_stock),
            "geomean_ours_vs_stock_triton": _geomean(ours_vs_stock_triton), "checks": checks,
            "same_kernel_control": sorted(round(x, 3) for x in same_kernel)}


def resolver_pick_checks(rows: list[dict], tolerance: float = 0.05,
                         features: frozenset[str] | None = None) -> list[dict]:
    """What the plugin's resolver would pick from this run's numbers, per head size, the way it
    picks inside vLLM (once per process, geometric mean over that head size's shapes), against the
    fastest candidate of each shape."""
    try:
        from vit_backend_plugin.selection.catalog import FEATURES
        from vit_backend_plugin.selection.resolver import Measurement, ResolveRequest, resolve
    except ImportError:  # pyyaml missing: no catalog, no check
        return []
    checks = []
    for head in sorted({r["shape"]["head_dim"] for r in rows}):
        group = [r for r in rows if r["shape"]["head_dim"] == head]
        per = [{x["candidate"]: x for x in r["results"] if x.get("tflops") and x["candidate"] in TABLE_NAMES}
               for r in group]
        common = set.intersection(*(set(p) for p in per)) if per else set()
        measured = {n: Measurement(_geomean([p[n]["tflops"] for p in per]),
                                   all(p[n]["numerics_ok"] for p in per)) for n in common}
        feats = frozenset(FEATURES) if features is None else features
        pick = resolve(ResolveRequest(head_size=head, dtype=group[0].get("dtype", "bfloat16"),
                                      capability=(9, 0), features=feats, measured=measured)).chosen
        for r, p in zip(group, per, strict=True):
            best = max(p.values(), key=lambda x: x["tflops"])
            got = p.get(pick, {}).get("tflops", 0.0)
            ratio = got / best["tflops"]
            checks.append({"target": f"{r['shape']['name']}: resolver pick {pick} within "
                                     f"{tolerance:.0%} of fastest ({best['candidate']})",
                           "value": round(ratio, 3), "ok": ratio >= 1 - tolerance})
    return checks


def print_table(rows: list[dict], names: list[str], summary: dict, file=None) -> None:
    file = file or sys.stdout
    metric = summary.get("metric", "tflops")
    w = max(len(r["shape"]["name"]) for r in rows) + 1
    short = {n: n.replace("TORCH_", "").replace("SDPA_", "")[:10] for n in names}
    print(f"\nTFLOP/s (4*S^2*D*H per sequence), median, timed {METRICS[metric]}; "
          "'!' = numerics failed, '-' = unavailable", file=file)
    print(f"{'shape':<{w}}" + "".join(f"{short[n]:>11}" for n in names)
          + f"{'best':>12}{'AUTO/best':>10}{'pick':>12}{'pick/stock':>11}{'stock':>12}", file=file)
    for row in rows:
        by = {r["candidate"]: r for r in row["results"]}
        line = f"{row['shape']['name']:<{w}}"
        for n in names:
            r = by.get(n)
            v = metric_value(r, metric) if r else None
            if not v:
                line += f"{'-':>11}"
            else:
                line += f"{v:>10.1f}" + ("!" if not r["numerics_ok"] else " ")
        t = _ok_values(row, metric)
        best = row.get("best_single_by", {}).get(metric)
        line += f"{best or '-':>12}"
        line += f"{t['VIT_AUTO'] / t[best]:>9.3f}x" if best and t.get("VIT_AUTO") else f"{'-':>10}"
        stock = row.get("stock")
        line += f"{row.get('pick') or '-':>12}"
        line += f"{t['PICK'] / t[stock]:>10.3f}x" if t.get("PICK") and t.get(stock) else f"{'-':>11}"
        line += f"{stock or '-':>12}"
        print(line, file=file)
    print(f"geomean VIT_AUTO/best single {summary['geomean_auto_vs_best_single']:.3f}x, "
          f"pick/stock vLLM {summary['geomean_pick_vs_stock']:.3f}x, "
          f"VIT_TRITON/vLLM TRITON_ATTN {summary['geomean_ours_vs_stock_triton']:.2f}x", file=file)
    ctrl = summary.get("same_kernel_control") or []
    if ctrl:  # what a ratio of one kernel to itself reads in this run: the checks' resolution
        print(f"same-kernel control (PICK / the layer of the backend it picked, {len(ctrl)} shapes): "
              f"lowest {ctrl[0]:.3f}x, median {ctrl[len(ctrl) // 2]:.3f}x, highest {ctrl[-1]:.3f}x", file=file)
    for c in summary["checks"]:
        print(f"  [{'ok' if c['ok'] else 'MISS'}] {c['target']}: {c['value']}", file=file)


def table_values(row: dict, metric: str = "tflops") -> dict[str, dict]:
    """candidate -> {"tflops", "numerics_ok"} for a speed-table row. Under ``graph_tflops``, a
    candidate that cannot be captured (it syncs with the host, like vLLM's TORCH_SDPA) keeps its
    eager speed: that only adds its host time, so it never flatters it."""
    out = {}
    for r in row["results"]:
        v = metric_value(r, metric) or r.get("tflops")
        if v:
            out[r["candidate"]] = {"tflops": v, "numerics_ok": r.get("numerics_ok")}
    return out


def print_host_table(rows: list[dict], names: list[str], file=None) -> None:
    """Host microseconds to issue one call (GPU held busy): the eager cost of a layer on the CPU."""
    file = file or sys.stdout
    if not any((r.get("extra") or {}).get("host_us") for row in rows for r in row["results"]):
        return
    w = max(len(r["shape"]["name"]) for r in rows) + 1
    short = {n: n.replace("TORCH_", "").replace("SDPA_", "")[:10] for n in names}
    print("\nhost us to issue one call (GPU busy meanwhile); '-' = not measured (the call syncs)",
          file=file)
    print(f"{'shape':<{w}}" + "".join(f"{short[n]:>11}" for n in names), file=file)
    for row in rows:
        by = {r["candidate"]: (r.get("extra") or {}).get("host_us") for r in row["results"]}
        print(f"{row['shape']['name']:<{w}}"
              + "".join(f"{by[n]:>11.1f}" if by.get(n) else f"{'-':>11}" for n in names), file=file)


def print_all(data: dict, file=None) -> None:
    """Every table of a run: eager, back to back and CUDA graph (when timed), host time (when timed)."""
    for key in SUMMARY_KEYS.values():
        if data.get(key):
            print_table(data["rows"], data["candidates"], data[key], file=file)
    print_host_table(data["rows"], data["candidates"], file=file)


def speed_table_entries(rows: list[dict], device: str, capability: tuple[int, int], dtype: str,
                        how: str = "", metric: str = "tflops") -> list[dict]:
    entries = []
    for row in rows:
        by = table_values(row, metric)
        pick = by.pop("PICK", None)
        if pick and row.get("pick") in by:  # the pick is one more sample of that backend
            same = by[row["pick"]]
            by[row["pick"]] = dict(same, tflops=max(same["tflops"], pick["tflops"]),
                                   numerics_ok=same["numerics_ok"] and pick["numerics_ok"])
        sh = row["shape"]
        entries.append({
            "device": device, "capability": list(capability), "dtype": row.get("dtype") or dtype,
            "head_size": sh["head_dim"], "seq_len": list(seq_bucket(sh["lens"])), "shape": sh["name"],
            "equal_lengths": len(set(sh["lens"])) == 1, "num_seqs": len(sh["lens"]), "how": how,
            "tflops": {n: round(by[n]["tflops"], 1) for n in TABLE_NAMES if n in by},
            "numerics_ok": {n: bool(by[n]["numerics_ok"]) for n in TABLE_NAMES if n in by},
        })
        host = {r["candidate"]: (r.get("extra") or {}).get("host_us") for r in row["results"]}
        host = {n: host[n] for n in TABLE_NAMES if n in by and host.get(n)}
        if host:
            entries[-1]["host_us"] = host
    return entries


def merge_entries(runs: list[list[dict]]) -> list[dict]:
    """One row per shape over several runs of it: each backend's best TFLOP/s and least host time
    (noise only ever slows a run down) and numerics OK only if OK in every run."""
    merged: dict[tuple, dict] = {}
    for entries in runs:
        for e in entries:
            key = (e["device"], tuple(e["capability"]), e["dtype"], e["head_size"], e["shape"])
            if key not in merged:
                merged[key] = json.loads(json.dumps(e))
                continue
            m = merged[key]
            for name, t in e["tflops"].items():
                m["tflops"][name] = max(t, m["tflops"].get(name, 0.0))
                m["numerics_ok"][name] = m["numerics_ok"].get(name, True) and e["numerics_ok"].get(name, False)
            for name, us in e.get("host_us", {}).items():  # the host's noise only ever adds time
                m.setdefault("host_us", {})[name] = min(us, m.get("host_us", {}).get(name, us))
    return list(merged.values())


def write_speed_table(path: str, entries: list[dict], engine: list[dict] = ()) -> None:
    doc = {"schema": 1, "entries": entries}
    if engine:  # engine runs are not kernel measurements: carried over, never re-derived here
        doc["engine"] = list(engine)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def merged_engine_runs(merge_with: list[str]) -> list[dict]:
    """The engine runs of the --merge-with tables (first table wins per run name)."""
    out: dict[str, dict] = {}
    for p in merge_with:
        for e in json.load(open(p)).get("engine", []):
            out.setdefault(e["run"], e)
    return list(out.values())


# ------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", nargs="*", default=[], metavar="SPEC",
                        help="extra shapes: [name=]D:BxS or [name=]D:l1,l2,.. [@heads[/kv_heads]]")
    parser.add_argument("--only-shapes", action="store_true", help="run only --shapes, not the defaults")
    parser.add_argument("--shape-set", choices=["issue", "extended", "all"], default="all",
                        help="default shapes: the issue's table, the extended set, or both")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"],
                        help="dtype of shapes that do not name one")
    parser.add_argument("--candidates", default="", help="comma list (default: all)")
    parser.add_argument("--rep-ms", type=int, default=200, help="timing budget per candidate (ms)")
    parser.add_argument("--raw-kernels", action="store_true",
                        help="time kernel functions directly, not as vLLM runs them (kernel work only)")
    parser.add_argument("--sweep", action="store_true", help="also sweep VIT_TRITON launch configs")
    parser.add_argument("--sweep-splits", default="16,256",
                        help="min_d1 values to sweep: 16 splits head_dim 80 -> 64+16, 256 pads to 128")
    parser.add_argument("--timings", default="eager,stream,graph,host",
                        help="comma list: eager (do_bench, one call at a time, always), stream "
                             "(calls back to back, as an eager tower runs), graph (GPU time of the "
                             "calls replayed as a CUDA graph), host (host time to issue one call)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timing rounds per shape; the candidates' order rotates each round and "
                             "each candidate's time is its median over rounds (drift hits all alike)")
    parser.add_argument("--table-timing", choices=["graph", "stream", "eager"], default="graph",
                        help="the timing the written speed table records, where the run measured "
                             "it (else eager): graph = GPU time (stable to ~1%% between rounds; "
                             "what decides a GPU-bound tower); stream = calls back to back, host "
                             "time included (its host-bound rows vary up to 2x between rounds on "
                             "the H100 machine, see reports/kernels/README.md)")
    parser.add_argument("--json", dest="json_out", default=None, help="write full results here")
    parser.add_argument("--write-speed-table", default=None, metavar="PATH",
                        help="write a speed table (schema 1) from this run")
    parser.add_argument("--merge-with", nargs="*", default=[], metavar="TABLE",
                        help="speed tables of earlier runs of the same shapes to merge into the one "
                             "written (best TFLOP/s per backend, numerics OK only if OK everywhere)")


ALL_CANDIDATES = ["TORCH_SDPA", "SDPA_FLASH", "SDPA_EFFICIENT", "TORCH_SDPA_CUDNN", "SDPA_CUDNN_NESTED",
                  "TORCH_VARLEN", "VIT_TRITON", "VIT_AUTO", "TRITON_ATTN", "FLASH_ATTN",
                  "FLASH_ATTN_UPSTREAM"]


def default_shapes(shape_set: str) -> list[Shape]:
    out = []
    if shape_set in ("issue", "all"):
        out += [Shape(n, d, lens) for n, d, lens in DEFAULT_SHAPES]
    if shape_set in ("extended", "all"):
        out += [Shape(n, d, lens, h, h, dt) for n, d, lens, h, dt in EXTENDED_SHAPES]
    return out


def _engine_faithful_possible() -> str | None:
    """None if vLLM (a CUDA build) imports here; else why not."""
    try:
        import vllm  # noqa: F401
        from vllm.platforms import current_platform

        return None if current_platform.is_cuda() else f"vLLM platform is {current_platform.device_type}"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def collect(args) -> dict:
    import torch
    import triton

    if not torch.cuda.is_available():
        raise RuntimeError("bench-kernels needs a CUDA GPU")
    shapes = [] if args.only_shapes else default_shapes(getattr(args, "shape_set", "all"))
    shapes += [parse_shape(s) for s in args.shapes]
    engine = not getattr(args, "raw_kernels", False)
    if engine and (why := _engine_faithful_possible()):
        raise RuntimeError(f"engine-faithful benchmark needs a CUDA build of vLLM ({why}); "
                           "pass --raw-kernels to time the kernels alone")
    known = list(bench_vllm.LAYER_BACKENDS) if engine else ALL_CANDIDATES
    names = [n.strip() for n in args.candidates.split(",") if n.strip()] or list(known)
    unknown = set(names) - set(known)
    if unknown:
        raise ValueError(f"unknown candidates {sorted(unknown)}; choose from {known}")
    props = torch.cuda.get_device_properties(0)
    meta = {"device": props.name, "capability": list(torch.cuda.get_device_capability(0)),
            "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "dtype": args.dtype, "engine_faithful": engine,
            "argv": sys.argv, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    stock, cache = {}, {}
    if engine:
        from vit_backend_plugin.selection import speed_table

        stock = bench_vllm.stock_choices(torch, {(sh.head_dim, sh.dtype or args.dtype) for sh in shapes})
        meta["plugin"] = bench_vllm.load_plugin()
        import vllm

        user = speed_table.load_user()
        meta.update({"vllm": vllm.__version__,
                     "cudnn_sdp_enabled_globally": torch.backends.cuda.cudnn_sdp_enabled(),
                     "speed_table_in_use": user.source if user else speed_table.load_shipped().source})
        names = names + ["PICK"]
    splits = tuple(int(x) for x in args.sweep_splits.split(",") if x)
    timings = parse_timings(getattr(args, "timings", "eager"))
    meta["timings"] = sorted(timings)
    rows = []
    for sh in shapes:
        t0 = time.time()
        dname = sh.dtype or args.dtype
        dtype = getattr(torch, dname)
        cands = bench_vllm.engine_candidates(torch, sh, dtype, names, cache) if engine else None
        res, sweep = run_shape(torch, sh, dtype, names, rep_ms=args.rep_ms, cands=cands,
                               configs=sweep_configs(sh, splits) if args.sweep else None,
                               timing_graph="graph" in timings, timing_host="host" in timings,
                               timing_stream="stream" in timings, rounds=getattr(args, "rounds", 5))
        torch.cuda.empty_cache()  # this shape's inputs are garbage now
        row = {"shape": {"name": sh.name, "head_dim": sh.head_dim, "lens": sh.lens, "heads": sh.heads,
                         "kv_heads": sh.kv_heads, "flops": sh.flops},
               "dtype": dname, "results": [r.__dict__ for r in res],
               "issue_reference": ISSUE_REFERENCE.get(sh.name)}
        if engine:
            row["stock"] = stock[(sh.head_dim, dname)]
            row["pick"] = bench_vllm.picked_backend(cache, sh, dtype)
        if sweep:
            ok = [s for s in sweep if s["tflops"] and s["numerics_ok"]]
            row["sweep"] = sorted(sweep, key=lambda s: -(s["tflops"] or 0))
            if ok:
                best = max(ok, key=lambda s: s["tflops"])
                print(f"  sweep best {best['tflops']:.1f} TFLOP/s: {best['config']}", flush=True)
        rows.append(row)
        brief = ", ".join(_brief_result(r) for r in res)
        print(f"[{time.time() - t0:5.1f}s] {sh.name}: {brief}", flush=True)
        if getattr(args, "json_out", None):  # partial results survive a timeout
            with open(args.json_out + ".partial", "w") as f:
                json.dump({"meta": meta, "rows": rows}, f)
    meta["rounds"] = getattr(args, "rounds", 5)
    out = {"meta": meta, "candidates": names, "rows": rows, "summary": summarize(rows)}
    for timing, metric in (("stream", "stream_tflops"), ("graph", "graph_tflops")):
        if timing in timings:
            out[SUMMARY_KEYS[metric]] = summarize(rows, metric)
    return out


def _brief_result(r: Result) -> str:
    if not r.tflops:
        return f"{r.candidate}=ERR({r.error})"
    st, g = r.extra.get("stream_tflops"), r.extra.get("graph_tflops")
    return f"{r.candidate}={r.tflops:.0f}" + (f"/{st:.0f}s" if st else "") + (f"/{g:.0f}g" if g else "")


def parse_timings(spec: str) -> set[str]:
    got = {t.strip() for t in spec.split(",") if t.strip()} | {"eager"}
    unknown = got - {"eager", "stream", "graph", "host"}
    if unknown:
        raise ValueError(f"unknown timings {sorted(unknown)}; choose from eager, stream, graph, host")
    return got


TABLE_HOW = {"tflops": "", "stream_tflops": ", back to back", "graph_tflops": ", CUDA graph"}


def table_entries(data: dict, merge_with: list[str] = (), table_timing: str = "graph") -> list[dict]:
    """Speed-table rows from a run, under the timing asked for where the run measured it (else
    eager). A candidate the timing could not take (one that syncs, under a graph) keeps its eager
    time (:func:`table_values`)."""
    m = data["meta"]
    metric = f"{table_timing}_tflops" if table_timing in m.get("timings", []) and table_timing != "eager" \
        else "tflops"
    how = "vllm layer" if m.get("engine_faithful") else "raw kernel"
    entries = speed_table_entries(data["rows"], m["device"], tuple(m["capability"]), m["dtype"],
                                  how + TABLE_HOW[metric], metric)
    earlier = [json.load(open(p))["entries"] for p in merge_with]
    return merge_entries([entries, *earlier]) if earlier else entries


def main(args) -> int:
    data = collect(args)
    print_all(data)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(data, f, indent=1)
    if args.write_speed_table:
        write_speed_table(args.write_speed_table,
                          table_entries(data, args.merge_with, args.table_timing),
                          merged_engine_runs(args.merge_with))
    bad = [r for row in data["rows"] for r in row["results"]
           if r["candidate"] in ("VIT_TRITON", "VIT_AUTO", "TORCH_SDPA_CUDNN") and r.get("numerics_ok") is False]
    return 1 if bad else 0
