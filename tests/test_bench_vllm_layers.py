"""The engine-faithful benchmark's candidates, built on real vLLM 0.32 (its CPU platform here):
the layer each backend name yields, what stock vLLM would pick, and outputs against SDPA."""

import pytest

pytest.importorskip("vllm")

from _subproc import run_snippet  # noqa: E402


def test_layers_are_built_and_called_as_vllm_does():
    proc, res = run_snippet("""
import json, torch
from vit_backend_plugin.tools.bench_kernels.shapes import Shape
from vit_backend_plugin.tools import bench_vllm_layers as bench_vllm
stock = bench_vllm.stock_choices(torch, {(80, "float32")})
status = bench_vllm.load_plugin()
shape = Shape("t", 80, [5, 9, 2], heads=2, kv_heads=2)
cache = {}
cands = bench_vllm.engine_candidates(torch, shape, torch.float32, ["TORCH_SDPA", "VIT_TRITON"], cache)
total = sum(shape.lens)
packed = torch.randn(total, 3, 2, 80)
x = {"q": torch.randn(total, 2, 80), "k": torch.randn(total, 2, 80), "v": packed[:, 2],
     "cu": torch.tensor([0, 5, 14, 16], dtype=torch.int32)}
ref, start = [], 0
for s in shape.lens:
    q, k, v = (t[start:start + s].transpose(0, 1)[None] for t in (x["q"], x["k"], x["v"]))
    ref.append(torch.nn.functional.scaled_dot_product_attention(q, k, v)[0].transpose(0, 1))
    start += s
out = cands["TORCH_SDPA"][0](x)
print("RESULT " + json.dumps({
    "stock": stock[(80, "float32")], "installed": status["installed"],
    "notes": {k: v[1] for k, v in cands.items()}, "fns": {k: v[0] is not None for k, v in cands.items()},
    "pick": bench_vllm.picked_backend(cache, shape, torch.float32),
    "close": bool(torch.allclose(out, torch.cat(ref), atol=1e-5)), "shape": list(out.shape)}))
""")
    assert res is not None, proc.stderr[-3000:]
    assert res["stock"] == "TORCH_SDPA" and res["installed"]
    assert res["fns"] == {"TORCH_SDPA": True, "VIT_TRITON": False, "PICK": True}
    # An explicit plugin backend that cannot run on this platform is reported, with vLLM's reason.
    assert "cannot run here" in res["notes"]["VIT_TRITON"]
    assert res["pick"] == "TORCH_SDPA" and res["notes"]["PICK"] == "vllm layer: TORCH_SDPA"
    assert res["close"] and res["shape"] == [16, 2, 80]


def test_stock_choices_refuse_to_run_after_the_plugin_loaded():
    proc, res = run_snippet("""
import json, torch
from vit_backend_plugin.tools import bench_vllm_layers as bench_vllm
bench_vllm.load_plugin()
try:
    bench_vllm.stock_choices(torch, {(80, "float32")})
    print("RESULT " + json.dumps("no error"))
except RuntimeError as e:
    print("RESULT " + json.dumps(str(e)))
""")
    assert res is not None, proc.stderr[-3000:]
    assert "before the plugin is loaded" in res
