"""Per-shape ratios and the checks of a run, under one timing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vit_backend_plugin.tools.bench_kernels.candidates import SINGLE_NAMES, TABLE_NAMES


def _geomean(vals):
    vals = [v for v in vals if v and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else float("nan")


METRICS = {"tflops": "eager, one call at a time (do_bench: L2 flushed, host latency + GPU)",
           "stream_tflops": "back to back, as an eager tower runs (max of host and GPU)",
           "graph_tflops": "CUDA graph (GPU time)"}
# summary key per timing in a run's JSON
SUMMARY_KEYS = {"tflops": "summary", "stream_tflops": "summary_stream", "graph_tflops": "summary_graph"}


def metric_value(result: dict, metric: str = "tflops") -> float | None:
    """A result's TFLOP/s under one timing: eager lives at the top, the others in ``extra``."""
    return result.get(metric) if metric == "tflops" else (result.get("extra") or {}).get(metric)


def _ok_values(row: dict, metric: str) -> dict[str, float]:
    return {r["candidate"]: v for r in row["results"]
            if (v := metric_value(r, metric)) and r.get("numerics_ok")}


@dataclass
class ShapeSummary:
    """One shape's summary row under one timing: its best single backend and the ratios the
    checks read (None where the run lacks a side). More per-shape columns go in ``columns``
    (see :func:`add_table_distance`)."""

    name: str
    metric: str
    best: str  # the fastest single backend whose numerics passed
    stock: str | None = None  # stock vLLM's default backend (engine-faithful runs)
    pick: str | None = None  # the resolver's per-process pick (engine-faithful runs)
    auto_vs_best: float | None = None  # VIT_AUTO / best single
    pick_vs_stock: float | None = None  # PICK / stock vLLM's default
    ours_vs_stock_triton: float | None = None  # VIT_TRITON / vLLM's TRITON_ATTN
    same_kernel: float | None = None  # PICK / the layer of the backend it picked
    columns: dict[str, Any] = field(default_factory=dict)


def table_distance(table_rows: list[dict], shape: dict) -> dict | None:
    """How far one benchmark shape (one call: ``lens``, ``heads``) is from the nearest row of the
    speed table VIT_AUTO reads for its device, dtype and head size: VIT_AUTO's own measure
    (:func:`vit_backend_plugin.kernels.row_distance.nearest_row_distance`), so a shape where it
    ran stock's backend because no row was near says so. None: no row of the call's kind."""
    from vit_backend_plugin.kernels.row_distance import nearest_row_distance

    lens = shape["lens"]
    return nearest_row_distance(table_rows, equal_lengths=len(set(lens)) == 1,
                                max_seqlen=max(lens), num_seqs=len(lens), num_heads=shape.get("heads"))


def add_table_distance(summary: ShapeSummary, row: dict) -> None:
    """This shape's distance to the nearest measured speed-table row (``row["table_distance"]``,
    recorded by the run), into ``summary.columns``."""
    if "table_distance" in row:
        summary.columns["table_distance"] = row["table_distance"]


def shape_summary(row: dict, metric: str = "tflops") -> ShapeSummary | None:
    """``row``'s summary under ``metric`` (``METRICS``); None where no single backend passed."""
    t = _ok_values(row, metric)
    singles = {n: v for n, v in t.items() if n in SINGLE_NAMES}
    if not singles:
        return None
    best = max(singles, key=singles.get)
    stock, pick = row.get("stock"), row.get("pick")
    s = ShapeSummary(row["shape"]["name"], metric, best, stock, pick)
    if "VIT_AUTO" in t:
        s.auto_vs_best = t["VIT_AUTO"] / singles[best]
    if "PICK" in t and stock in t:
        s.pick_vs_stock = t["PICK"] / t[stock]
    if "VIT_TRITON" in t and "TRITON_ATTN" in t:
        s.ours_vs_stock_triton = t["VIT_TRITON"] / t["TRITON_ATTN"]
    if "PICK" in t and pick in singles:  # one backend timed as two layers: the run's resolution
        s.same_kernel = t["PICK"] / singles[pick]
    add_table_distance(s, row)
    return s


def summarize(rows: list[dict], metric: str = "tflops") -> dict:
    """Per-shape ratios and issue 11's checks under one timing (``METRICS``): VIT_AUTO against the
    best single backend, the resolver's per-process pick against stock vLLM's default, our Triton
    kernel's gap to vLLM's."""
    checks, auto_vs_best, pick_vs_stock, ours_vs_stock_triton, same_kernel = [], [], [], [], []
    far = []  # shapes no table row is near: VIT_AUTO ran stock's backend there
    for row in rows:
        s = shape_summary(row, metric)
        if s is None:
            continue
        dist = s.columns.get("table_distance")
        if "table_distance" in s.columns and not (dist and dist["near"]):
            far.append({"shape": s.name, "nearest": dist and dist["shape"],
                        "octaves": dist and dist["octaves"]})
        row.setdefault("best_single_by", {})[metric] = s.best
        if metric == "tflops":
            row["best_single"] = s.best
        if s.auto_vs_best is not None:
            auto_vs_best.append(s.auto_vs_best)
            checks.append({"target": f"{s.name}: VIT_AUTO >= 0.97x best single ({s.best})",
                           "value": round(s.auto_vs_best, 3), "ok": s.auto_vs_best >= 0.97})
        if s.pick_vs_stock is not None:
            pick_vs_stock.append(s.pick_vs_stock)
            # The same backend timed twice differs by noise only: 3% margin, and ok when equal.
            checks.append({"target": f"{s.name}: pick {s.pick} vs stock vLLM {s.stock}",
                           "value": round(s.pick_vs_stock, 3),
                           "ok": s.pick == s.stock or s.pick_vs_stock >= 0.97})
        if s.ours_vs_stock_triton is not None:
            ours_vs_stock_triton.append(s.ours_vs_stock_triton)
        if s.same_kernel is not None:
            same_kernel.append(s.same_kernel)
    if metric == "tflops" and not any("PICK" in {r["candidate"] for r in row["results"]} for row in rows):
        checks += resolver_pick_checks(rows)  # raw-kernel runs: what the resolver would pick
    return {"metric": metric, "geomean_auto_vs_best_single": _geomean(auto_vs_best),
            "geomean_pick_vs_stock": _geomean(pick_vs_stock),
            "geomean_ours_vs_stock_triton": _geomean(ours_vs_stock_triton), "checks": checks,
            "same_kernel_control": sorted(round(x, 3) for x in same_kernel),
            "far_from_table": far}


def resolver_pick_checks(rows: list[dict], tolerance: float = 0.05,
                         features: frozenset[str] | None = None) -> list[dict]:
    """What the plugin's resolver would pick from this run's numbers, per head size, the way it
    picks inside vLLM (once per process, geometric mean over that head size's shapes), against the
    fastest candidate of each shape."""
    try:
        from vit_backend_plugin.selection.catalog import FEATURES
        from vit_backend_plugin.selection.resolver import Measurement, ResolveRequest, resolve
    except ImportError:  # pyyaml missing: no catalog, no check
        return []
    checks = []
    for head in sorted({r["shape"]["head_dim"] for r in rows}):
        group = [r for r in rows if r["shape"]["head_dim"] == head]
        per = [{x["candidate"]: x for x in r["results"] if x.get("tflops") and x["candidate"] in TABLE_NAMES}
               for r in group]
        common = set.intersection(*(set(p) for p in per)) if per else set()
        measured = {n: Measurement(_geomean([p[n]["tflops"] for p in per]),
                                   all(p[n]["numerics_ok"] for p in per)) for n in common}
        feats = frozenset(FEATURES) if features is None else features
        pick = resolve(ResolveRequest(head_size=head, dtype=group[0].get("dtype", "bfloat16"),
                                      capability=(9, 0), features=feats, measured=measured)).chosen
        for r, p in zip(group, per, strict=True):
            best = max(p.values(), key=lambda x: x["tflops"])
            got = p.get(pick, {}).get("tflops", 0.0)
            ratio = got / best["tflops"]
            checks.append({"target": f"{r['shape']['name']}: resolver pick {pick} within "
                                     f"{tolerance:.0%} of fastest ({best['candidate']})",
                           "value": round(ratio, 3), "ok": ratio >= 1 - tolerance})
    return checks
