"""`vit-parity tune`: re-measure the speed table on this GPU and store it user-locally.

Runs the same candidates and checks as `vit-parity bench-kernels` on the standard shapes (plus
--shapes), then writes the user-local speed table (``$VIT_SPEED_TABLE`` or
``~/.cache/vit_backend_plugin/speed_table.json``), which the resolver prefers over the shipped
one. With ``--kernel-configs`` it also sweeps VIT_TRITON launch configs and writes the winners as
a user-local config table (``$VIT_TRITON_CONFIGS`` or ``~/.cache/vit_backend_plugin/
vit_triton_configs.json``), which the kernel then reads instead of the shipped configs.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vit_backend_plugin.common.paths import user_configs_path  # noqa: F401 -- re-exported for callers
from vit_backend_plugin.tools import bench_kernels
from vit_backend_plugin.tools.bench_kernels.collect import collect
from vit_backend_plugin.tools.bench_kernels.printing import print_all
from vit_backend_plugin.tools.bench_kernels.table import table_entries


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bench_kernels.add_arguments(parser)
    parser.add_argument("--out", default=None, help="speed table path (default: the user-local table)")
    parser.add_argument("--kernel-configs", action="store_true",
                        help="also sweep VIT_TRITON launch configs and store the winners user-locally")


def configs_from_sweep(rows: list[dict]) -> dict:
    """One exact-head_dim rule per swept shape: the fastest config whose numerics passed. Rules
    for short launches (max_seqlen <= 64) come first, as in the shipped table."""
    from vit_backend_plugin.kernels.triton_vit import load_configs

    short, long_ = [], []
    for row in rows:
        ok = [s for s in row.get("sweep", []) if s.get("tflops") and s.get("numerics_ok")]
        if not ok:
            continue
        best = max(ok, key=lambda s: s["tflops"])
        d, mx = row["shape"]["head_dim"], max(row["shape"]["lens"])
        rule = {"head_dim": [d, d], "config": best["config"], "measured_on": row["shape"]["name"]}
        if mx <= 64:
            short.append(dict(rule, max_seqlen=[1, 64]))
        else:
            long_.append(rule)
    shipped = load_configs.__wrapped__() if hasattr(load_configs, "__wrapped__") else load_configs()
    return {"schema": 1, "comment": "user-local, written by `vit-parity tune --kernel-configs`",
            "defaults": shipped.get("defaults", {}), "rules": short + long_ + shipped["rules"]}


def main(args) -> int:
    from vit_backend_plugin.selection import speed_table

    args.sweep = bool(args.kernel_configs)
    data = collect(args)
    print_all(data)
    entries = table_entries(data, args.merge_with, args.table_timing)
    table = speed_table.SpeedTable.model_validate({"schema": 1, "entries": entries})
    path = speed_table.save_user(table, Path(args.out) if args.out else None)
    print(f"wrote {len(entries)} speed-table rows to {path}")
    if args.kernel_configs:
        cpath = user_configs_path()
        cpath.parent.mkdir(parents=True, exist_ok=True)
        cpath.write_text(json.dumps(configs_from_sweep(data["rows"]), indent=1) + "\n")
        print(f"wrote VIT_TRITON launch configs to {cpath}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(data, f, indent=1)
    return 0
