"""Back-to-back timing (calls issued as an eager tower issues them) and host time per call."""

from __future__ import annotations

import math
import statistics
import time

from vit_backend_plugin.tools.bench_kernels.timing import _rotated

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
