"""bench-builder: the batches both modes build, sync counting and timing helpers."""

from __future__ import annotations

import time

import numpy as np

from vit_backend_plugin.tools.sync_count import count_syncs

MODES = ("decode", "mixed", "spec")
SYNC_STEPS = 5  # builds per sync count


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
