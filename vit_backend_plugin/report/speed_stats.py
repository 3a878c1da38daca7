"""An arm's speed against the baseline from the timed rounds of throughput.json: pure statistics.

Each arm's ``repeats`` hold one set of metrics per timed round. Round r of every arm timed the
same random images and the rounds are interleaved across arms, so a metric is compared round by
round, on the log scale (a ratio interval, and one slow round does not dominate):

    d_r   = log(candidate_r / baseline_r)        for the rounds both arms timed (n pairs)
    ratio = exp(mean d)                          the geometric mean of the per-round ratios
    CI    = exp(mean d ± t(1 - (1 - conf) / 2, n - 1) · sd(d) / sqrt(n))

Repeats without ``"round"`` (run dirs from before interleaving) cannot be paired: the two arms'
log values are compared unpaired (Welch's t, Welch-Satterthwaite degrees of freedom).

Verdict, with the metric's direction (rates: higher is better; latencies such as TTFT: lower):
"faster" / "slower" when the whole interval lies on one side of 1, else "no detectable
difference"; "not enough rounds" with fewer than 2 pairs (2 per arm unpaired): no interval.

Resolution: ``exp(t · se) - 1``, the interval's half-width as a factor. A ratio nearer 1 than
±resolution is not told from 1 by this run: it is the smallest ratio the run could resolve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from scipy import stats

from vit_backend_plugin.report.metrics import SPEED_METRICS

SpeedVerdict = Literal["faster", "slower", "no detectable difference", "not enough rounds", "not measured"]
CONFIDENCE = 0.95
# The comparisons shown: vLLM's headline metrics, or the HF engine's when it has none of them.
HEADLINE = ("encoder_images_per_s", "requests_per_s", "ttft_mean_ms", "ttft_p99_ms")
HF_HEADLINE = ("images_per_s", "prefill_tokens_per_s")
# The one metric an arm's speed verdict is from: the encoder's own timer when both arms have it
# (it isolates the ViT, the thing under test), else the end-to-end rate.
PRIMARY = ("encoder_images_per_s", "requests_per_s", "images_per_s")


@dataclass(frozen=True)
class SpeedRatio:
    """One metric, candidate against baseline."""

    metric: str
    higher_is_better: bool
    method: Literal["paired", "unpaired"]
    rounds: int  # pairs (paired); the smaller arm's count (unpaired)
    n_baseline: int  # rounds with a value, per arm
    n_candidate: int
    ratio: float | None  # candidate / baseline of the metric itself (TTFT < 1: faster)
    ci_low: float | None
    ci_high: float | None
    resolution: float | None  # e.g. 0.021: ratios within ×(1 ± 2.1%) are not resolved
    verdict: SpeedVerdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArmSpeed:
    verdict: SpeedVerdict  # the primary metric's
    primary_metric: str | None
    metrics: dict[str, SpeedRatio] = field(default_factory=dict)

    @property
    def primary(self) -> SpeedRatio | None:
        return self.metrics.get(self.primary_metric) if self.primary_metric else None

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "primary_metric": self.primary_metric,
                "metrics": {k: r.to_dict() for k, r in self.metrics.items()}}


def higher_is_better(metric: str) -> bool:
    if metric in SPEED_METRICS:
        return SPEED_METRICS[metric][1]
    return not metric.endswith("_ms")


def _value(x: Any) -> float | None:
    """A usable timing: a positive finite number (None: the timer did not run that round)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not (math.isfinite(x) and x > 0):
        return None
    return float(x)


def by_round(repeats: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]] | None:
    """round -> repeat when every repeat names a distinct round; None: the rounds cannot pair."""
    rounds = [r.get("round") for r in repeats]
    if not rounds or not all(isinstance(x, int) and not isinstance(x, bool) for x in rounds):
        return None
    return dict(zip(rounds, repeats, strict=True)) if len(set(rounds)) == len(rounds) else None


def _verdict(lo: float, hi: float, up_is_good: bool) -> SpeedVerdict:
    if lo > 1:
        return "faster" if up_is_good else "slower"
    if hi < 1:
        return "slower" if up_is_good else "faster"
    return "no detectable difference"


def _interval(mean: float, se: float, df: float, confidence: float) -> tuple[float, float, float]:
    """(low, high, resolution) as ratios, from a mean log ratio and its standard error."""
    half = 0.0 if se == 0 else float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return math.exp(mean - half), math.exp(mean + half), math.exp(half) - 1


def _mean_and_var(xs: list[float]) -> tuple[float, float]:
    """Sample mean and the variance of that mean (s² / n)."""
    n = len(xs)
    mean = sum(xs) / n
    return mean, sum((x - mean) ** 2 for x in xs) / (n - 1) / n


def _logs(repeats: Sequence[Mapping[str, Any]], metric: str) -> list[float]:
    return [math.log(v) for x in repeats if (v := _value(x.get(metric))) is not None]


def compare_metric(
    repeats_baseline: Sequence[Mapping[str, Any]],
    repeats_candidate: Sequence[Mapping[str, Any]],
    metric: str,
    confidence: float = CONFIDENCE,
) -> SpeedRatio:
    """``metric`` of the candidate's rounds against the baseline's (paired by round if both can)."""
    up = higher_is_better(metric)
    lb, lc = _logs(repeats_baseline, metric), _logs(repeats_candidate, metric)
    rb, rc = by_round(repeats_baseline), by_round(repeats_candidate)
    if rb is not None and rc is not None:
        method = "paired"
        d = [math.log(c / b) for r in sorted(rb.keys() & rc.keys())
             if (b := _value(rb[r].get(metric))) is not None and (c := _value(rc[r].get(metric))) is not None]
        rounds = len(d)
    else:
        method, d, rounds = "unpaired", [], min(len(lb), len(lc))
    common = dict(metric=metric, higher_is_better=up, method=method, rounds=rounds,
                  n_baseline=len(lb), n_candidate=len(lc))
    if rounds < 2:  # no variance to build an interval from: the ratio alone, if any
        if method == "paired":
            point = d[0] if d else None
        else:
            point = sum(lc) / len(lc) - sum(lb) / len(lb) if lb and lc else None
        return SpeedRatio(**common, ratio=None if point is None else math.exp(point), ci_low=None,
                          ci_high=None, resolution=None, verdict="not enough rounds")
    if method == "paired":
        mean, var = _mean_and_var(d)
        df = rounds - 1
    else:  # Welch's t on the logs
        (mb, vb), (mc, vc) = _mean_and_var(lb), _mean_and_var(lc)
        mean, var = mc - mb, vb + vc
        df = var**2 / (vb**2 / (len(lb) - 1) + vc**2 / (len(lc) - 1)) if var else len(lb) + len(lc) - 2
    lo, hi, resolution = _interval(mean, math.sqrt(var), df, confidence)
    return SpeedRatio(**common, ratio=math.exp(mean), ci_low=lo, ci_high=hi, resolution=resolution,
                      verdict=_verdict(lo, hi, up))


def _has(repeats: Sequence[Mapping[str, Any]], metric: str) -> bool:
    return any(_value(r.get(metric)) is not None for r in repeats)


def compare_arm(
    repeats_baseline: Sequence[Mapping[str, Any]],
    repeats_candidate: Sequence[Mapping[str, Any]],
    confidence: float = CONFIDENCE,
) -> ArmSpeed:
    """Every headline metric both arms timed; the verdict is the primary metric's."""
    both = [m for m in (*HEADLINE, *HF_HEADLINE)
            if _has(repeats_baseline, m) and _has(repeats_candidate, m)]
    shown = [m for m in both if m in HEADLINE] or both
    metrics = {m: compare_metric(repeats_baseline, repeats_candidate, m, confidence) for m in shown}
    primary = next((m for m in PRIMARY if m in both), None)
    if primary is None:
        return ArmSpeed("not measured", None, metrics)
    if primary not in metrics:
        metrics[primary] = compare_metric(repeats_baseline, repeats_candidate, primary, confidence)
    return ArmSpeed(metrics[primary].verdict, primary, metrics)


def fmt_resolution(resolution: float) -> str:
    """±2.1% while it reads as a percentage; a wide interval as the factor it spans (×/÷7.3)."""
    return f"±{resolution:.1%}" if resolution < 1 else f"×/÷{1 + resolution:.3g}"


def describe(r: SpeedRatio, confidence: float = CONFIDENCE) -> str:
    """One line for a comparison, e.g. ``encoder images/s ×1.083 [1.051, 1.116], 10 paired
    rounds, resolves ±3.1%``."""
    label = SPEED_METRICS.get(r.metric, (r.metric, True))[0]
    how = (f"{r.rounds} paired round(s)" if r.method == "paired"
           else f"unpaired, {r.n_candidate} vs {r.n_baseline} round(s)")
    if r.ratio is None:
        return f"{label}: no round with a value in both arms ({how})"
    if r.ci_low is None:
        return f"{label} ×{r.ratio:.3f}, {how}: no interval below 2 rounds"
    return (f"{label} ×{r.ratio:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] ({confidence:.0%}), {how}, "
            f"resolves {fmt_resolution(r.resolution)}")


def control_spread(ci_low: float | None, ci_high: float | None) -> tuple[float, float] | None:
    """The ratios an A/A control shows two engines of the same settings can read apart: its
    interval and that interval's mirror image about 1 (the control could have come out either
    way round). None without an interval."""
    if ci_low is None or ci_high is None or ci_low <= 0 or ci_high <= 0:
        return None
    return min(ci_low, 1 / ci_high, 1.0), max(ci_high, 1 / ci_low, 1.0)


def within_spread(ratio: float | None, spread: tuple[float, float] | None) -> bool | None:
    """Whether an arm's ratio lies inside the control's spread: then the run cannot tell the
    arm's difference from the difference between two engines of one setting. None: unknown."""
    if ratio is None or spread is None:
        return None
    return spread[0] <= ratio <= spread[1]
