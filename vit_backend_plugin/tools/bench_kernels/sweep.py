"""The VIT_TRITON launch-config sweep (``--sweep``, ``vit-parity tune --kernel-configs``)."""

from __future__ import annotations

from vit_backend_plugin.tools.bench_kernels.result import _brief, _tflops
from vit_backend_plugin.tools.bench_kernels.shapes import Shape
from vit_backend_plugin.tools.bench_kernels.timing import eager_ms


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


def run_sweep(torch, configs: list[dict], check, sets: list[dict], rep_ms: int, flops: float) -> list[dict]:
    """Each VIT_TRITON config checked (``check``: :func:`.numerics.checker`) and timed eager."""
    from vit_backend_plugin.kernels.triton_vit import vit_attention

    sweep = []
    for cfg in configs or []:
        def fn(x, cfg=cfg):
            return vit_attention(x["q"], x["k"], x["v"], x["cu"], x["max"], out=x.get("out"), config=cfg)

        r = check("VIT_TRITON", fn)
        if r.error is None:  # configs of one kernel: eager timing, one at a time, compares them
            try:
                r.ms = eager_ms(torch, fn, sets, rep_ms, 25)
                r.tflops = _tflops(flops, r.ms)
            except Exception as e:  # noqa: BLE001
                r.error = _brief(e)
        sweep.append({"config": cfg, "ms": r.ms, "tflops": r.tflops, "rel_err": r.rel_err,
                      "numerics_ok": r.numerics_ok, "error": r.error})
    return sweep
