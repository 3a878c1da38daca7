"""VIT_AUTO's per-call policy (pure): which backend a call of a given shape goes to."""

from vit_backend_plugin.kernels.auto import CHOICES, DEFAULT, choose


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
