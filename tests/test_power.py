"""The power figure (report/power.py) against a simulation of the report's own paired test:
at the minimum detectable change, McNemar's exact test as parity.py runs it rejects ~80% of the
time."""

from __future__ import annotations

import numpy as np
import pytest

from vit_backend_plugin.report.parity import Item, compare, mcnemar_exact_p
from vit_backend_plugin.report.power import _rejection_counts, mcnemar_power, min_detectable_delta

TRIALS = 4000  # simulated power's standard error: sqrt(0.8 * 0.2 / 4000) = 0.0063


def simulated_power(n: int, discordance: float, delta: float, alpha: float, seed: int) -> float:
    """Runs of n items with the assumed discordance (at least |delta|, all of it one way beyond
    the observed), each judged by parity.py's McNemar exact p-value."""
    psi = max(discordance, delta)
    probs = [(psi + delta) / 2, (psi - delta) / 2, 1 - psi]  # c (candidate right only), b, agree
    cells = np.random.default_rng(seed).multinomial(n, probs, size=TRIALS)
    cache: dict[tuple[int, int], bool] = {}
    hits = 0
    for c, b, _ in cells:
        key = (int(b), int(c))
        if key not in cache:
            cache[key] = mcnemar_exact_p(*key) < alpha
        hits += cache[key]
    return hits / TRIALS


@pytest.mark.parametrize("n, discordant, alpha", [
    (200, 10, 0.05),   # a small MMMU slice, a few disagreements
    (900, 60, 0.05),   # MMMU val
    (120, 0, 0.05),    # no discordant item observed
    (300, 30, 0.01),   # a stricter alpha
])
def test_the_figure_has_80_percent_power_in_a_simulation(n, discordant, alpha):
    delta = min_detectable_delta(n, discordant, alpha)
    assert delta is not None and 0 < delta < 1
    sim = simulated_power(n, discordant / n, delta, alpha, seed=n + discordant)
    assert sim == pytest.approx(0.8, abs=0.025)
    # and it is the smallest such change: a change 15% smaller is caught clearly less often
    smaller = simulated_power(n, discordant / n, 0.85 * delta, alpha, seed=n + discordant + 1)
    assert smaller < 0.8 - 0.04


def test_the_exact_power_matches_the_simulation_between_the_figures():
    for n, discordant, delta in [(200, 20, 0.03), (200, 20, 0.08), (60, 3, 0.1)]:
        exact = mcnemar_power(n, discordant / n, delta, 0.05)
        assert simulated_power(n, discordant / n, delta, 0.05, seed=discordant) == pytest.approx(exact, abs=0.025)


def test_through_compare_as_the_report_calls_it():
    """The same check through parity.compare on items (the report's path), fewer trials."""
    n, discordant, alpha = 150, 12, 0.05
    delta = min_detectable_delta(n, discordant, alpha)
    p_c = (discordant / n + delta) / 2  # candidate right, baseline wrong
    p_b = (discordant / n - delta) / 2  # baseline right, candidate wrong
    rng = np.random.default_rng(7)
    hits, trials = 0, 600
    for _ in range(trials):
        u = rng.random(n)
        base = {i: Item(None, not u[i] < p_c) for i in range(n)}
        cand = {i: Item(None, not p_c <= u[i] < p_c + p_b) for i in range(n)}
        hits += compare(base, cand).mcnemar_p < alpha
    assert hits / trials == pytest.approx(0.8, abs=0.05)


def test_the_rejection_region_is_parity_pys_test():
    for alpha in (0.05, 0.01, 0.2):
        k = _rejection_counts(np.arange(201), alpha)
        for d in range(201):
            # the test is symmetric in b and c, and its p-value grows with c up to d / 2:
            # the counts on both sides of the boundary decide the region
            for c in {0, int(k[d]), int(k[d]) + 1, d // 2} & set(range(d // 2 + 1)):
                assert (mcnemar_exact_p(d - c, c) < alpha) == (c <= k[d]), (alpha, d, c)


def test_edges():
    # the exact test never rejects with fewer than 6 discordant items at alpha 0.05
    assert min_detectable_delta(5, 0, 0.05) is None
    assert min_detectable_delta(0, 0, 0.05) is None
    assert min_detectable_delta(6, 0, 0.05) is not None
    assert mcnemar_power(200, 0.1, 0.0, 0.05) <= 0.05  # no change: the test's size
    # more discordance, or fewer items, hides more
    assert min_detectable_delta(200, 40, 0.05) > min_detectable_delta(200, 10, 0.05)
    assert min_detectable_delta(100, 5, 0.05) > min_detectable_delta(400, 20, 0.05)
