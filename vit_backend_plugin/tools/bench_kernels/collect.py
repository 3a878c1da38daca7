"""The whole run: every shape's candidates checked and timed, with the run's metadata and summaries."""

from __future__ import annotations

import json
import sys
import time

from vit_backend_plugin.kernels.auto import table_rows
from vit_backend_plugin.tools import (
    bench_vllm_layers as bench_vllm,  # imports vLLM only when called
)
from vit_backend_plugin.tools.bench_kernels.candidates import ALL_CANDIDATES
from vit_backend_plugin.tools.bench_kernels.result import Result
from vit_backend_plugin.tools.bench_kernels.run_shape import run_shape
from vit_backend_plugin.tools.bench_kernels.shapes import (
    ISSUE_REFERENCE,
    default_shapes,
    parse_shape,
)
from vit_backend_plugin.tools.bench_kernels.summary import SUMMARY_KEYS, summarize, table_distance
from vit_backend_plugin.tools.bench_kernels.sweep import sweep_configs


def _engine_faithful_possible() -> str | None:
    """None if vLLM (a CUDA build) imports here; else why not."""
    try:
        import vllm  # noqa: F401
        from vllm.platforms import current_platform

        return None if current_platform.is_cuda() else f"vLLM platform is {current_platform.device_type}"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def collect(args) -> dict:
    import torch
    import triton

    if not torch.cuda.is_available():
        raise RuntimeError("bench-kernels needs a CUDA GPU")
    shapes = [] if args.only_shapes else default_shapes(getattr(args, "shape_set", "all"))
    shapes += [parse_shape(s) for s in args.shapes]
    engine = not getattr(args, "raw_kernels", False)
    if engine and (why := _engine_faithful_possible()):
        raise RuntimeError(f"engine-faithful benchmark needs a CUDA build of vLLM ({why}); "
                           "pass --raw-kernels to time the kernels alone")
    known = list(bench_vllm.LAYER_BACKENDS) if engine else ALL_CANDIDATES
    names = [n.strip() for n in args.candidates.split(",") if n.strip()] or list(known)
    unknown = set(names) - set(known)
    if unknown:
        raise ValueError(f"unknown candidates {sorted(unknown)}; choose from {known}")
    props = torch.cuda.get_device_properties(0)
    meta = {"device": props.name, "capability": list(torch.cuda.get_device_capability(0)),
            "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "dtype": args.dtype, "engine_faithful": engine,
            "argv": sys.argv, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    stock, cache = {}, {}
    if engine:
        from vit_backend_plugin.selection import speed_table

        stock = bench_vllm.stock_choices(torch, {(sh.head_dim, sh.dtype or args.dtype) for sh in shapes})
        meta["plugin"] = bench_vllm.load_plugin()
        import vllm

        user = speed_table.load_user()
        meta.update({"vllm": vllm.__version__,
                     "cudnn_sdp_enabled_globally": torch.backends.cuda.cudnn_sdp_enabled(),
                     "speed_table_in_use": user.source if user else speed_table.load_shipped().source})
        names = names + ["PICK"]
    splits = tuple(int(x) for x in args.sweep_splits.split(",") if x)
    timings = parse_timings(getattr(args, "timings", "eager"))
    meta["timings"] = sorted(timings)
    rows = []
    for sh in shapes:
        t0 = time.time()
        dname = sh.dtype or args.dtype
        dtype = getattr(torch, dname)
        cands = bench_vllm.engine_candidates(torch, sh, dtype, names, cache) if engine else None
        res, sweep = run_shape(torch, sh, dtype, names, rep_ms=args.rep_ms, cands=cands,
                               configs=sweep_configs(sh, splits) if args.sweep else None,
                               timing_graph="graph" in timings, timing_host="host" in timings,
                               timing_stream="stream" in timings, rounds=getattr(args, "rounds", 5))
        torch.cuda.empty_cache()  # this shape's inputs are garbage now
        row = {"shape": {"name": sh.name, "head_dim": sh.head_dim, "lens": sh.lens, "heads": sh.heads,
                         "kv_heads": sh.kv_heads, "flops": sh.flops},
               "dtype": dname, "results": [r.__dict__ for r in res],
               "issue_reference": ISSUE_REFERENCE.get(sh.name)}
        # How far this call is from any row VIT_AUTO could use (it runs stock's backend when far).
        row["table_distance"] = table_distance(
            list(table_rows(tuple(meta["capability"]), dname, sh.head_dim)), row["shape"])
        if engine:
            row["stock"] = stock[(sh.head_dim, dname)]
            row["pick"] = bench_vllm.picked_backend(cache, sh, dtype)
        if sweep:
            ok = [s for s in sweep if s["tflops"] and s["numerics_ok"]]
            row["sweep"] = sorted(sweep, key=lambda s: -(s["tflops"] or 0))
            if ok:
                best = max(ok, key=lambda s: s["tflops"])
                print(f"  sweep best {best['tflops']:.1f} TFLOP/s: {best['config']}", flush=True)
        rows.append(row)
        brief = ", ".join(_brief_result(r) for r in res)
        print(f"[{time.time() - t0:5.1f}s] {sh.name}: {brief}", flush=True)
        if getattr(args, "json_out", None):  # partial results survive a timeout
            with open(args.json_out + ".partial", "w") as f:
                json.dump({"meta": meta, "rows": rows}, f)
    meta["rounds"] = getattr(args, "rounds", 5)
    out = {"meta": meta, "candidates": names, "rows": rows, "summary": summarize(rows)}
    for timing, metric in (("stream", "stream_tflops"), ("graph", "graph_tflops")):
        if timing in timings:
            out[SUMMARY_KEYS[metric]] = summarize(rows, metric)
    return out


def _brief_result(r: Result) -> str:
    if not r.tflops:
        return f"{r.candidate}=ERR({r.error})"
    st, g = r.extra.get("stream_tflops"), r.extra.get("graph_tflops")
    return f"{r.candidate}={r.tflops:.0f}" + (f"/{st:.0f}s" if st else "") + (f"/{g:.0f}g" if g else "")


def parse_timings(spec: str) -> set[str]:
    got = {t.strip() for t in spec.split(",") if t.strip()} | {"eager"}
    unknown = got - {"eager", "stream", "graph", "host"}
    if unknown:
        raise ValueError(f"unknown timings {sorted(unknown)}; choose from eager, stream, graph, host")
    return got
