"""The parent's reading of the children: parity compared token for token, decode rounds pooled,
decode ratios."""

from __future__ import annotations

import statistics

from vit_backend_plugin.tools.decode_stats import decode_row


def compare_parity(results: dict[str, dict]) -> dict:
    """Token-for-token comparison of each backend with the first one (stock)."""
    base_name = next(iter(results))
    base = results[base_name]["tokens"]
    out = {}
    for name, r in results.items():
        diff = [i for i, (a, b) in enumerate(zip(base, r["tokens"], strict=True)) if a != b]
        out[name] = {"identical": not diff, "differing_prompts": diff,
                     "tokens": sum(len(t) for t in r["tokens"])}
    return out


def pool_decode_rounds(results: list[dict]) -> list[dict]:
    """One backend's decode children (one per round) as one row per batch size, every round's
    repeats pooled before the medians."""
    by_bs: dict[int, tuple[list, list]] = {}
    build_us: dict[int, list] = {}
    for res in results:
        for r in res["rows"]:
            t128, t1 = by_bs.setdefault(r["batch_size"], ([], []))
            t128 += r["t128_s"]
            t1 += r["t1_s"]
            if r.get("mean_build_host_us") is not None:
                build_us.setdefault(r["batch_size"], []).append(r["mean_build_host_us"])
    return [{**decode_row(bs, *ts),
             **({"mean_build_host_us": statistics.fmean(build_us[bs])} if bs in build_us else {})}
            for bs, ts in by_bs.items()]


def decode_ratio_rows(a: list[dict], b: list[dict]) -> list[dict]:
    """Per batch size, ours (``b``) against stock (``a``): TPOT, tokens/s, build() host time."""
    return [
        {"batch_size": ra["batch_size"], "tpot_stock_over_host": ra["tpot_ms"] / rb["tpot_ms"],
         "tok_s_host_over_stock": rb["output_tokens_per_s"] / ra["output_tokens_per_s"],
         # the fastest repeat of each: host jitter (the engine core shares its process
         # with the timing loop) only ever adds time, so this bounds it from the other side
         "tok_s_host_over_stock_best": min(ra["t128_s"]) / min(rb["t128_s"]),
         "build_host_us_stock_host": [ra.get("mean_build_host_us"), rb.get("mean_build_host_us")]}
        for ra, rb in zip(a, b, strict=True)]
