"""`vit-parity bench-kernels`: its options and ``main``."""

from __future__ import annotations

import argparse
import json

from vit_backend_plugin.tools.bench_kernels.collect import collect
from vit_backend_plugin.tools.bench_kernels.printing import print_all
from vit_backend_plugin.tools.bench_kernels.table import (
    merged_engine_runs,
    table_entries,
    write_speed_table,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", nargs="*", default=[], metavar="SPEC",
                        help="extra shapes: [name=]D:BxS or [name=]D:l1,l2,.. [@heads[/kv_heads]]")
    parser.add_argument("--only-shapes", action="store_true", help="run only --shapes, not the defaults")
    parser.add_argument("--shape-set", choices=["issue", "extended", "all"], default="all",
                        help="default shapes: the issue's table, the extended set, or both")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"],
                        help="dtype of shapes that do not name one")
    parser.add_argument("--candidates", default="", help="comma list (default: all)")
    parser.add_argument("--rep-ms", type=int, default=200, help="timing budget per candidate (ms)")
    parser.add_argument("--raw-kernels", action="store_true",
                        help="time kernel functions directly, not as vLLM runs them (kernel work only)")
    parser.add_argument("--sweep", action="store_true", help="also sweep VIT_TRITON launch configs")
    parser.add_argument("--sweep-splits", default="16,256",
                        help="min_d1 values to sweep: 16 splits head_dim 80 -> 64+16, 256 pads to 128")
    parser.add_argument("--timings", default="eager,stream,graph,host",
                        help="comma list: eager (do_bench, one call at a time, always), stream "
                             "(calls back to back, as an eager tower runs), graph (GPU time of the "
                             "calls replayed as a CUDA graph), host (host time to issue one call)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timing rounds per shape; the candidates' order rotates each round and "
                             "each candidate's time is its median over rounds (drift hits all alike)")
    parser.add_argument("--table-timing", choices=["graph", "stream", "eager"], default="graph",
                        help="the timing the written speed table records, where the run measured "
                             "it (else eager): graph = GPU time (stable to ~1%% between rounds; "
                             "what decides a GPU-bound tower); stream = calls back to back, host "
                             "time included (its host-bound rows vary up to 2x between rounds on "
                             "the H100 machine, see reports/kernels/README.md)")
    parser.add_argument("--json", dest="json_out", default=None, help="write full results here")
    parser.add_argument("--write-speed-table", default=None, metavar="PATH",
                        help="write a speed table (schema 1) from this run")
    parser.add_argument("--merge-with", nargs="*", default=[], metavar="TABLE",
                        help="speed tables of earlier runs of the same shapes to merge into the one "
                             "written (best TFLOP/s per backend, numerics OK only if OK everywhere)")


def main(args) -> int:
    data = collect(args)
    print_all(data)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(data, f, indent=1)
    if args.write_speed_table:
        write_speed_table(args.write_speed_table,
                          table_entries(data, args.merge_with, args.table_timing),
                          merged_engine_runs(args.merge_with))
    bad = [r for row in data["rows"] for r in row["results"]
           if r["candidate"] in ("VIT_TRITON", "VIT_AUTO", "TORCH_SDPA_CUDNN") and r.get("numerics_ok") is False]
    return 1 if bad else 0
