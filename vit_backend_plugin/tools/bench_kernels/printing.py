"""The printed tables of a run: one per timing, and the host time per call."""

from __future__ import annotations

import sys

from vit_backend_plugin.tools.bench_kernels.summary import (
    METRICS,
    SUMMARY_KEYS,
    _ok_values,
    metric_value,
)


def print_table(rows: list[dict], names: list[str], summary: dict, file=None) -> None:
    file = file or sys.stdout
    metric = summary.get("metric", "tflops")
    w = max(len(r["shape"]["name"]) for r in rows) + 1
    short = {n: n.replace("TORCH_", "").replace("SDPA_", "")[:10] for n in names}
    print(f"\nTFLOP/s (4*S^2*D*H per sequence), median, timed {METRICS[metric]}; "
          "'!' = numerics failed, '-' = unavailable", file=file)
    print(f"{'shape':<{w}}" + "".join(f"{short[n]:>11}" for n in names)
          + f"{'best':>12}{'AUTO/best':>10}{'pick':>12}{'pick/stock':>11}{'stock':>12}{'table dist':>11}",
          file=file)
    for row in rows:
        by = {r["candidate"]: r for r in row["results"]}
        line = f"{row['shape']['name']:<{w}}"
        for n in names:
            r = by.get(n)
            v = metric_value(r, metric) if r else None
            if not v:
                line += f"{'-':>11}"
            else:
                line += f"{v:>10.1f}" + ("!" if not r["numerics_ok"] else " ")
        t = _ok_values(row, metric)
        best = row.get("best_single_by", {}).get(metric)
        line += f"{best or '-':>12}"
        line += f"{t['VIT_AUTO'] / t[best]:>9.3f}x" if best and t.get("VIT_AUTO") else f"{'-':>10}"
        stock = row.get("stock")
        line += f"{row.get('pick') or '-':>12}"
        line += f"{t['PICK'] / t[stock]:>10.3f}x" if t.get("PICK") and t.get(stock) else f"{'-':>11}"
        line += f"{stock or '-':>12}"
        line += f"{_distance_cell(row):>11}"
        print(line, file=file)
    print(f"geomean VIT_AUTO/best single {summary['geomean_auto_vs_best_single']:.3f}x, "
          f"pick/stock vLLM {summary['geomean_pick_vs_stock']:.3f}x, "
          f"VIT_TRITON/vLLM TRITON_ATTN {summary['geomean_ours_vs_stock_triton']:.2f}x", file=file)
    ctrl = summary.get("same_kernel_control") or []
    if ctrl:  # what a ratio of one kernel to itself reads in this run: the checks' resolution
        print(f"same-kernel control (PICK / the layer of the backend it picked, {len(ctrl)} shapes): "
              f"lowest {ctrl[0]:.3f}x, median {ctrl[len(ctrl) // 2]:.3f}x, highest {ctrl[-1]:.3f}x", file=file)
    for f in summary.get("far_from_table") or []:
        print(f"  [far] {f['shape']}: no speed-table row near (nearest {f['nearest']}, octaves "
              f"{f['octaves']}): VIT_AUTO ran stock's backend", file=file)
    for c in summary["checks"]:
        print(f"  [{'ok' if c['ok'] else 'MISS'}] {c['target']}: {c['value']}", file=file)


def _distance_cell(row: dict) -> str:
    """Octaves to the nearest speed-table row VIT_AUTO could use; '*' = too far (it runs stock's
    backend there); 'none' = no row of the call's kind; '-' = not recorded."""
    if "table_distance" not in row:
        return "-"
    d = row["table_distance"]
    if d is None:
        return "none"
    return f"{d['total_octaves']:.1f}" + ("" if d["near"] else "*")


def print_host_table(rows: list[dict], names: list[str], file=None) -> None:
    """Host microseconds to issue one call (GPU held busy): the eager cost of a layer on the CPU."""
    file = file or sys.stdout
    if not any((r.get("extra") or {}).get("host_us") for row in rows for r in row["results"]):
        return
    w = max(len(r["shape"]["name"]) for r in rows) + 1
    short = {n: n.replace("TORCH_", "").replace("SDPA_", "")[:10] for n in names}
    print("\nhost us to issue one call (GPU busy meanwhile); '-' = not measured (the call syncs)",
          file=file)
    print(f"{'shape':<{w}}" + "".join(f"{short[n]:>11}" for n in names), file=file)
    for row in rows:
        by = {r["candidate"]: (r.get("extra") or {}).get("host_us") for r in row["results"]}
        print(f"{row['shape']['name']:<{w}}"
              + "".join(f"{by[n]:>11.1f}" if by.get(n) else f"{'-':>11}" for n in names), file=file)


def print_all(data: dict, file=None) -> None:
    """Every table of a run: eager, back to back and CUDA graph (when timed), host time (when timed)."""
    for key in SUMMARY_KEYS.values():
        if data.get(key):
            print_table(data["rows"], data["candidates"], data[key], file=file)
    print_host_table(data["rows"], data["candidates"], file=file)
