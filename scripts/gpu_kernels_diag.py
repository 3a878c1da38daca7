"""VIT_TRITON correctness breakdown on the GPU: error per sequence / head / 128-row block.

usage: python scripts/gpu_kernels_diag.py SHAPE[;CONFIG_JSON] ...   (CONFIG_JSON optional)
"""
import json
import sys

import torch

from vit_backend_plugin.kernels.triton_vit import vit_attention
from vit_backend_plugin.tools.bench_kernels.inputs import _make_inputs
from vit_backend_plugin.tools.bench_kernels.numerics import _reference
from vit_backend_plugin.tools.bench_kernels.shapes import parse_shape

for arg in sys.argv[1:]:
    spec, _, cfg = arg.partition(";")
    cfg = json.loads(cfg) if cfg else None
    sh = parse_shape(spec)
    x = _make_inputs(torch, sh, torch.bfloat16, 1)[0]
    out = torch.full_like(x["q"], float("nan"))
    vit_attention(x["q"], x["k"], x["v"], x["cu"], x["max"], out=out, config=cfg)
    torch.cuda.synchronize()
    ref = _reference(torch, x)
    err = (out.float() - ref).abs()
    bad = (err > 0.05 + 0.05 * ref.abs()) | out.isnan()
    print(f"{spec} {cfg} rel_err {((out.float() - ref).norm() / ref.norm()).item():.4g} bad {bad.float().mean().item():.4f}")
    if bad.any():
        tok, h, d = bad.nonzero(as_tuple=True)
        print("  bad heads", sorted(set(h.tolist()))[:20], "bad dims", sorted(set(d.tolist()))[:90])
        cu = x["cu"].tolist()
        for b in range(len(cu) - 1):
            sel = (tok >= cu[b]) & (tok < cu[b + 1])
            if sel.any():
                rows = sorted(set((tok[sel] - cu[b]).tolist()))
                print(f"  seq {b}: {len(rows)} bad rows, first {rows[:5]} last {rows[-3:]}")
    sys.stdout.flush()
