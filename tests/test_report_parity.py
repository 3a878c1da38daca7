"""The parity statistics: known cases and properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import stats

from vit_backend_plugin.report.parity import (
    Item,
    ParityThresholds,
    compare,
    mcnemar_exact_p,
    paired_delta_ci,
)


def items(outcomes: list[tuple[str, bool]]) -> dict[int, Item]:
    return {i: Item(a, c) for i, (a, c) in enumerate(outcomes)}


outcome_lists = st.integers(0, 120).flatmap(
    lambda n: st.tuples(
        st.lists(st.tuples(st.sampled_from("ABCD"), st.booleans()), min_size=n, max_size=n),
        st.lists(st.tuples(st.sampled_from("ABCD"), st.booleans()), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(outcome_lists)
def test_swapping_backends_mirrors_everything(pair):
    a, b = items(pair[0]), items(pair[1])
    ab, ba = compare(a, b), compare(b, a)
    assert ab.mcnemar_p == pytest.approx(ba.mcnemar_p)
    assert (ab.b, ab.c) == (ba.c, ba.b)
    assert ab.agreement == ba.agreement
    if ab.n:
        assert ab.delta_acc == pytest.approx(-ba.delta_acc)
        assert ab.ci_low == pytest.approx(-ba.ci_high) and ab.ci_high == pytest.approx(-ba.ci_low)
        assert ab.verdict == ba.verdict


@settings(max_examples=200, deadline=None)
@given(outcome_lists, st.floats(0.001, 0.5), st.floats(0, 20))
def test_ranges_and_never_pass_on_a_significant_difference(pair, alpha, tol):
    t = ParityThresholds(alpha=alpha, max_abs_delta_points=tol)
    r = compare(items(pair[0]), items(pair[1]), t)
    assert 0.0 <= r.mcnemar_p <= 1.0
    assert r.agreement is None or 0.0 <= r.agreement <= 1.0
    if r.n:
        assert -1.0 <= r.ci_low <= r.ci_high <= 1.0
        assert r.b + r.c <= r.n
    if r.mcnemar_p < alpha:
        assert r.verdict == "FAIL"
    if r.verdict == "PASS":
        assert -tol / 100 <= r.ci_low and r.ci_high <= tol / 100


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCD"), st.booleans()), min_size=1, max_size=300))
def test_identical_inputs(outcomes):
    r = compare(items(outcomes), items(outcomes))
    assert r.mcnemar_p == 1.0 and r.b == r.c == 0 and r.agreement == 1.0 and r.delta_acc == 0.0
    assert r.verdict in ("PASS", "INCONCLUSIVE")


def test_mcnemar_is_the_exact_binomial_test():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(10, 2) == pytest.approx(stats.binomtest(10, 12, 0.5).pvalue)
    assert mcnemar_exact_p(6, 0) == pytest.approx(2 * 0.5**6)


def test_ci_does_not_collapse_without_discordant_items():
    lo, hi = paired_delta_ci(0, 0, 10)
    assert lo < -0.1 and hi > 0.1  # 10 identical answers prove little
    lo, hi = paired_delta_ci(0, 0, 1000)
    assert -0.003 < lo < 0 < hi < 0.003


def test_verdicts():
    same = items([("A", i % 3 == 0) for i in range(300)])
    assert compare(same, same).verdict == "PASS"
    tiny = items([("A", True)] * 10)
    r = compare(tiny, tiny)
    assert r.verdict == "INCONCLUSIVE" and "min_items" in r.reason
    worse = {k: (Item("B", False) if k % 5 == 0 else v) for k, v in items([("A", True)] * 300).items()}
    r = compare(items([("A", True)] * 300), worse)
    assert r.verdict == "FAIL" and r.b == 60 and r.c == 0 and r.agreement == pytest.approx(0.8)
    # as many gained as lost: no significant difference, but the CI is far too wide to PASS
    half = items([("A", i % 2 == 0) for i in range(300)])
    churn = {k: Item("B", not v.correct) if k % 5 == 0 else v for k, v in half.items()}
    r = compare(half, churn)
    assert r.b == r.c == 30
    assert r.verdict == "INCONCLUSIVE" and r.mcnemar_p > 0.05


def test_items_answered_by_one_backend_block_a_pass():
    same = items([("A", i % 2 == 0) for i in range(400)])
    fewer = {k: v for k, v in same.items() if k < 390}
    r = compare(same, fewer)
    assert r.only_baseline == 10 and r.verdict == "INCONCLUSIVE" and "only one backend" in r.reason


def test_no_common_items():
    r = compare({1: Item("A", True)}, {2: Item("A", True)})
    assert r.n == 0 and r.verdict == "INCONCLUSIVE" and r.delta_acc is None


def test_thresholds_reject_unknown_keys_and_bad_values():
    with pytest.raises(ValidationError):
        ParityThresholds(alpha=0.05, tolerance=3)
    with pytest.raises(ValidationError):
        ParityThresholds(alpha=1.5)
    assert ParityThresholds.model_validate({"max_abs_delta_points": 5}).max_abs_delta_points == 5
