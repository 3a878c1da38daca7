"""Device-side: the plugin's ViT attention layers inside a real CUDA-graph capture, the way vLLM's
encoder CUDA graphs run a tower (`compilation_config.cudagraph_mm_encoder`): inputs padded to a
token budget (cu_seqlens ends before the last token) and max_seqlen a safe upper bound, not exact.

Per layer: one eager call, a warm-up off the capture stream, the capture, a replay; then
  - the replay's valid rows against the eager call and an fp32 reference,
  - the padding rows (past cu_seqlens[-1]): all zero, as vLLM's own FA wrapper leaves them,
  - the backend the layer ends on (a plugin backend that would sync falls back to stock's).
Prints one `CAPTURE_CHECK {json}` line per layer; exit 1 if any check failed.

    PYTHONPATH=/tmp/site python3 scripts/gpu_capture_check.py
"""

from __future__ import annotations

import json
import sys


def check(torch, bench_vllm, label, backend, head, lens, budget, expect_error=""):
    torch.manual_seed(0)
    layer = bench_vllm.build_layer(torch, backend, 16, 16, head, torch.bfloat16)
    chosen = layer.attn_backend.name
    q, k, v = (torch.randn(1, budget, 16, head, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    max_seqlen = torch.tensor(budget, dtype=torch.int32)  # an upper bound, as in capture
    valid = int(sum(lens))
    res = {"layer": label, "requested": backend or "automatic", "chosen": chosen}
    try:
        # As vLLM's encoder-graph manager does: one eager forward on the capture inputs, then
        # the capture (here also a warm-up off the capture stream, as torch.cuda.graph asks).
        res["stage"] = "eager"
        eager = layer(q, k, v, cu_seqlens=cu, max_seqlen=max_seqlen).clone()
        res["after_eager"] = layer.attn_backend.name
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            layer(q, k, v, cu_seqlens=cu, max_seqlen=max_seqlen)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        res["stage"] = "capture"
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = layer(q, k, v, cu_seqlens=cu, max_seqlen=max_seqlen)
        out.fill_(float("nan"))  # replay must write every row again, padding included
        graph.replay()
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001 -- a failed capture is the result
        res.update(captured=False, error=f"{type(e).__name__}: {str(e)[:300]}",
                   ok=bool(expect_error) and type(e).__name__ == expect_error)
        return res
    if expect_error:
        res.update(captured=True, ok=False, error=f"expected {expect_error}, got none")
        return res
    from vit_backend_plugin.tools.bench_kernels.numerics import _reference  # fp32, per sequence

    ref = _reference(torch, {"q": q[0], "k": k[0], "v": v[0], "lens": lens})[:valid]
    got = out[0, :valid].float()
    err = ((got - ref).norm() / ref.norm()).item()
    pad = out[0, valid:]
    res.update(captured=True, ended_on=layer.attn_backend.name, rel_err_vs_fp32=round(err, 5),
               replay_equals_eager=bool(torch.equal(out[0, :valid], eager[0, :valid])),
               padding_rows=budget - valid, padding_all_zero=bool((pad == 0).all().item()))
    res["ok"] = bool(err < 2e-2 and res["padding_all_zero"])
    return res


def main() -> int:
    import torch
    import vllm.platforms  # noqa: F401 -- the CUDA platform's import-time settings, as in an engine

    from vit_backend_plugin.tools import bench_vllm_layers as bench_vllm
    bench_vllm.load_plugin()
    lens = [729, 256, 64, 1024]  # 2073 tokens of images in a 4096-token budget
    # (label, backend named or None = the resolver's choice, head size, error expected)
    cases = [("VIT_TRITON d80", "VIT_TRITON", 80, "", 4096), ("VIT_AUTO d80", "VIT_AUTO", 80, "", 4096),
             ("FLASH_ATTN d80 (stock)", "FLASH_ATTN", 80, "", 4096),
             ("automatic d96 (the table picks TORCH_SDPA_CUDNN)", None, 96, "", 4096),
             # no padding: the eager call runs cuDNN; the capture itself must refuse it
             ("automatic d96, no padding", None, 96, "", sum(lens)),
             # named explicitly, a backend that cannot run in a capture raises instead of switching
             ("TORCH_SDPA_CUDNN d96 named", "TORCH_SDPA_CUDNN", 96, "PluginBackendError", 4096)]
    failed = 0
    for label, backend, head, expect_error, budget in cases:
        res = check(torch, bench_vllm, label, backend, head, lens, budget, expect_error)
        print("CAPTURE_CHECK " + json.dumps(res), flush=True)
        failed += not res["ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
