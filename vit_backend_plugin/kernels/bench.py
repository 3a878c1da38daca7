"""`vit-parity bench-kernels`: every available ViT attention kernel, side by side, on one GPU.

Needs only torch + triton (+ numpy-free stdlib): pydantic/rich are not imported, so it runs on bare
GPU images. For each shape, every candidate is checked against an fp32 reference (relative error
||out - ref|| / ||ref||; NaN fails; our kernel's output is NaN-poisoned first so unwritten rows
fail), then timed with CUDA events via triton.testing.do_bench (median; warm-up; the L2 is flushed
between repetitions and several input sets are rotated). TFLOP/s counts 4*S^2*D*H per sequence.

Candidates (missing ones are reported, not fatal):
  TORCH_SDPA        torch SDPA, default dispatch: vLLM's TORCH_SDPA ViT path (flash on an H100)
  SDPA_FLASH        SDPA pinned to the flash sub-backend
  SDPA_EFFICIENT    SDPA pinned to the memory-efficient sub-backend
  TORCH_SDPA_CUDNN  ours: SDPA pinned to cuDNN (batched when lengths are equal)
  SDPA_CUDNN_NESTED SDPA cuDNN on a jagged nested tensor (mixed-length shapes only)
  TORCH_VARLEN      torch.nn.attention.varlen.varlen_attn, where this torch has it
  VIT_TRITON        ours: the Triton varlen kernel
  TRITON_ATTN       stock vLLM ViT Triton kernel from the installed vLLM (unavailable without
                    vLLM), called exactly as vLLM's ViT wrapper calls it
SDPA variants run mixed lengths as one call per sequence, like vLLM's TORCH_SDPA ViT path.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field

# Default shapes (the issue's table): name, head_dim, per-sequence lengths; 16 heads, bf16.
DEFAULT_SHAPES: list[tuple[str, int, list[int]]] = [
    ("SigLIP d72, 32 x 729", 72, [729] * 32),
    ("InternViT d64, 32 x 1025", 64, [1025] * 32),
    ("Qwen2.5-VL d80, 16 x 1024", 80, [1024] * 16),
    ("Qwen2.5-VL d80, 4 x 4096", 80, [4096] * 4),
    ("Qwen2.5-VL d80, 1 x 16384", 80, [16384]),
    ("Qwen2.5-VL window d80, 256 x 64", 80, [64] * 256),
    ("mixed lengths d80", 80, [256, 1024, 4096, 729, 64, 2304, 576, 1600]),
    ("d128, 8 x 2048", 128, [2048] * 8),
]
# Issue 3's reference numbers (H100, TFLOP/s): flash / cuDNN / stock vLLM triton, for context.
ISSUE_REFERENCE = {
    "SigLIP d72, 32 x 729": (185, 273, 30),
    "InternViT d64, 32 x 1025": (232, 319, 166),
    "Qwen2.5-VL d80, 16 x 1024": (239, 380, 153),
    "Qwen2.5-VL d80, 4 x 4096": (263, 421, 178),
    "Qwen2.5-VL d80, 1 x 16384": (274, 420, 191),
    "Qwen2.5-VL window d80, 256 x 64": (49, 57, 28),
    "mixed lengths d80": (194, 208, 164),
    "d128, 8 x 2048": (344, 605, 246),
}
# Per-sequence length buckets of the speed table (inclusive): windows/thumbnails, one image
# at ViT resolution, large images, very large images / video.
SEQ_BUCKETS: list[tuple[int, int]] = [(1, 128), (129, 1024), (1025, 4096), (4097, 1_000_000)]
# Candidates whose speed goes into the speed table, under the resolver's backend names.
TABLE_NAMES = ("TORCH_SDPA", "TORCH_SDPA_CUDNN", "VIT_TRITON", "VIT_AUTO", "TRITON_ATTN",
               "FLASH_ATTN", "FLASH_ATTN_UPSTREAM")
REL_TOL = {"bfloat16": 2e-2, "float16": 5e-3, "float32": 1e-3}


@dataclass
class Shape:
    name: str
    head_dim: int
    lens: list[int]
    heads: int = 16
    kv_heads: int = 16

    @property
    def flops(self) -> float:
        return sum(4.0 * s * s * self.head_dim * self.heads for s in self.lens)

    @property
    def equal(self) -> bool:
        return len(set(self.lens)) == 1


@dataclass
class Result:
    candidate: str
    ms: float | None = None
    tflops: float | None = None
    rel_err: float | None = None
    numerics_ok: bool | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


def parse_shape(spec: str) -> Shape:
    """'[name=]D:BxS[@H[/Hkv]]' or '[name=]D:l1,l2,...[@H[/Hkv]]', e.g. 'd80:16x1024', '80:64,729@16'."""
    name, _, body = spec.rpartition("=")
    m = re.fullmatch(r"d?(\d+):([\dx,]+)(?:@(\d+)(?:/(\d+))?)?", body.strip())
    if not m:
        raise ValueError(f"bad shape {spec!r}; want D:BxS or D:l1,l2,.. (optionally @heads[/kv_heads])")
    d, lens_s, h, hkv = m.groups()
    if "x" in lens_s:
        b, s = lens_s.split("x")
        lens = [int(s)] * int(b)
    else:
        lens = [int(x) for x in lens_s.split(",") if x]
    h = int(h or 16)
    return Shape(name or f"d{d}:{lens_s}@{h}", int(d), lens, h, int(hkv or h))


def seq_bucket(lens: list[int]) -> tuple[int, int]:
    lo = next(b for b in SEQ_BUCKETS if b[0] <= min(lens) <= b[1])[0]
    hi = next(b for b in SEQ_BUCKETS if b[0] <= max(lens) <= b[1])[1]
    return lo, hi


# ------------------------------------------------------------------ candidates


def _candidates(torch, dtype):
    """name -> (fn(inputs) -> out, note). Each fn takes the prepared input dict."""
    from torch.nn.attention import SDPBackend

    from vit_backend_plugin.kernels.auto import vit_auto_attention
    from vit_backend_plugin.kernels.sdpa_cudnn import sdpa_cudnn_attention, sdpa_varlen
    from vit_backend_plugin.kernels.triton_vit import vit_attention

    c = {}
    c["TORCH_SDPA"] = (lambda x: sdpa_varlen(x["q"], x["k"], x["v"], x["cu"], x["max"], None, None), "default dispatch")
    c["SDPA_FLASH"] = (lambda x: sdpa_varlen(x["q"], x["k"], x["v"], x["cu"], x["max"], None,
                                             [SDPBackend.FLASH_ATTENTION]), "")
    c["SDPA_EFFICIENT"] = (lambda x: sdpa_varlen(x["q"], x["k"], x["v"], x["cu"], x["max"], None,
                                                 [SDPBackend.EFFICIENT_ATTENTION]), "")
    c["TORCH_SDPA_CUDNN"] = (lambda x: sdpa_cudnn_attention(x["q"], x["k"], x["v"], x["cu"], x["max"]), "ours")

    def nested(x):
        import torch.nn.functional as F
        from torch.nn.attention import sdpa_kernel

        offs = x["cu"].long()
        q, k, v = (torch.nested.nested_tensor_from_jagged(t, offs, max_seqlen=x["max"]).transpose(1, 2)
                   for t in (x["q"], x["k"], x["v"]))
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            o = F.scaled_dot_product_attention(q, k, v)
        return o.transpose(1, 2).values()

    c["SDPA_CUDNN_NESTED"] = (nested, "mixed only")
    try:
        import inspect

        from torch.nn.attention.varlen import varlen_attn

        has_scale = "scale" in inspect.signature(varlen_attn).parameters

        def varlen(x):
            kw = {"scale": 1.0 / math.sqrt(x["q"].shape[-1])} if has_scale else {}
            return varlen_attn(x["q"], x["k"], x["v"], x["cu"], x["cu"], x["max"], x["max"], **kw)

        c["TORCH_VARLEN"] = (varlen, "")
    except Exception as e:  # noqa: BLE001 -- older torch
        c["TORCH_VARLEN"] = (None, f"unavailable: {type(e).__name__}: {e}")
    c["VIT_TRITON"] = (lambda x: vit_attention(x["q"], x["k"], x["v"], x["cu"], x["max"], out=x.get("out")), "ours")
    c["VIT_AUTO"] = (lambda x: vit_auto_attention(x["q"], x["k"], x["v"], x["cu"], x["max"]),
                     "ours: per call, VIT_TRITON or cuDNN from the installed speed table")

    try:
        from vllm.v1.attention.ops.triton_prefill_attention import context_attention_fwd
        stock_note = "vllm"
    except Exception as e:  # noqa: BLE001 -- vLLM not installed: no stand-in, say so
        context_attention_fwd, stock_note = None, f"unavailable: vLLM not importable ({type(e).__name__}: {e})"

    def stock(x):
        # As vllm's triton_attn_wrapper does: b_start_loc/b_seq_len from cu_seqlens, non-causal.
        q = x["q"]
        o = torch.empty_like(q)
        cu = x["cu"]
        context_attention_fwd(q, x["k"], x["v"], o, b_start_loc=cu[:-1], b_seq_len=cu[1:] - cu[:-1],
                              max_input_len=x["max"], is_causal=False, softmax_scale=None)
        return o

    c["TRITON_ATTN"] = (stock if context_attention_fwd is not None else None, stock_note)

    # FlashAttention, where importable (a user's vLLM GPU env; `vit-parity tune` then measures it).
    def fa(fn, extra):
        return lambda x: fn(x["q"], x["k"], x["v"], cu_seqlens_q=x["cu"], cu_seqlens_k=x["cu"],
                            max_seqlen_q=x["max"], max_seqlen_k=x["max"], causal=False, **extra)

    try:
        from vllm.v1.attention.backends.fa_utils import (
            flash_attn_varlen_func,
            get_flash_attn_version,
        )

        c["FLASH_ATTN"] = (fa(flash_attn_varlen_func, {"fa_version": get_flash_attn_version()}), "vllm")
    except Exception as e:  # noqa: BLE001 -- no vLLM CUDA build here
        c["FLASH_ATTN"] = (None, f"unavailable: {type(e).__name__}")
    try:
        from flash_attn import flash_attn_varlen_func as upstream

        c["FLASH_ATTN_UPSTREAM"] = (fa(upstream, {}), "flash_attn")
    except Exception as e:  # noqa: BLE001
        c["FLASH_ATTN_UPSTREAM"] = (None, f"unavailable: {type(e).__name__}")
    return c


def _reference(torch, x):
    """fp32 reference: SDPA memory-efficient backend on fp32-upcast inputs, per sequence."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v, lens = x["q"], x["k"], x["v"], x["lens"]
    g = q.shape[1] // k.shape[1]
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    start = 0
    for s in lens:
        qi, ki, vi = (t[start:start + s].float().transpose(0, 1)[None] for t in (q, k, v))
        if g > 1:
            ki, vi = ki.repeat_interleave(g, 1), vi.repeat_interleave(g, 1)
        with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
            out[start:start + s] = F.scaled_dot_product_attention(qi, ki, vi)[0].transpose(0, 1)
        start += s
    return out


def _make_inputs(torch, shape: Shape, dtype, n_sets: int):
    cu_list = [0]
    for s in shape.lens:
        cu_list.append(cu_list[-1] + s)
    total = cu_list[-1]
    cu = torch.tensor(cu_list, dtype=torch.int32, device="cuda")
    sets = []
    for _ in range(n_sets):
        sets.append({
            "q": torch.randn(total, shape.heads, shape.head_dim, dtype=dtype, device="cuda"),
            "k": torch.randn(total, shape.kv_heads, shape.head_dim, dtype=dtype, device="cuda"),
            "v": torch.randn(total, shape.kv_heads, shape.head_dim, dtype=dtype, device="cuda"),
            "cu": cu, "max": max(shape.lens), "lens": shape.lens,
        })
    return sets


def run_shape(torch, shape: Shape, dtype, names: list[str], *, rep_ms: int = 200,
              configs: list[dict] | None = None) -> tuple[list[Result], list[dict]]:
    """Check + time each candidate on one shape. With ``configs``, also sweep VIT_TRITON configs."""
    import triton.testing

    from vit_backend_plugin.kernels.triton_vit import vit_attention

    bytes_per_set = 4 * sum(shape.lens) * shape.heads * shape.head_dim * dtype.itemsize
    n_sets = max(2, min(8, math.ceil(200e6 / bytes_per_set)))  # rotate > 4x the 50 MB L2
    sets = _make_inputs(torch, shape, dtype, n_sets)
    ref = _reference(torch, sets[0])
    ref_norm = ref.norm().item()
    dname = str(dtype).removeprefix("torch.")
    cands = _candidates(torch, dtype)
    results = []

    def check_and_time(name, fn):
        r = Result(name)
        try:
            x = dict(sets[0])
            x["out"] = torch.full_like(x["q"], float("nan"))  # poison: unwritten rows fail
            out = fn(x)
            torch.cuda.synchronize()
            err = ((out.float() - ref).norm().item()) / ref_norm
            r.rel_err = err
            r.numerics_ok = bool(math.isfinite(err) and err < REL_TOL[dname])
            i = [0]

            def step():
                i[0] = (i[0] + 1) % n_sets
                fn(sets[i[0]])

            r.ms = triton.testing.do_bench(step, warmup=25, rep=rep_ms, return_mode="median")
            r.tflops = shape.flops / (r.ms * 1e-3) / 1e12
        except Exception as e:  # noqa: BLE001 -- a candidate failing is a result, not a crash
            r.error = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        return r

    for name in names:
        fn, note = cands[name]
        if fn is None:
            results.append(Result(name, error=note))
            continue
        if name == "SDPA_CUDNN_NESTED" and shape.equal:
            continue
        r = check_and_time(name, fn)
        r.extra["note"] = note
        results.append(r)

    sweep = []
    for cfg in configs or []:
        r = check_and_time("VIT_TRITON", lambda x, cfg=cfg: vit_attention(
            x["q"], x["k"], x["v"], x["cu"], x["max"], out=x.get("out"), config=cfg))
        sweep.append({"config": cfg, "ms": r.ms, "tflops": r.tflops, "rel_err": r.rel_err,
                      "numerics_ok": r.numerics_ok, "error": r.error})
    return results, sweep


def sweep_configs(shape: Shape, splits: tuple[int, ...] = (16, 256)) -> list[dict]:
    """VIT_TRITON configs worth trying for a shape (tuning; see NOTES.md). ``splits`` are min_d1
    values: 16 splits head_dim (80 -> 64+16), 256 pads it to the next power of two."""
    if not shape.head_dim & (shape.head_dim - 1):
        splits = (256,)  # power of two: nothing to split
    out = []
    if max(shape.lens) <= 128:
        for md in splits:
            for pack in (2, 4, 8):  # PACK=1 hit an illegal address on Triton 3.6 (NOTES.md)
                for nw in (4, 8):
                    for ns in (2, 3):
                        out.append({"kernel": "packed", "PACK": pack, "num_warps": nw, "num_stages": ns,
                                    "cache_kv": ".cg", "min_d1": md})
        tiles = [(64, 64, 4), (64, 32, 4)]
    else:
        tiles = [(128, 64, 8), (128, 128, 8), (64, 64, 4), (64, 128, 4), (128, 64, 4), (128, 32, 4)]
        if shape.head_dim > 128:
            tiles = [(64, 64, 4), (64, 32, 4), (128, 32, 8), (64, 64, 8), (128, 64, 8)]
    n_main = len(out)
    for md in splits:
        for bm, bn, nw in tiles:
            for ns in (2, 3):
                out.append({"kernel": "main", "BLOCK_M": bm, "BLOCK_N": bn, "num_warps": nw,
                            "num_stages": ns, "cache_kv": ".cg", "min_d1": md})
    for cfg in out[n_main:n_main + 4]:  # does the .cg hint matter? (same tiles, default caching)
        out.append(dict(cfg, cache_kv=""))
    return out


# ------------------------------------------------------------------ reporting


def _geomean(vals):
    vals = [v for v in vals if v and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else float("nan")


def summarize(rows: list[dict]) -> dict:
    """Ratios and target checks from per-shape results."""
    ours_vs_cudnn, ours_vs_stock, checks = [], [], []
    for row in rows:
        t = {r["candidate"]: r["tflops"] for r in row["results"] if r.get("tflops")}
        ours, cudnn, stock = t.get("VIT_TRITON"), t.get("TORCH_SDPA_CUDNN"), t.get("TRITON_ATTN")
        name = row["shape"]["name"]
        if ours and cudnn:
            ratio = ours / cudnn
            ours_vs_cudnn.append(ratio)
            need = 1.0 if ("window" in name or "mixed" in name) else 0.8
            checks.append({"target": f"{name}: ours >= {need}x cuDNN", "value": round(ratio, 3), "ok": ratio >= need})
        if ours and stock:
            ours_vs_stock.append(ours / stock)
            if "SigLIP" in name:
                checks.append({"target": f"{name}: ours >= 5x stock triton", "value": round(ours / stock, 2),
                               "ok": ours / stock >= 5})
    gm = _geomean(ours_vs_stock)
    if ours_vs_stock:
        checks.append({"target": "geomean ours >= 2x stock triton", "value": round(gm, 2), "ok": gm >= 2})
    checks += resolver_pick_checks(rows)
    return {"geomean_ours_vs_cudnn": _geomean(ours_vs_cudnn), "geomean_ours_vs_stock_triton": gm,
            "checks": checks}


def resolver_pick_checks(rows: list[dict], tolerance: float = 0.05) -> list[dict]:
    """What the plugin's resolver would pick from this run's numbers, per head size, the way it
    picks inside vLLM (once per process, geometric mean over that head size's shapes), against the
    fastest candidate of each shape."""
    try:
        from vit_backend_plugin.backends import FEATURES
        from vit_backend_plugin.resolver import Measurement, ResolveRequest, resolve
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
        feats = frozenset(FEATURES)  # only measured candidates compete; they ran, so they import
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


def print_table(rows: list[dict], names: list[str], summary: dict, file=sys.stdout) -> None:
    w = max(len(r["shape"]["name"]) for r in rows) + 1
    short = {n: n.replace("TORCH_", "").replace("SDPA_", "")[:10] for n in names}
    print("\nTFLOP/s (4*S^2*D*H per sequence), median; '!' = numerics failed, '-' = unavailable", file=file)
    print(f"{'shape':<{w}}" + "".join(f"{short[n]:>11}" for n in names) + f"{'ours/cuDNN':>11}{'ours/stock':>11}", file=file)
    for row in rows:
        by = {r["candidate"]: r for r in row["results"]}
        line = f"{row['shape']['name']:<{w}}"
        for n in names:
            r = by.get(n)
            if not r or not r.get("tflops"):
                line += f"{'-':>11}"
            else:
                line += f"{r['tflops']:>10.1f}" + ("!" if not r["numerics_ok"] else " ")
        t = {k: v.get("tflops") for k, v in by.items()}
        for a, b in (("VIT_TRITON", "TORCH_SDPA_CUDNN"), ("VIT_TRITON", "TRITON_ATTN")):
            line += f"{t[a] / t[b]:>10.2f}x" if t.get(a) and t.get(b) else f"{'-':>11}"
        print(line, file=file)
    print(f"geomean ours/cuDNN {summary['geomean_ours_vs_cudnn']:.3f}x, "
          f"ours/stock triton {summary['geomean_ours_vs_stock_triton']:.2f}x", file=file)
    for c in summary["checks"]:
        print(f"  [{'ok' if c['ok'] else 'MISS'}] {c['target']}: {c['value']}", file=file)


def speed_table_entries(rows: list[dict], device: str, capability: tuple[int, int], dtype: str) -> list[dict]:
    entries = []
    for row in rows:
        by = {r["candidate"]: r for r in row["results"] if r.get("tflops")}
        sh = row["shape"]
        entries.append({
            "device": device, "capability": list(capability), "dtype": dtype,
            "head_size": sh["head_dim"], "seq_len": list(seq_bucket(sh["lens"])), "shape": sh["name"],
            "equal_lengths": len(set(sh["lens"])) == 1,
            "tflops": {n: round(by[n]["tflops"], 1) for n in TABLE_NAMES if n in by},
            "numerics_ok": {n: bool(by[n]["numerics_ok"]) for n in TABLE_NAMES if n in by},
        })
    return entries


def write_speed_table(path: str, entries: list[dict]) -> None:
    with open(path, "w") as f:
        json.dump({"schema": 1, "entries": entries}, f, indent=2)
        f.write("\n")


# ------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", nargs="*", default=[], metavar="SPEC",
                        help="extra shapes: [name=]D:BxS or [name=]D:l1,l2,.. [@heads[/kv_heads]]")
    parser.add_argument("--only-shapes", action="store_true", help="run only --shapes, not the defaults")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--candidates", default="", help="comma list (default: all)")
    parser.add_argument("--rep-ms", type=int, default=200, help="timing budget per candidate (ms)")
    parser.add_argument("--sweep", action="store_true", help="also sweep VIT_TRITON launch configs")
    parser.add_argument("--sweep-splits", default="16,256",
                        help="min_d1 values to sweep: 16 splits head_dim 80 -> 64+16, 256 pads to 128")
    parser.add_argument("--json", dest="json_out", default=None, help="write full results here")
    parser.add_argument("--write-speed-table", default=None, metavar="PATH",
                        help="write a speed table (schema 1) from this run")


ALL_CANDIDATES = ["TORCH_SDPA", "SDPA_FLASH", "SDPA_EFFICIENT", "TORCH_SDPA_CUDNN", "SDPA_CUDNN_NESTED",
                  "TORCH_VARLEN", "VIT_TRITON", "VIT_AUTO", "TRITON_ATTN", "FLASH_ATTN",
                  "FLASH_ATTN_UPSTREAM"]


def collect(args) -> dict:
    import torch
    import triton

    if not torch.cuda.is_available():
        raise RuntimeError("bench-kernels needs a CUDA GPU")
    dtype = getattr(torch, args.dtype)
    shapes = [] if args.only_shapes else [Shape(n, d, lens) for n, d, lens in DEFAULT_SHAPES]
    shapes += [parse_shape(s) for s in args.shapes]
    names = [n.strip() for n in args.candidates.split(",") if n.strip()] or ALL_CANDIDATES
    unknown = set(names) - set(ALL_CANDIDATES)
    if unknown:
        raise ValueError(f"unknown candidates {sorted(unknown)}; choose from {ALL_CANDIDATES}")
    props = torch.cuda.get_device_properties(0)
    meta = {"device": props.name, "capability": list(torch.cuda.get_device_capability(0)),
            "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "dtype": args.dtype,
            "argv": sys.argv, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    splits = tuple(int(x) for x in args.sweep_splits.split(",") if x)
    rows = []
    for sh in shapes:
        t0 = time.time()
        res, sweep = run_shape(torch, sh, dtype, names, rep_ms=args.rep_ms,
                               configs=sweep_configs(sh, splits) if args.sweep else None)
        torch.cuda.empty_cache()  # this shape's inputs are garbage now
        row = {"shape": {"name": sh.name, "head_dim": sh.head_dim, "lens": sh.lens, "heads": sh.heads,
                         "kv_heads": sh.kv_heads, "flops": sh.flops},
               "results": [r.__dict__ for r in res], "issue_reference": ISSUE_REFERENCE.get(sh.name)}
        if sweep:
            ok = [s for s in sweep if s["tflops"] and s["numerics_ok"]]
            row["sweep"] = sorted(sweep, key=lambda s: -(s["tflops"] or 0))
            if ok:
                best = max(ok, key=lambda s: s["tflops"])
                print(f"  sweep best {best['tflops']:.1f} TFLOP/s: {best['config']}", flush=True)
        rows.append(row)
        brief = ", ".join(f"{r.candidate}={r.tflops:.0f}" if r.tflops else f"{r.candidate}=ERR({r.error})"
                          for r in res)
        print(f"[{time.time() - t0:5.1f}s] {sh.name}: {brief}", flush=True)
        if getattr(args, "json_out", None):  # partial results survive a timeout
            with open(args.json_out + ".partial", "w") as f:
                json.dump({"meta": meta, "rows": rows}, f)
    return {"meta": meta, "candidates": names, "rows": rows, "summary": summarize(rows)}


def main(args) -> int:
    data = collect(args)
    print_table(data["rows"], data["candidates"], data["summary"])
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(data, f, indent=1)
    if args.write_speed_table:
        m = data["meta"]
        write_speed_table(args.write_speed_table,
                          speed_table_entries(data["rows"], m["device"], tuple(m["capability"]), m["dtype"]))
    bad = [r for row in data["rows"] for r in row["results"]
           if r["candidate"] in ("VIT_TRITON", "TORCH_SDPA_CUDNN") and r.get("numerics_ok") is False]
    return 1 if bad else 0
