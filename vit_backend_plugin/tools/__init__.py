"""Benchmarks, tuning and checks (`vit-parity bench-kernels`, `tune`, `bench-builder`,
`check-flashinfer-host`, `record-engine`). Never imported by the runtime path (`register()`)."""
