"""VIT_AUTO's per-call policy (pure): which backend a call of a given shape goes to, which
backends may run it (the resolver's rule), and how near a measured row must be to decide."""

import itertools
import math

import pytest

from vit_backend_plugin.kernels import auto
from vit_backend_plugin.kernels.auto import (
    CHOICES,
    DEFAULT,
    available_choices,
    call_cost_us,
    choose,
    eager_call_flops,
)
from vit_backend_plugin.kernels.row_distance import nearest_row_distance, nearness_limits, row_shape
from vit_backend_plugin.selection import probe
from vit_backend_plugin.selection import speed_table as st
from vit_backend_plugin.selection.catalog import FEATURES
from vit_backend_plugin.selection.resolver import BackendSelectionError, ResolveRequest, resolve


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


# Every feature VIT_AUTO's three choices need (vLLM's FA, cuDNN SDPA, our kernel).
GPU_FEATURES = frozenset({"vllm_flash_attn", "torch_cudnn_sdpa", "triton", "vit_triton_kernel"})


def entry(r, cap=(9, 0), dtype="bfloat16", head=64, shape=""):
    """A speed-table entry (what `vit-parity tune` writes) from one of the rows above."""
    return st.SpeedEntry(device="test GPU", capability=cap, dtype=dtype, head_size=head,
                         seq_len=tuple(r["seq_len"]), shape=shape, equal_lengths=r["equal_lengths"],
                         num_seqs=r["num_seqs"], tflops=r["tflops"], numerics_ok=r["numerics_ok"],
                         host_us=r.get("host_us", {}))


def _clear():
    auto._available.cache_clear()
    auto.table_rows.cache_clear()
    auto.decide.cache_clear()


@pytest.fixture
def device(monkeypatch, tmp_path):
    """decide() on a CUDA device whose process has ``features``, with a user speed table of
    ``entries`` (none: the shipped table). The availability rule, the table lookup and the policy
    are real; only what the hardware probe would find is given."""
    def setup(features=GPU_FEATURES, entries=()):
        monkeypatch.setattr(probe, "runtime_features", lambda platform: frozenset(features))
        monkeypatch.setenv("VIT_SPEED_TABLE", str(tmp_path / "user_table.json"))
        if entries:
            st.save_user(st.SpeedTable(entries=list(entries)))
        _clear()

    yield setup
    _clear()


def test_call_flops_from_host_facts_and_a_capture_decides_by_gpu_time(device):
    import torch

    q = torch.empty(64 * 197, 12, 64)
    assert eager_call_flops(q, 197) == _flops(64, 197)
    device(entries=[entry(HOSTY[0])])
    args = ((9, 0), "bfloat16", 64, True, 197, 64, True)
    assert auto.decide(*args, False, _flops(64, 197)) == "VIT_TRITON"  # eager, host-bound
    assert auto.decide(*args, False, None) == "TORCH_SDPA_CUDNN"  # a graph capture (exact)
    # vLLM's encoder capture: no cuDNN there, and GPU time decides between the other two
    assert auto.decide(*args, True, _flops(64, 197)) == "VIT_TRITON"


# ------------------------------------------------------- which choices may run: the resolver's rule


def test_available_choices_are_what_the_resolver_accepts():
    """VIT_AUTO may route a call to a backend exactly when the resolver would run that backend
    chosen by name on the same device: one rule (catalog + features), over a grid of devices."""
    feature_sets = [GPU_FEATURES, GPU_FEATURES - {"vllm_flash_attn"}, GPU_FEATURES - {"torch_cudnn_sdpa"},
                    frozenset({"triton", "vit_triton_kernel"}), frozenset(FEATURES)]
    seen = set()
    for cap, dtype, head, feats in itertools.product(
            [(7, 5), (8, 0), (9, 0), (12, 0)], ["float16", "bfloat16"], [32, 64, 72, 80, 100, 256, 264],
            feature_sets):
        expected = []
        for name in CHOICES:
            try:
                resolve(ResolveRequest(head_size=head, dtype=dtype, capability=cap, features=feats,
                                       explicit=name))
                expected.append(name)
            except BackendSelectionError:
                pass
        got = available_choices(cap, dtype, head, feats)
        assert got == tuple(expected), (cap, dtype, head, sorted(feats))
        seen.add(got)
    assert len(seen) >= 4  # the grid reaches several different answers, () included
    assert () in seen


def test_no_flash_attention_or_cudnn_below_their_compute_capability():
    # Turing (7.5) runs VIT_AUTO in fp16 (the catalog allows it); vLLM's FA and cuDNN need 8.0.
    assert available_choices((7, 5), "float16", 64, GPU_FEATURES) == ("VIT_TRITON",)
    assert available_choices((9, 0), "bfloat16", 80, GPU_FEATURES) == CHOICES
    assert available_choices((9, 0), "bfloat16", 100, GPU_FEATURES) == ("VIT_TRITON",)  # 100 % 8
    assert available_choices((9, 0), "bfloat16", 80, GPU_FEATURES - {"vllm_flash_attn"}) == (
        "TORCH_SDPA_CUDNN", "VIT_TRITON")


def test_decide_on_turing_never_routes_to_a_kernel_that_cannot_run(device):
    """A Turing table row where FlashAttention and cuDNN measured fastest (say, a table made
    elsewhere and copied): on (7, 5) VIT_AUTO still runs our kernel, through the real rule."""
    turing = row(129, 1024, True, 32, {"FLASH_ATTN": 300, "TORCH_SDPA_CUDNN": 330, "VIT_TRITON": 100})
    device(entries=[entry(turing, cap=(7, 5), dtype="float16", shape="t, 32 x 577"),
                    entry(turing, cap=(9, 0), dtype="float16", shape="h, 32 x 577")])
    assert choose([turing], True, 577, 32, default="FLASH_ATTN") == "TORCH_SDPA_CUDNN"  # the row's pick
    assert auto.decide((7, 5), "float16", 64, True, 577, 32, True, False, None, 16) == "VIT_TRITON"
    assert auto.decide((9, 0), "float16", 64, True, 577, 32, True, False, None, 16) == "TORCH_SDPA_CUDNN"


def test_this_process_features_come_from_the_probe(monkeypatch):
    """Nothing replaced: what this machine's probe finds. Triton is installed here, so our kernel
    is available on a CUDA device; vLLM's FA and cuDNN never are at 7.5."""
    pytest.importorskip("triton")
    _clear()
    try:
        assert "VIT_TRITON" in auto._available((9, 0), "bfloat16", 80)
        assert set(auto._available((7, 5), "float16", 64)) <= {"VIT_TRITON"}
        assert auto._available(None, "float32", 64) == (DEFAULT,)  # not a CUDA tensor
        probe.runtime_features.cache_clear()
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert {"vit_triton_kernel", "triton_interpreter"} <= probe.runtime_features("cpu")
    finally:
        probe.runtime_features.cache_clear()
        _clear()


# ------------------------------------------------------- how near a row must be to decide


def _oct(axis):
    return nearness_limits()["max_octaves"][axis]


NEAR_ROW = row(129, 1024, True, 32, {"FLASH_ATTN": 246, "TORCH_SDPA_CUDNN": 300, "VIT_TRITON": 261})


def test_a_call_near_a_row_keeps_the_rows_choice():
    rows = [dict(NEAR_ROW, shape="s, 32 x 512")]
    fa = "FLASH_ATTN"
    assert choose(rows, True, 512, 32, default=fa, num_heads=16) == "TORCH_SDPA_CUDNN"
    # up to each limit on each axis (the limits are data): still the row's choice
    n_edge = round(32 * 2 ** _oct("num_seqs"))
    s_edge = min(1024, round(512 * 2 ** _oct("max_seqlen")))
    h_edge = round(16 * 2 ** _oct("num_heads"))
    for call in [dict(max_seqlen=s_edge, num_seqs=32, num_heads=16),
                 dict(max_seqlen=512, num_seqs=n_edge, num_heads=16),
                 dict(max_seqlen=512, num_seqs=32, num_heads=h_edge)]:
        d = nearest_row_distance(rows, equal_lengths=True, **call)
        assert d["near"], (call, d)
        assert choose(rows, True, call["max_seqlen"], call["num_seqs"], default=fa,
                      num_heads=call["num_heads"]) == "TORCH_SDPA_CUDNN"


def test_a_call_far_from_every_row_falls_back_to_stocks_backend():
    rows = [dict(NEAR_ROW, shape="s, 32 x 512")]
    fa = "FLASH_ATTN"
    far_n = math.ceil(32 * 2 ** (_oct("num_seqs") + 0.5))
    far_h = math.ceil(16 * 2 ** (_oct("num_heads") + 0.5))
    far_s = math.floor(512 / 2 ** (_oct("max_seqlen") + 0.5))
    assert far_s >= 129  # still inside the row's bucket: only the distance says no
    for call in [dict(max_seqlen=512, num_seqs=far_n, num_heads=16),
                 dict(max_seqlen=512, num_seqs=32, num_heads=far_h),
                 dict(max_seqlen=far_s, num_seqs=32, num_heads=16)]:
        d = nearest_row_distance(rows, equal_lengths=True, **call)
        assert d["in_bucket"] and not d["near"], call
        # FLASH_ATTN where it runs the call (stock vLLM's choice) ...
        assert choose(rows, True, call["max_seqlen"], call["num_seqs"], default=fa,
                      num_heads=call["num_heads"]) == fa
        # ... else our kernel, even where the row's winner could run
        assert choose(rows, True, call["max_seqlen"], call["num_seqs"],
                      available=("TORCH_SDPA_CUDNN", "VIT_TRITON"),
                      num_heads=call["num_heads"]) == DEFAULT


def test_nearest_row_distance_says_what_it_measured_and_how_far():
    rows = [
        dict(row(129, 1024, True, 16, {"FLASH_ATTN": 1.0}), shape="a d80, 16 x 1024"),
        dict(row(129, 1024, True, 128, {"FLASH_ATTN": 1.0}), shape="b d80 @12, 128 x 256"),
        dict(row(1, 4096, False, 8, {"FLASH_ATTN": 1.0}), shape="mixed d80"),
    ]
    d = nearest_row_distance(rows, equal_lengths=True, max_seqlen=300, num_seqs=100, num_heads=12)
    assert (d["index"], d["shape"], d["in_bucket"]) == (1, "b d80 @12, 128 x 256", True)
    assert d["measured"] == {"max_seqlen": 256, "num_seqs": 128, "num_heads": 12}
    want = {"max_seqlen": math.log2(300 / 256), "num_seqs": math.log2(128 / 100), "num_heads": 0.0}
    assert d["octaves"] == pytest.approx(want)
    assert d["total_octaves"] == pytest.approx(sum(want.values()))
    assert d["max_octaves"] == nearness_limits()["max_octaves"] and d["near"]
    # no "@H" in the shape text: bench-kernels' default (data); heads not given: not compared
    d = nearest_row_distance(rows, equal_lengths=True, max_seqlen=1024, num_seqs=16)
    assert d["index"] == 0 and d["measured"]["num_heads"] == nearness_limits()["default_num_heads"]
    assert d["octaves"]["num_heads"] is None
    # a mixed-length row names no length: octaves outside its bucket; only rows of the call's kind
    d = nearest_row_distance(rows, equal_lengths=False, max_seqlen=8192, num_seqs=8, num_heads=16)
    assert d["index"] == 2 and d["measured"]["max_seqlen"] is None
    assert d["octaves"]["max_seqlen"] == pytest.approx(1.0) and not d["in_bucket"] and not d["near"]
    assert nearest_row_distance(rows[:2], equal_lengths=False, max_seqlen=64, num_seqs=8) is None
    assert nearest_row_distance(rows, equal_lengths=True, max_seqlen=0, num_seqs=0) is None


def _shipped(head):
    return [e.model_dump() for e in st.load_shipped().matching((9, 0), "bfloat16", head)]


@pytest.mark.parametrize("head,seqs,seqlen,heads", [
    (80, 32, 256, 16),  # 32 video-frame-size sequences at d80: 0.84x the best single on the H100
    (64, 2, 4096, 8),  # two very long d64 sequences, 8 heads: 0.94x
])
def test_h100_shapes_outside_the_shipped_table_fall_back_to_flash_attention(device, head, seqs, seqlen, heads):
    rows = _shipped(head)
    d = nearest_row_distance(rows, equal_lengths=True, max_seqlen=seqlen, num_seqs=seqs, num_heads=heads)
    assert d is not None and d["in_bucket"] and not d["near"], d  # a row of its bucket, but far
    # a row of the bucket measured another backend faster at its own shape: the rule that picked
    # by bucket and number of sequences alone ran that backend here
    bucket = [r for r in rows if r["equal_lengths"] and r["seq_len"][0] <= seqlen <= r["seq_len"][1]]
    own = [choose([r], True, row_shape(r)["max_seqlen"], r["num_seqs"], default="FLASH_ATTN") for r in bucket]
    assert set(own) - {"FLASH_ATTN"}
    device()  # no user table: the shipped one; every choice available, as on the H100
    flops = 4.0 * seqs * seqlen * seqlen * head * heads
    for capturing, call_flops in ((False, flops), (False, None), (True, None)):
        assert auto.decide((9, 0), "bfloat16", head, True, seqlen, seqs, True, capturing, call_flops,
                           heads) == "FLASH_ATTN"


def test_a_shipped_rows_own_shape_keeps_its_choice_and_heads_are_in_the_cache_key(device):
    rows = _shipped(80)
    i = next(i for i, r in enumerate(rows) if r["equal_lengths"] and "16 x 1024" in r["shape"])
    own = choose([rows[i]], True, 1024, 16, default="FLASH_ATTN")
    assert own != "FLASH_ATTN"  # the row measured another backend faster (else nothing to tell)
    device()
    args = ((9, 0), "bfloat16", 80, True, 1024, 16, True, False, None)
    assert auto.decide(*args, 16) == own
    far_heads = math.ceil(16 / 2 ** (_oct("num_heads") + 0.5))
    assert auto.decide(*args, far_heads) == "FLASH_ATTN"  # same call, far fewer heads
    assert auto.decide(*args, 16) == own
