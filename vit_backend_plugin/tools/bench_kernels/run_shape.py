"""One shape: check every candidate, then time them all in interleaved rounds."""

from __future__ import annotations

import statistics

from vit_backend_plugin.tools.bench_kernels.back_to_back import back_to_back_ms, host_us_per_call
from vit_backend_plugin.tools.bench_kernels.candidates import _candidates
from vit_backend_plugin.tools.bench_kernels.inputs import _make_inputs, n_input_sets
from vit_backend_plugin.tools.bench_kernels.numerics import checker
from vit_backend_plugin.tools.bench_kernels.result import Result, _brief, _tflops
from vit_backend_plugin.tools.bench_kernels.shapes import Shape
from vit_backend_plugin.tools.bench_kernels.sweep import run_sweep
from vit_backend_plugin.tools.bench_kernels.timing import (
    eager_ms,
    graph_ms,
    graph_precheck,
    round_orders,
)


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
    sets = _make_inputs(torch, shape, dtype, n_input_sets(shape, dtype))
    check = checker(torch, sets, dtype)
    cands = cands if cands is not None else _candidates(torch, dtype)

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

    return results, run_sweep(torch, configs, check, sets, rep_ms, shape.flops)
