"""The parent's side of each phase: the children it starts, and what goes into the summary.
Each ``run_*`` adds its entries to ``summary`` and returns whether its checks passed."""

from __future__ import annotations

from pathlib import Path

from vit_backend_plugin.tools.decode_stats import ROLES, paired_line, pooled_pair_stats
from vit_backend_plugin.tools.flashinfer_check.results import (
    compare_parity,
    decode_ratio_rows,
    pool_decode_rounds,
)
from vit_backend_plugin.tools.flashinfer_check.runner import _spawn

BACKENDS = ("FLASHINFER", "FLASHINFER_HOST")
PHASES = ("parity", "decode", "decode_paired")


def abba(backends: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, backend) in start order: stock, ours, ours, stock, ... so drift hits both alike."""
    return [(r, b) for r in range(rounds) for b in (backends if r % 2 == 0 else backends[::-1])]


def run_parity(args, backends: list[str], model_dir: Path, out: Path, summary: dict) -> bool:
    """Greedy tokens and host syncs per build(), once per parity mode, every backend."""
    ok = True
    modes = [m.strip() for m in args.parity_modes.split(",")]
    for spec in [m == "spec_ngram" for m in modes]:
        res = {b: _spawn({"phase": "parity", "backend": b, "spec": spec, "cudagraphs": args.cudagraphs,
                          "model_dir": str(model_dir)}, out, args) for b in backends}
        key = (("spec_ngram" if spec else "no_spec") + ("_cudagraphs" if args.cudagraphs else "")
               + ("" if args.model_runner == "default" else f"_{args.model_runner}")
               + ("" if args.v2_spec_host == "default" else f"_v2spechost_{args.v2_spec_host}"))
        done = {b: r for b, r in res.items() if r is not None}
        entry = {"ran": sorted(done), "counters": {b: r["counter"] for b, r in done.items()},
                 "builder": {b: r["builder"] for b, r in done.items()},
                 "spec_decode": {b: r.get("spec_decode") for b, r in done.items()},
                 "in_engine": {b: r["attention_backend_in_engine"] for b, r in done.items()}}
        if len(done) == len(backends):
            entry["parity"] = compare_parity(done)
            ok &= all(v["identical"] for v in entry["parity"].values())
        else:
            ok = False
        host = entry["counters"].get("FLASHINFER_HOST")
        ok &= host is not None and host["syncs"] == 0 and host["builds"] > 0
        if "FLASHINFER_HOST" in backends:
            # The same engine run once more under vLLM's own sync checker, in error mode.
            chk = _spawn({"phase": "parity", "backend": "FLASHINFER_HOST", "spec": spec, "vllm_check": True,
                          "cudagraphs": args.cudagraphs, "model_dir": str(model_dir)}, out, args)
            entry["vllm_gpu_sync_check_error_mode"] = {
                "completed": chk is not None,
                "tokens_identical_to_counted_run": chk is not None and "FLASHINFER_HOST" in done
                and chk["tokens"] == done["FLASHINFER_HOST"]["tokens"]}
            ok &= entry["vllm_gpu_sync_check_error_mode"]["tokens_identical_to_counted_run"]
            print(f"{key:10s} FLASHINFER_HOST under VLLM_GPU_SYNC_CHECK=error: "
                  f"{entry['vllm_gpu_sync_check_error_mode']}", flush=True)
        summary[key] = entry
        for b, c in entry["counters"].items():
            print(f"{key:10s} {b:16s} builds {c['builds']:5d} (mixed {c['mixed_builds']})  "
                  f"host syncs {c['syncs']:5d} in {c['builds_with_sync']} builds"
                  + (f"  identical={entry['parity'][b]['identical']}" if "parity" in entry else "")
                  + f"  drafts {(entry['spec_decode'].get(b) or {}).get('spec_decode_num_drafts')}",
                  flush=True)
    return ok


def run_decode(args, backends: list[str], model_dir: Path, out: Path, summary: dict) -> bool:
    """TPOT and output tokens/s per batch size, one engine per backend and round (ABBA)."""
    sizes = [int(x) for x in args.decode_batch_sizes.split(",")]
    runs: dict[str, list] = {b: [] for b in backends}
    for rnd, b in abba(backends, args.rounds):
        runs[b].append(_spawn({"phase": "decode", "backend": b, "sizes": sizes, "repeats": args.repeats,
                               "cudagraphs": args.cudagraphs, "round": rnd, "model_dir": str(model_dir)},
                              out, args))
    # per-engine counts stay per round (rs[0]'s alone would pass for the pooled engines')
    dec = {b: ({**rs[0], "rounds": len(rs), "rows": pool_decode_rounds(rs),
                "builder": [r.get("builder") for r in rs], "counter": [r.get("counter") for r in rs]}
               if all(rs) else None)
           for b, rs in runs.items()}
    key = ("decode" + ("_cudagraphs" if args.cudagraphs else "")
           + ("" if args.model_runner == "default" else f"_{args.model_runner}"))
    summary[key] = {b: r for b, r in dec.items() if r is not None}
    if all(dec.values()) and sorted(backends) == sorted(BACKENDS):
        a, b = (dec[x]["rows"] for x in BACKENDS)  # stock, ours: whatever order they ran in
        summary[key + "_ratio_host_over_stock"] = decode_ratio_rows(a, b)
        for r in summary[key + "_ratio_host_over_stock"]:
            us = r["build_host_us_stock_host"]
            print(f"decode bs={r['batch_size']:4d} tok/s host/stock {r['tok_s_host_over_stock']:.3f} "
                  f"(best repeats {r['tok_s_host_over_stock_best']:.3f})  "
                  f"TPOT stock/host {r['tpot_stock_over_host']:.3f}  build() host us stock/ours "
                  f"{us[0] or 0:.0f}/{us[1] or 0:.0f}", flush=True)
        for b in backends:
            print(f"decode {b}: builder per round {dec[b]['builder']}", flush=True)
    return True


def run_decode_paired(args, backends: list[str], model_dir: Path, out: Path, summary: dict) -> bool:
    """Both engines alive in one child, timed in alternating pairs; ratios per pair and pooled."""
    ok = True
    sizes = [int(x) for x in args.decode_batch_sizes.split(",")]
    res = _spawn({"phase": "decode_paired", "backend": "_vs_".join(backends), "backends": backends,
                  "sizes": sizes, "repeats": args.repeats, "cudagraphs": args.cudagraphs,
                  "gpu_memory": args.paired_gpu_memory, "model_dir": str(model_dir)}, out, args)
    key = ("decode_paired" + ("_cudagraphs" if args.cudagraphs else "")
           + ("" if args.model_runner == "default" else f"_{args.model_runner}"))
    ok &= res is not None
    if res is not None:
        summary[key] = res
        summary[key + "_ratio_ours_over_stock"] = [
            {k: v for k, v in r.items() if k not in (*ROLES, "pair_timings")} for r in res["rows"]]
        for r in res["rows"]:
            print(paired_line(r), flush=True)
        pooled = summary[key + "_pooled"] = pooled_pair_stats(res["rows"])
        ci = pooled["tok_s_ours_over_stock_geomean_ci95"] or [float("nan")] * 2
        print(f"paired, all {pooled['pairs']} pairs: tok/s ours/stock geomean "
              f"{pooled['tok_s_ours_over_stock_geomean']:.3f} [{ci[0]:.3f}-{ci[1]:.3f}] "
              f"p(ours slower)={pooled['p_ours_slower_wilcoxon']}", flush=True)
        print(f"decode_paired {res['backends']} in engine {res['attention_backend_in_engine']}", flush=True)
    return ok
