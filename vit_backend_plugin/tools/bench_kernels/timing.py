"""Interleaved timing: eager one call at a time, CUDA graphs replayed in turn, and the rounds'
rotating order (drift falls on every candidate alike)."""

from __future__ import annotations

import math
import statistics
import time

from vit_backend_plugin.kernels.capture import exact_inputs
from vit_backend_plugin.tools.bench_kernels.result import _brief


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


def round_orders(n: int, rounds: int) -> list[list[int]]:
    """The candidates' order in each timing round, rotated so that each candidate's place moves
    through the round: every candidate is sampled across the whole span of the shape's timing,
    and slow drift of the GPU's clocks or the host's load falls on all alike (timing one
    candidate whole, then the next, put up to 10% between equals on the H100)."""
    step = max(1, math.ceil(n / max(rounds, 1)))
    return [[(i + k * step) % n for i in range(n)] for k in range(rounds)] if n else [[] for _ in range(rounds)]
