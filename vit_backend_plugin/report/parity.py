"""Paired accuracy parity between two backends on the same items: pure statistics, no I/O.

Both backends answered the same MMMU items (same task, same ``doc_id``). For each item we
know the parsed answer and whether it was scored correct. From the 2x2 table of
correctness:

    b = items the baseline got right and the candidate got wrong
    c = items the baseline got wrong and the candidate got right
    delta_acc = acc(candidate) - acc(baseline) = (c - b) / n

* McNemar's exact test: under "no difference", each discordant item is a fair coin,
  so ``p = binomtest(b, b + c, 0.5)`` (two-sided). Exact, valid at any n.
* CI of delta_acc: Agresti & Min (2005) adjusted Wald interval for matched proportions
  (add 0.5 to every cell). Unlike the plain Wald interval it does not collapse to
  [0, 0] when no item is discordant, so "10 identical answers" is not "proof" of parity.
* Verdict rules are on :class:`ParityThresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
# the report adds ERROR: an arm (or the baseline) has no per-item results to compare
ReportVerdict = Literal[Verdict, "ERROR"]


class ParityThresholds(BaseModel):
    """When a candidate backend's accuracy counts as the same as the baseline's.

    Set from ``config["parity"]`` of a run (unknown keys are an error). The verdict, in order:

    1. **FAIL** if McNemar's exact test rejects "same accuracy" at ``alpha``
       (a significant difference is a difference, however few the items).
    2. **INCONCLUSIVE** if fewer than ``min_items`` items were answered by both.
    3. **FAIL** if the whole ``confidence`` CI of delta acc lies outside
       ±``max_abs_delta_points`` (accuracy moved by more than the tolerance).
    4. **PASS** if the whole CI lies within ±``max_abs_delta_points``
       ("large enough to say so": the data rule out a move bigger than the tolerance).
    5. **INCONCLUSIVE** otherwise: the CI is wider than the tolerance band, i.e. the sample
       is too small, or the backends disagree on too many items, to rule such a move out.

    A PASS becomes INCONCLUSIVE when some items were answered by only one backend.

    With the defaults, two backends that agree on every item need about 200 items for
    PASS (CI half-width ~ z / (n + 2)); a tiny demo set should widen the tolerance.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(0.05, gt=0, lt=1, description="McNemar significance level")
    max_abs_delta_points: float = Field(
        1.0, ge=0, le=100, description="tolerated |acc(candidate) - acc(baseline)|, in points (%)"
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the delta-acc CI")
    min_items: int = Field(30, ge=1, description="fewer paired items than this: INCONCLUSIVE")


@dataclass(frozen=True)
class Item:
    """One backend's outcome on one item."""

    answer: str | None  # parsed answer (lm-eval's filtered response), None if not logged
    correct: bool


@dataclass(frozen=True)
class ParityResult:
    n: int  # items answered by both
    agreement: float | None  # share of paired items with the same parsed answer
    b: int  # baseline right, candidate wrong
    c: int  # baseline wrong, candidate right
    mcnemar_p: float
    acc_baseline: float | None
    acc_candidate: float | None
    delta_acc: float | None  # fraction, candidate - baseline
    ci_low: float | None
    ci_high: float | None
    only_baseline: int  # items only the baseline answered (not compared)
    only_candidate: int
    verdict: Verdict
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when none)."""
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(b, b + c, 0.5).pvalue)


def paired_delta_ci(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Agresti-Min CI for acc(candidate) - acc(baseline) = (c - b) / n, clipped to [-1, 1]."""
    if n <= 0:
        return (-1.0, 1.0)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    m = n + 2  # 0.5 added to each of the 4 cells
    p_c, p_b = (c + 0.5) / m, (b + 0.5) / m
    delta = p_c - p_b
    se = math.sqrt(max(p_c + p_b - delta**2, 0.0) / m)
    return (max(-1.0, delta - z * se), min(1.0, delta + z * se))


def agreement_rate(answers_a: list[Any], answers_b: list[Any]) -> float | None:
    """Share of positions where both answers are equal; None for no items."""
    if len(answers_a) != len(answers_b):
        raise ValueError("answer lists must be paired (same length)")
    if not answers_a:
        return None
    return sum(a == b for a, b in zip(answers_a, answers_b, strict=True)) / len(answers_a)


def compare(
    baseline: Mapping[Hashable, Item],
    candidate: Mapping[Hashable, Item],
    thresholds: ParityThresholds | None = None,
) -> ParityResult:
    """Compare two backends on the items both answered (keys, e.g. ``(task, doc_id)``)."""
    t = thresholds or ParityThresholds()
    keys = [k for k in baseline if k in candidate]
    n = len(keys)
    b = sum(baseline[k].correct and not candidate[k].correct for k in keys)
    c = sum(candidate[k].correct and not baseline[k].correct for k in keys)
    agreement = agreement_rate([baseline[k].answer for k in keys], [candidate[k].answer for k in keys])
    p = mcnemar_exact_p(b, c)
    common: dict[str, Any] = dict(
        n=n, agreement=agreement, b=b, c=c, mcnemar_p=p,
        only_baseline=len(baseline) - n, only_candidate=len(candidate) - n,
    )
    if n == 0:
        return ParityResult(
            **common, acc_baseline=None, acc_candidate=None, delta_acc=None, ci_low=None,
            ci_high=None, verdict="INCONCLUSIVE", reason="no items answered by both backends",
        )
    acc_a = sum(baseline[k].correct for k in keys) / n
    acc_b = sum(candidate[k].correct for k in keys) / n
    delta = (c - b) / n
    lo, hi = paired_delta_ci(b, c, n, t.confidence)
    verdict, reason = _verdict(t, n=n, b=b, c=c, p=p, delta=delta, lo=lo, hi=hi)
    unpaired = common["only_baseline"] + common["only_candidate"]
    if verdict == "PASS" and unpaired:  # the runs did not answer the same items
        verdict, reason = "INCONCLUSIVE", f"{unpaired} item(s) answered by only one backend; {reason}"
    return ParityResult(
        **common, acc_baseline=acc_a, acc_candidate=acc_b, delta_acc=delta,
        ci_low=lo, ci_high=hi, verdict=verdict, reason=reason,
    )


def _verdict(
    t: ParityThresholds, *, n: int, b: int, c: int, p: float, delta: float, lo: float, hi: float
) -> tuple[Verdict, str]:
    tol = t.max_abs_delta_points / 100
    pts = f"Δacc {delta * 100:+.2f} pts, {t.confidence:.0%} CI [{lo * 100:+.2f}, {hi * 100:+.2f}]"
    if p < t.alpha:
        return "FAIL", f"significant difference (McNemar p={p:.3g} < {t.alpha:g}; b={b}, c={c}); {pts}"
    if n < t.min_items:
        return "INCONCLUSIVE", f"only {n} paired items (< min_items={t.min_items}); {pts}"
    if lo > tol or hi < -tol:
        return "FAIL", f"{pts} lies outside ±{t.max_abs_delta_points:g} pts"
    if -tol <= lo and hi <= tol:
        return "PASS", f"no significant difference (McNemar p={p:.3g}); {pts} within ±{t.max_abs_delta_points:g} pts"
    return "INCONCLUSIVE", (
        f"no significant difference (McNemar p={p:.3g}) but {pts} is wider than "
        f"±{t.max_abs_delta_points:g} pts: too few items (n={n}) or too many discordant (b+c={b + c})"
    )
