"""VIT_AUTO's per-call policy (pure): which backend a call of a given shape goes to."""

from vit_backend_plugin.kernels.auto import CHOICES, DEFAULT, call_cost_us, choose, eager_call_flops


def row(lo, hi, eq, n, tflops, bad=()):
    return {"seq_len": [lo, hi], "equal_lengths": eq, "num_seqs": n, "tflops": tflops,
            "numerics_ok": {k: k not in bad for k in tflops}}


# H100-like rows (issue 11's table): FA3 wins long and mixed, cuDNN image-size batches, ours windows.
ROWS = [
    row(129, 1024, True, 32, {"FLASH_ATTN": 246, "TORCH_SDPA_CUDNN": 264, "VIT_TRITON": 261, "TORCH_SDPA": 35}),
    row(129, 1024, True, 128, {"FLASH_ATTN": 300, "TORCH_SDPA_CUDNN": 280, "VIT_TRITON": 290}),
    row(4097, 10**6, True, 1, {"FLASH_ATTN": 474, "TORCH_SDPA_CUDNN": 414, "VIT_TRITON": 425}),
    row(1, 128, True, 256, {"FLASH_ATTN": 32, "TORCH_SDPA_CUDNN": 56, "VIT_TRITON": 71}),
    row(1, 4096, False, 8, {"FLASH_ATTN": 450, "TORCH_SDPA_CUDNN": 246, "VIT_TRITON": 346}),
]


def test_each_shape_goes_to_its_fastest_backend():
    fa = "FLASH_ATTN"  # the default where vLLM's FA runs (stock vLLM's choice)
    assert choose(ROWS, True, 729, 32, default=fa) == "TORCH_SDPA_CUDNN"
    assert choose(ROWS, True, 16384, 1, default=fa) == "FLASH_ATTN"
    assert choose(ROWS, True, 64, 256, default=fa) == "VIT_TRITON"
    assert choose(ROWS, False, 4096, 8, default=fa) == "FLASH_ATTN"


def test_nearest_number_of_sequences_decides_within_a_bucket():
    assert choose(ROWS, True, 256, 100, default="FLASH_ATTN") == "FLASH_ATTN"  # the 128-sequence row
    assert choose(ROWS, True, 256, 40, default="FLASH_ATTN") == "TORCH_SDPA_CUDNN"


def test_only_available_backends_with_good_numerics():
    assert choose(ROWS, True, 16384, 1, available=("TORCH_SDPA_CUDNN", "VIT_TRITON")) == "VIT_TRITON"
    bad = [row(129, 1024, True, 32, {"TORCH_SDPA_CUDNN": 264, "VIT_TRITON": 261}, bad=("TORCH_SDPA_CUDNN",))]
    assert choose(bad, True, 729, 32) == "VIT_TRITON"
    assert "TORCH_SDPA" not in CHOICES  # vLLM's per-sequence SDPA is never a per-call answer


def test_no_row_gives_the_default():
    assert choose(ROWS, True, 2048, 4) == DEFAULT  # no equal-length row for 1025..4096
    assert choose([], False, 64, 3, default="FLASH_ATTN") == "FLASH_ATTN"


def test_the_default_keeps_its_place_within_the_margin():
    close = [row(129, 1024, True, 32, {"FLASH_ATTN": 300, "VIT_TRITON": 305})]  # 1.7% faster: noise
    assert choose(close, True, 729, 32, default="FLASH_ATTN") == "FLASH_ATTN"
    clear = [row(129, 1024, True, 32, {"FLASH_ATTN": 300, "VIT_TRITON": 330})]
    assert choose(clear, True, 729, 32, default="FLASH_ATTN") == "VIT_TRITON"


# CLIP-B-like row (H100, graph TFLOP/s and host us per call): cuDNN fastest on the GPU, slowest
# to issue.
HOSTY = [dict(row(129, 1024, True, 64, {"FLASH_ATTN": 70, "TORCH_SDPA_CUDNN": 166, "VIT_TRITON": 142}),
              host_us={"FLASH_ATTN": 120.0, "TORCH_SDPA_CUDNN": 200.0, "VIT_TRITON": 110.0})]


def _flops(n, s, d=64, h=12):
    return 4.0 * n * s * s * d * h


def test_an_eager_call_pays_the_larger_of_gpu_and_host_time():
    fa = "FLASH_ATTN"
    small = _flops(64, 197)  # ~46 us on cuDNN's GPU time: its 200 us of host time decide
    assert choose(HOSTY, True, 197, 64, default=fa, call_flops=small) == "VIT_TRITON"
    assert choose(HOSTY, True, 197, 64, default=fa) == "TORCH_SDPA_CUDNN"  # captured: GPU time
    big = _flops(64, 1024)  # ~1.2 ms on the GPU: the host's 200 us are hidden
    assert choose(HOSTY, True, 1024, 64, default=fa, call_flops=big) == "TORCH_SDPA_CUDNN"
    # without every candidate's host time the row cannot weigh them: GPU time alone
    partial = [dict(HOSTY[0], host_us={"TORCH_SDPA_CUDNN": 200.0, "VIT_TRITON": 110.0})]
    assert choose(partial, True, 197, 64, default=fa, call_flops=small) == "TORCH_SDPA_CUDNN"
    # the default keeps its place when the host decides and its host is as quick (within MARGIN)
    even = [dict(HOSTY[0], host_us={"FLASH_ATTN": 110.0, "TORCH_SDPA_CUDNN": 200.0, "VIT_TRITON": 109.0})]
    assert choose(even, True, 197, 64, default=fa, call_flops=small) == "FLASH_ATTN"


def test_call_cost_is_gpu_time_at_the_row_rate_or_host_time():
    assert call_cost_us(100.0, 50.0, 1e10) == 100.0  # 1e10 FLOP at 100 TFLOP/s: 100 us of GPU
    assert call_cost_us(100.0, 150.0, 1e10) == 150.0
    assert call_cost_us(100.0, None, 1e10) == call_cost_us(100.0, 150.0, None) == 1e4


def test_call_flops_from_host_facts_and_a_capture_decides_by_gpu_time(monkeypatch):
    import torch

    from vit_backend_plugin.kernels import auto

    q = torch.empty(64 * 197, 12, 64)
    assert eager_call_flops(q, 197) == _flops(64, 197)
    # decide()'s lookups (the table on disk, the CUDA build) replaced by this row and all three
    # backends; what is tested is how decide passes the call's cost on
    monkeypatch.setattr(auto, "_rows", lambda *a: tuple(HOSTY))
    monkeypatch.setattr(auto, "_available", lambda *a: auto.CHOICES)
    auto.decide.cache_clear()
    try:
        args = ((9, 0), "bfloat16", 64, True, 197, 64, True)
        assert auto.decide(*args, False, _flops(64, 197)) == "VIT_TRITON"  # eager, host-bound
        assert auto.decide(*args, False, None) == "TORCH_SDPA_CUDNN"  # a graph capture (exact)
        # vLLM's encoder capture: no cuDNN there, and GPU time decides between the other two
        assert auto.decide(*args, True, _flops(64, 197)) == "VIT_TRITON"
    finally:
        auto.decide.cache_clear()
