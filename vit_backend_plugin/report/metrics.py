"""Throughput metrics shown in the report: shared by build, render and plots (no cycle)."""

from __future__ import annotations

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
}
