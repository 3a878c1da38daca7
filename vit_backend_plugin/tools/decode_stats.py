"""Statistics of the decode phases of ``check-flashinfer-host`` (pure: lists of wall times in,
numbers out; no engine). Seed 003's shape: 128 output tokens per request."""

from __future__ import annotations

import statistics

OUT_TOKENS = 128
ROLES = ("stock", "ours")


def decode_row(bs: int, t128_s: list[float], t1_s: list[float]) -> dict:
    """TPOT from the medians of 128-token and 1-token generations of the same batch size."""
    t128, t1 = statistics.median(t128_s), statistics.median(t1_s)
    return {"batch_size": bs, "t128_s": list(t128_s), "t1_s": list(t1_s),
            "tpot_ms": (t128 - t1) / (OUT_TOKENS - 1) * 1000.0, "output_tokens_per_s": bs * OUT_TOKENS / t128}


def pair_order(i: int) -> tuple[str, str]:
    """Which engine pair ``i`` times first: stock in even pairs, ours in odd ones, so a trend
    within a pair (an engine that warms or cools while the other runs) hits both alike."""
    return ROLES if i % 2 == 0 else ROLES[::-1]


def _ci95(values, statistic, seed: int) -> list[float] | None:
    """Seeded 95% percentile-bootstrap interval of ``statistic`` (None below two values, where
    there is nothing to resample; the percentile method stays defined when every value is equal)."""
    import numpy as np
    from scipy.stats import bootstrap

    if len(values) < 2:
        return None
    res = bootstrap((np.asarray(values, dtype=float),), statistic, confidence_level=0.95,
                    method="percentile", rng=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def _median_ci95(values: list[float], seed: int) -> list[float] | None:
    import numpy as np

    return _ci95(values, np.median, seed)


def p_ours_slower(ratios: list[float]) -> dict:
    """One-sided tests of "ours is slower" on per-pair ratios ours/stock of tok/s (< 1: slower):
    Wilcoxon's signed-rank test on the log ratios (alternative "less": their centre below 0)
    and a sign test (how many pairs ours lost). None where a test has no data (every ratio 1)."""
    import numpy as np
    from scipy.stats import binomtest, wilcoxon

    logs = np.log(np.asarray(ratios, dtype=float))
    nonzero = logs[logs != 0]
    p_w = float(wilcoxon(nonzero, alternative="less").pvalue) if len(nonzero) else None
    slower = int((nonzero < 0).sum())
    p_s = float(binomtest(slower, len(nonzero), 0.5, alternative="greater").pvalue) if len(nonzero) else None
    return {"p_ours_slower_wilcoxon": p_w, "p_ours_slower_sign": p_s, "pairs_ours_slower": slower}


def paired_decode_stats(bs: int, pairs: list[dict], seed: int = 0) -> dict:
    """One batch size of the paired phase. ``pairs``: per pair, ``t128_s`` and ``t1_s`` as
    ``{"stock": s, "ours": s}`` wall times of the same prompts on both engines.

    Per backend: medians over pairs (:func:`decode_row`). Per pair: tok/s ours/stock
    (= t128 stock / t128 ours) and TPOT stock/ours (> 1 both: ours faster), the median of each
    with a seeded 95% bootstrap interval, and the one-sided p-values of :func:`p_ours_slower`."""
    for p in pairs:  # TPOT and the log ratios need 0 < t1 < t128 in every timing
        if not all(0 < p["t1_s"][r] < p["t128_s"][r] for r in ROLES):
            raise ValueError(f"a pair's wall times are not 0 < t1 < t128: {p}")
    per = {r: decode_row(bs, [p["t128_s"][r] for p in pairs], [p["t1_s"][r] for p in pairs]) for r in ROLES}
    tok = [p["t128_s"]["stock"] / p["t128_s"]["ours"] for p in pairs]
    tpot = [(p["t128_s"]["stock"] - p["t1_s"]["stock"]) / (p["t128_s"]["ours"] - p["t1_s"]["ours"])
            for p in pairs]
    return {"batch_size": bs, "pairs": len(pairs), **per,
           "tok_s_ours_over_stock_per_pair": tok,
           "tok_s_ours_over_stock": statistics.median(tok),
           "tok_s_ours_over_stock_ci95": _median_ci95(tok, seed),
           "tpot_stock_over_ours_per_pair": tpot,
           "tpot_stock_over_ours": statistics.median(tpot),
           "tpot_stock_over_ours_ci95": _median_ci95(tpot, seed),
           **p_ours_slower(tok)}


def pooled_pair_stats(rows: list[dict], seed: int = 0) -> dict:
    """Every pair of every batch size together: is ours slower anywhere on average? The geometric
    mean of the per-pair tok/s ratios ours/stock with a seeded 95% bootstrap interval, their
    median, and :func:`p_ours_slower` over all pairs. One batch size's ten pairs resolve ~10%
    on a host-bound engine; all of them together resolve a few percent."""
    import numpy as np

    ratios = [x for r in rows for x in r["tok_s_ours_over_stock_per_pair"]]
    logs = np.log(np.asarray(ratios, dtype=float))
    ci = _ci95(logs, np.mean, seed)  # of the mean log ratio: exp of it is the geometric mean's
    ci = [float(np.exp(x)) for x in ci] if ci else None
    return {"batch_sizes": [r["batch_size"] for r in rows], "pairs": len(ratios),
            "tok_s_ours_over_stock_geomean": float(np.exp(logs.mean())) if len(ratios) else None,
            "tok_s_ours_over_stock_geomean_ci95": ci,
            "tok_s_ours_over_stock_median": float(np.median(ratios)) if ratios else None,
            **p_ours_slower(ratios)}


def paired_line(row: dict) -> str:
    """One printed line per batch size."""
    def ci(v):
        return f"[{v[0]:.3f}-{v[1]:.3f}]" if v else "[n/a]"

    p = row["p_ours_slower_wilcoxon"]
    return (f"paired bs={row['batch_size']:4d} tok/s ours/stock {row['tok_s_ours_over_stock']:.3f} "
            f"{ci(row['tok_s_ours_over_stock_ci95'])} p(ours slower)={'n/a' if p is None else f'{p:.3f}'}  "
            f"TPOT stock/ours {row['tpot_stock_over_ours']:.3f} {ci(row['tpot_stock_over_ours_ci95'])}  "
            f"tok/s stock {row['stock']['output_tokens_per_s']:.0f} ours {row['ours']['output_tokens_per_s']:.0f}  "
            f"TPOT ms stock {row['stock']['tpot_ms']:.3f} ours {row['ours']['tpot_ms']:.3f}")
