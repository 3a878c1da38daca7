"""Benchmark-only baselines (verbatim third-party kernels; never used at runtime)."""
