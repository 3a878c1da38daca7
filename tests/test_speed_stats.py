"""Speed verdicts with intervals (report/speed_stats.py) on recorded repeats: the ratio, its 95%
interval (checked against scipy's own t-tests), the verdict and the resolution."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from vit_backend_plugin.report.speed_stats import (
    compare_arm,
    compare_metric,
    describe,
    fmt_resolution,
)


def rounds(metric: str, values: list[float | None], **extra) -> list[dict]:
    """Repeats as throughput.json records them: one per timed round, with round and slot."""
    return [{metric: v, "round": r, "slot": 2 * r, **extra} for r, v in enumerate(values)]


# A recorded throughput.json (vLLM offline on a GPU, 5 rounds interleaved A B, B A, ...): each
# round has its own random images, so whole rounds move together across arms.
RECORDED_BASELINE = {
    "engine": "vllm", "mode": "offline", "arm": "TORCH_SDPA",
    "repeats": [
        {"encoder_images_per_s": 812.0, "requests_per_s": 30.1, "ttft_mean_ms": 410.0,
         "ttft_p99_ms": 690.0, "wall_s": 1.06, "round": 0, "slot": 0},
        {"encoder_images_per_s": 760.0, "requests_per_s": 28.4, "ttft_mean_ms": 445.0,
         "ttft_p99_ms": 741.0, "wall_s": 1.13, "round": 1, "slot": 3},
        {"encoder_images_per_s": 835.0, "requests_per_s": 30.9, "ttft_mean_ms": 398.0,
         "ttft_p99_ms": 676.0, "wall_s": 1.04, "round": 2, "slot": 4},
        {"encoder_images_per_s": 790.0, "requests_per_s": 29.2, "ttft_mean_ms": 431.0,
         "ttft_p99_ms": 702.0, "wall_s": 1.10, "round": 3, "slot": 7},
        {"encoder_images_per_s": 801.0, "requests_per_s": 29.8, "ttft_mean_ms": 420.0,
         "ttft_p99_ms": 699.0, "wall_s": 1.07, "round": 4, "slot": 8},
    ],
    "interleave": {"together": True, "rounds": 5, "order": [[0, "TORCH_SDPA"], [0, "FLASH_ATTN"]]},
}
# FLASH_ATTN: the encoder ~8% faster in every round; requests/s up ~1.5% but noisy
RECORDED_CANDIDATE = {
    "engine": "vllm", "mode": "offline", "arm": "FLASH_ATTN",
    "repeats": [
        {"encoder_images_per_s": 880.0, "requests_per_s": 30.9, "ttft_mean_ms": 398.0,
         "ttft_p99_ms": 672.0, "round": 0, "slot": 1},
        {"encoder_images_per_s": 818.0, "requests_per_s": 28.1, "ttft_mean_ms": 452.0,
         "ttft_p99_ms": 735.0, "round": 1, "slot": 2},
        {"encoder_images_per_s": 905.0, "requests_per_s": 31.6, "ttft_mean_ms": 391.0,
         "ttft_p99_ms": 671.0, "round": 2, "slot": 5},
        {"encoder_images_per_s": 851.0, "requests_per_s": 29.0, "ttft_mean_ms": 433.0,
         "ttft_p99_ms": 707.0, "round": 3, "slot": 6},
        {"encoder_images_per_s": 866.0, "requests_per_s": 30.5, "ttft_mean_ms": 410.0,
         "ttft_p99_ms": 688.0, "round": 4, "slot": 9},
    ],
}


def log_ratios(base: list[dict], cand: list[dict], metric: str) -> list[float]:
    return [math.log(c[metric] / b[metric]) for b, c in zip(base, cand, strict=True)]


def test_paired_ratio_and_interval_are_the_t_interval_of_the_mean_log_ratio():
    base, cand = RECORDED_BASELINE["repeats"], RECORDED_CANDIDATE["repeats"]
    r = compare_metric(base, cand, "encoder_images_per_s")
    d = log_ratios(base, cand, "encoder_images_per_s")
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert r.method == "paired" and r.rounds == 5
    assert r.ratio == pytest.approx(math.exp(sum(d) / len(d)))
    assert (r.ci_low, r.ci_high) == pytest.approx((math.exp(ci.low), math.exp(ci.high)))
    assert r.ratio == pytest.approx(1.08, abs=0.01) and r.ci_low > 1
    assert r.verdict == "faster"
    # the resolution is the interval's half-width as a factor, on both sides of the ratio
    assert r.ci_high / r.ratio == pytest.approx(1 + r.resolution)
    assert r.ratio / r.ci_low == pytest.approx(1 + r.resolution)


def test_ratio_above_one_with_an_interval_containing_one_is_no_detectable_difference():
    base, cand = RECORDED_BASELINE["repeats"], RECORDED_CANDIDATE["repeats"]
    r = compare_metric(base, cand, "requests_per_s")
    assert r.ratio > 1 and r.ci_low < 1 < r.ci_high
    assert r.verdict == "no detectable difference"
    assert r.resolution > abs(r.ratio - 1)  # the run could not resolve a change this small


def test_latencies_lower_is_faster():
    base = rounds("ttft_mean_ms", [400.0, 452.0, 391.0, 430.0])
    cand = rounds("ttft_mean_ms", [361.0, 404.0, 350.0, 388.0])  # ~10% lower each round
    r = compare_metric(base, cand, "ttft_mean_ms")
    assert r.ratio < 1 and r.ci_high < 1 and not r.higher_is_better
    assert r.verdict == "faster"
    assert compare_metric(cand, base, "ttft_mean_ms").verdict == "slower"
    assert compare_metric(cand, base, "encoder_images_per_s").verdict == "not enough rounds"


def test_a_slower_rate():
    base = rounds("requests_per_s", [30.0, 28.0, 31.0])
    cand = rounds("requests_per_s", [27.0, 25.3, 27.8])
    r = compare_metric(base, cand, "requests_per_s")
    assert r.ci_high < 1 and r.verdict == "slower"


def test_pairs_by_round_not_by_position():
    base, cand = RECORDED_BASELINE["repeats"], RECORDED_CANDIDATE["repeats"]
    shuffled = [cand[i] for i in (3, 0, 4, 2, 1)]
    assert compare_metric(base, shuffled, "encoder_images_per_s") == compare_metric(
        base, cand, "encoder_images_per_s")
    # rounds only one arm timed are left out of the pairs
    partial = compare_metric(base, cand[:3], "encoder_images_per_s")
    assert (partial.rounds, partial.n_baseline, partial.n_candidate) == (3, 5, 3)


def test_pairing_resolves_what_the_same_numbers_unpaired_cannot():
    base, cand = RECORDED_BASELINE["repeats"], RECORDED_CANDIDATE["repeats"]
    strip = [[{k: v for k, v in x.items() if k != "round"} for x in arm] for arm in (base, cand)]
    paired = compare_metric(base, cand, "ttft_p99_ms")
    unpaired = compare_metric(*strip, "ttft_p99_ms")
    assert unpaired.method == "unpaired" and paired.method == "paired"
    assert paired.resolution < unpaired.resolution


def test_repeats_without_rounds_are_compared_unpaired_by_welchs_t_on_logs():
    base = [{"requests_per_s": v} for v in (30.1, 28.4, 30.9, 29.2)]  # an older run dir
    cand = [{"requests_per_s": v} for v in (33.0, 32.1, 34.2, 32.8, 33.5)]
    r = compare_metric(base, cand, "requests_per_s")
    lb = [math.log(x["requests_per_s"]) for x in base]
    lc = [math.log(x["requests_per_s"]) for x in cand]
    ci = stats.ttest_ind(lc, lb, equal_var=False).confidence_interval(0.95)
    assert (r.method, r.n_baseline, r.n_candidate, r.rounds) == ("unpaired", 4, 5, 4)
    assert (r.ci_low, r.ci_high) == pytest.approx((math.exp(ci.low), math.exp(ci.high)))
    assert r.verdict == "faster"
    assert "unpaired, 5 vs 4 round(s)" in describe(r)


def test_fewer_than_two_pairs_is_not_enough_rounds():
    one = compare_metric(rounds("requests_per_s", [30.0]), rounds("requests_per_s", [33.0]),
                         "requests_per_s")
    assert one.verdict == "not enough rounds" and one.ratio == pytest.approx(1.1)
    assert one.ci_low is None and one.resolution is None
    apart = compare_metric(rounds("requests_per_s", [30.0, 31.0]),
                           [{"requests_per_s": 33.0, "round": r} for r in (5, 6)], "requests_per_s")
    assert (apart.method, apart.rounds, apart.ratio, apart.verdict) == ("paired", 0, None, "not enough rounds")
    assert "no round with a value in both arms" in describe(apart)


def test_rounds_without_a_value_are_skipped():
    base = rounds("encoder_images_per_s", [800.0, None, 810.0, 790.0])  # a round the timer missed
    cand = rounds("encoder_images_per_s", [880.0, 870.0, 0, 872.0])  # 0: not a timing
    r = compare_metric(base, cand, "encoder_images_per_s")
    assert (r.rounds, r.n_baseline, r.n_candidate) == (2, 3, 3)


def test_the_arm_verdict_is_the_encoder_timer_when_both_arms_have_it():
    res = compare_arm(RECORDED_BASELINE["repeats"], RECORDED_CANDIDATE["repeats"])
    assert res.primary_metric == "encoder_images_per_s" and res.verdict == "faster"
    assert list(res.metrics) == ["encoder_images_per_s", "requests_per_s", "ttft_mean_ms", "ttft_p99_ms"]
    assert res.metrics["requests_per_s"].verdict == "no detectable difference"
    # off a GPU vLLM's encoder timer gives None: the verdict is then requests/s
    no_timer = [{**x, "encoder_images_per_s": None} for x in RECORDED_CANDIDATE["repeats"]]
    res = compare_arm(RECORDED_BASELINE["repeats"], no_timer)
    assert res.primary_metric == "requests_per_s" and "encoder_images_per_s" not in res.metrics
    assert res.verdict == "no detectable difference"


def test_hf_engine_arms_and_arms_without_timings():
    base = rounds("images_per_s", [40.0, 42.0, 41.0], prefill_tokens_per_s=9000.0)
    cand = rounds("images_per_s", [48.0, 50.1, 49.4], prefill_tokens_per_s=9900.0)
    res = compare_arm(base, cand)
    assert res.primary_metric == "images_per_s" and res.verdict == "faster"
    assert set(res.metrics) == {"images_per_s", "prefill_tokens_per_s"}
    assert compare_arm(base, []).verdict == "not measured"
    assert compare_arm(base, []).primary_metric is None


def test_the_resolution_reads_as_a_percentage_or_as_the_factor_a_wide_interval_spans():
    base, cand = RECORDED_BASELINE["repeats"], RECORDED_CANDIDATE["repeats"]
    line = describe(compare_metric(base, cand, "encoder_images_per_s"))
    assert line.startswith("encoder images/s ×1.0") and "5 paired round(s), resolves ±" in line
    assert fmt_resolution(0.021) == "±2.1%"
    assert fmt_resolution(6.294) == "×/÷7.29"  # 3 noisy CPU rounds: no percentage to speak of
