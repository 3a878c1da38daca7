"""matplotlib figures for report.html, returned as (alt text, base64 PNG)."""

from __future__ import annotations

import base64
import functools
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vit_backend_plugin.report.metrics import SPEED_METRICS  # noqa: E402


def _literal_text(fn):
    """Backend names and lm-eval's labels come from the run dir: "$...$" in them is text, not
    mathtext (a malformed formula would fail the whole report)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context({"text.parse_math": False}):
            return fn(*args, **kwargs)

    return wrapper


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


@_literal_text
def accuracy_png(s: dict[str, Any]) -> tuple[str, str] | None:
    """Grouped bars: one group per task / subject group, one bar per arm, stderr error bars."""
    order = [n for n in s["arm_order"] if s["arms"][n]["results"]]
    if not order:
        return None
    ref = s["arms"][order[0]]["results"]
    rows = [r for r in ref if r["depth"] <= 1 and (r["is_group"] or r["depth"] == 0)]
    if not rows:
        return None
    labels = [r["alias"] if r["depth"] else r["name"] for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(order)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows) + 2), 4))
    for i, n in enumerate(order):
        by = {r["name"]: r for r in s["arms"][n]["results"]}
        vals = [by.get(r["name"], {}).get("value") for r in rows]
        errs = [by.get(r["name"], {}).get("stderr") for r in rows]
        ax.bar(x + (i - (len(order) - 1) / 2) * width,
               [np.nan if v is None else v for v in vals], width,
               yerr=[0 if e is None else e for e in errs], capsize=3,
               label=n + (" (baseline)" if n == s["baseline"] else ""))
    ax.set_xticks(x, labels, rotation=20, ha="right")
    metric = (rows[0].get("metric") or "acc").split(",")[0]
    ax.set_ylabel(f"{metric} (± stderr)")
    ax.set_ylim(0, 1)
    ax.set_title("Accuracy per arm and subject group (lm-eval)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return ("accuracy per arm and subject group", _png(fig))


@_literal_text
def speed_png(s: dict[str, Any]) -> tuple[str, str] | None:
    """One panel per throughput/latency metric; bars labelled with the speedup over the baseline."""
    order = [n for n in s["arm_order"] if s["arms"][n]["throughput"]]
    present = {k for n in order for k in s["arms"][n]["throughput"]}
    keys = [k for k in SPEED_METRICS if k in present] + sorted(present - set(SPEED_METRICS))
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys) + 0.6, 3.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, k in zip(axes[0], keys, strict=True):
        vals = [s["arms"][n]["throughput"].get(k) for n in order]
        bars = ax.bar(range(len(order)), [np.nan if v is None else v for v in vals],
                      color=[colors[i % len(colors)] for i in range(len(order))])
        for bar, n, v in zip(bars, order, vals, strict=True):
            x = s["arms"][n]["speedup"].get(k)
            if v is not None:
                ax.annotate("base" if n == s["baseline"] else (f"×{x:.2f}" if x else ""),
                            (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom",
                            fontsize="small", xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(order)), order, rotation=20, ha="right")
        label, higher = SPEED_METRICS.get(k, (k, True))
        ax.set_title(f"{label} ({'higher' if higher else 'lower'} is better)", fontsize="medium")
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Speed (labels: speedup over the baseline)")
    fig.tight_layout()
    return ("throughput and latency per arm with speedups", _png(fig))
