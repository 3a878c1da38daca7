"""The smallest accuracy change the parity test would have detected: pure statistics, no I/O.

A PASS on a small set rules out less than one on a large set; this says how much less. The
test is the report's (parity.py): McNemar's exact test, which rejects "same accuracy" when the
two-sided ``binomtest(c, D, 1/2)`` p-value is below alpha, D = b + c discordant items.

A true change ``delta`` = acc(candidate) - acc(baseline) on n items is modelled as: each item is
discordant with probability psi, and a discordant item favours the candidate with probability
``q = (1 + delta / psi) / 2``. So D ~ Binomial(n, psi), c | D ~ Binomial(D, q), and the power is
exact (no normal approximation, which is poor at the few discordant items parity runs see):

    power(delta) = sum over D of P(D) * P(c <= k_D or c >= D - k_D | D)

where k_D is the largest count with 2 * P(Binomial(D, 1/2) <= k) < alpha (the test's own rule:
with p = 1/2 the two-sided exact p-value is twice the smaller tail).

Assumption on psi: the run's observed discordance (b + c) / n. A change larger than that is
taken to move items one way only (psi = |delta|: the least discordance such a change can have).
This also covers a run with no discordant item: the figure is then the smallest change the test
catches when every changed item goes the same way, a best case; more churn than observed would
need a larger change.

The minimum detectable change is the smallest |delta| with power >= 80% (found by bisection:
power grows with |delta|); None when no change can reach it (at alpha = 0.05 the exact test
never rejects with fewer than 6 discordant items, so n < 6 detects nothing).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

POWER = 0.8


def _rejection_counts(d: np.ndarray, alpha: float) -> np.ndarray:
    """k_D for each D: the test rejects when min(c, D - c) <= k_D (-1: never)."""
    k = stats.binom.ppf(alpha / 2, d, 0.5) - 1
    # ppf works in floating point: settle the boundary with the test's own inequality
    k = np.where(2 * stats.binom.cdf(k + 1, d, 0.5) < alpha, k + 1, k)
    k = np.where((k >= 0) & (2 * stats.binom.cdf(k, d, 0.5) >= alpha), k - 1, k)
    return k


def mcnemar_power(n: int, discordance: float, delta: float, alpha: float) -> float:
    """Probability that McNemar's exact test rejects at ``alpha`` when the true change is
    ``delta`` (fraction) on n items, with discordance ``max(discordance, |delta|)``."""
    if n <= 0:
        return 0.0
    delta = min(abs(delta), 1.0)
    psi = min(max(discordance, delta), 1.0)
    if psi == 0:
        return 0.0
    q = 0.5 * (1 + delta / psi)
    d = np.arange(n + 1)
    k = _rejection_counts(d, alpha)
    reject = np.where(k >= 0, stats.binom.cdf(k, d, q) + stats.binom.sf(d - k - 1, d, q), 0.0)
    return float(np.sum(stats.binom.pmf(d, n, psi) * reject))


def min_detectable_delta(n: int, discordant: int, alpha: float, power: float = POWER,
                         tol: float = 1e-5) -> float | None:
    """The smallest |acc(candidate) - acc(baseline)| (fraction) the test detects with ``power``,
    given n paired items of which ``discordant`` (b + c) were discordant; None: none can be."""
    if n <= 0:
        return None
    psi = discordant / n
    if mcnemar_power(n, psi, 1.0, alpha) < power:
        return None
    lo, hi = 0.0, 1.0  # power(lo) < power <= power(hi)
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if mcnemar_power(n, psi, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi
