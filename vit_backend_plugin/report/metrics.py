"""Throughput metrics shown in the report: shared by build, render and plots (no cycle)."""

from __future__ import annotations

import math
from typing import Any

# throughput.json metric key -> (label, higher is better). Speedup > 1 always means "faster":
# candidate/baseline for rates, baseline/candidate for latencies.
SPEED_METRICS: dict[str, tuple[str, bool]] = {
    "requests_per_s": ("requests/s", True),
    "input_tokens_per_s": ("input tok/s", True),
    "ttft_mean_ms": ("TTFT mean (ms)", False),
    "ttft_p99_ms": ("TTFT p99 (ms)", False),
    "images_per_s": ("images/s", True),
    "encoder_images_per_s": ("encoder images/s", True),
    "prefill_tokens_per_s": ("prefill tok/s", True),
    "output_tokens_per_s": ("output tok/s", True),
    "total_tokens_per_s": ("total tok/s", True),
    "e2el_mean_ms": ("E2E latency mean (ms)", False),
}

BENCH_SERVE_ENGINE = "vllm bench serve"  # throughput_engine of speed read from its files
# `vllm bench serve --save-result` JSON key (vllm/benchmarks/serve.py, 0.32) -> report metric.
# The throughput phase measures the same things under these names (harness/throughput.py).
BENCH_SERVE_METRICS: dict[str, str] = {
    "request_throughput": "requests_per_s",
    "mean_ttft_ms": "ttft_mean_ms",
    "p99_ttft_ms": "ttft_p99_ms",
    "output_throughput": "output_tokens_per_s",
    "total_token_throughput": "total_tokens_per_s",
    "mean_e2el_ms": "e2el_mean_ms",
}


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def from_bench_serve(result: dict[str, Any]) -> dict[str, float]:
    """The report's metrics from one `vllm bench serve` result. Input tokens/s is not written by
    vLLM: it is ``total_input_tokens / duration``, as vLLM computes its other rates."""
    out = {ours: v for theirs, ours in BENCH_SERVE_METRICS.items()
           if (v := _finite(result.get(theirs))) is not None}
    tokens, duration = _finite(result.get("total_input_tokens")), _finite(result.get("duration"))
    if tokens is not None and duration:
        out["input_tokens_per_s"] = tokens / duration
    return out
