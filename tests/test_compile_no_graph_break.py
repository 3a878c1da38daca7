"""A MMEncoderAttention on a plugin backend traces as one graph (vLLM's compile_mm_encoder and
encoder CUDA graphs need that): every host read of max_seqlen / lengths is inside our custom op.
Real vLLM on its CPU platform; our Triton kernel runs in Triton's interpreter."""

import pytest

pytest.importorskip("vllm")

from _subproc import run_snippet  # noqa: E402


def test_plugin_backend_compiles_fullgraph_without_graph_break():
    proc, res = run_snippet("""
import json, torch
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
with set_current_vllm_config(VllmConfig()):
    layer = MMEncoderAttention(num_heads=2, head_size=72)
layer.attn_backend = E.VIT_TRITON
torch.manual_seed(0)
cu = torch.tensor([0, 7, 40], dtype=torch.int32)
qkv = torch.randn(1, 40, 3, 2 * 72)  # packed qkv, as vision towers hand it over
q, k, v = qkv.unbind(2)
def f(q, k, v, cu, mx):
    return layer.forward_cuda(q, k, v, cu, mx)
out = {}
for name, mx in (("given", torch.tensor(33, dtype=torch.int32)), ("zero", torch.tensor(0))):
    torch._dynamo.reset()
    ex = torch._dynamo.explain(f)(q, k, v, cu, mx)
    torch._dynamo.reset()
    y = torch.compile(f, fullgraph=True, backend="eager")(q, k, v, cu, mx)
    r = torch.cat([torch.nn.functional.scaled_dot_product_attention(
        *(x[:, a:b].view(1, b - a, 2, 72).transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
        for a, b in ((0, 7), (7, 40))], dim=1).reshape(1, 40, 144)
    out[name] = {"breaks": ex.graph_break_count, "graphs": ex.graph_count,
                 "reasons": [str(b.reason) for b in ex.break_reasons],
                 "targets": [str(n.target) for g in ex.graphs for n in g.graph.nodes if n.op == "call_function"],
                 "ops": sum("vit_plugin_attention" in str(n.target)
                            for g in ex.graphs for n in g.graph.nodes),
                 "err": float((y - r).abs().max()), "shape": list(y.shape)}
print("RESULT " + json.dumps(out))
""", env={"TRITON_INTERPRET": "1"})
    assert res is not None, proc.stderr[-3000:]
    for case in res.values():
        assert case["breaks"] == 0 and case["graphs"] == 1, case["reasons"]
        assert case["ops"] == 1  # the kernel is one opaque op in the graph
        assert case["shape"] == [1, 40, 144] and case["err"] < 1e-4
