"""Numerics: the fp32 reference and each candidate's check against it."""

from __future__ import annotations

import math

from vit_backend_plugin.tools.bench_kernels.result import Result, _brief

REL_TOL = {"bfloat16": 2e-2, "float16": 5e-3, "float32": 1e-3}


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


def checker(torch, sets: list[dict], dtype):
    """check(name, fn) -> :class:`Result`: the candidate's relative error against the fp32
    reference on the first input set, with ``out`` NaN-poisoned first (unwritten rows fail)."""
    ref = _reference(torch, sets[0])
    ref_norm = ref.norm().item()
    dname = str(dtype).removeprefix("torch.")

    def check(name, fn) -> Result:
        r = Result(name)
        try:
            x = dict(sets[0])
            x["out"] = torch.full_like(x["q"], float("nan"))  # poison: unwritten rows fail
            out = fn(x)
            torch.cuda.synchronize()
            err = ((out.float() - ref).norm().item()) / ref_norm
            r.rel_err = err
            r.numerics_ok = bool(math.isfinite(err) and err < REL_TOL[dname])
        except Exception as e:  # noqa: BLE001 -- a candidate failing is a result, not a crash
            r.error = _brief(e)
        return r

    return check
