"""vLLM's CPU path (``forward_cpu``) runs the plugin's kernel only when the user chose a plugin
backend explicitly and Triton's interpreter is on; the automatic choice on CPU stays TORCH_SDPA.
Real vLLM 0.32 on its CPU platform, real kernel in Triton's interpreter."""

import pytest

pytest.importorskip("vllm")

from _subproc import run_snippet  # noqa: E402

from vit_backend_plugin.selection.catalog import FEATURES  # noqa: E402
from vit_backend_plugin.selection.resolver import BackendSelectionError, ResolveRequest, resolve  # noqa: E402

SNIPPET = """
import json, torch
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vit_backend_plugin.vllm_glue import mm_encoder
calls = []
real = mm_encoder.get_kernel
def counting(name):
    calls.append(name)
    return real(name)
mm_encoder.get_kernel = counting
try:
    with set_current_vllm_config(VllmConfig()):
        layer = MMEncoderAttention(num_heads=2, head_size=80)
except Exception as e:
    print("RESULT " + json.dumps({"error": f"{type(e).__name__}: {e}"}))
    raise SystemExit(0)
torch.manual_seed(0)
cu = torch.tensor([0, 9, 40, 41], dtype=torch.int32)
q, k, v = (torch.randn(1, 41, 2, 80) for _ in range(3))
ref = torch.cat([torch.nn.functional.scaled_dot_product_attention(
    *(x[:, a:b].transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())], dim=1)
out = layer(q, k, v, cu_seqlens=cu)   # CustomOp dispatch: forward_cpu on vLLM's CPU platform
print("RESULT " + json.dumps({"backend": layer.attn_backend.name, "calls": calls,
      "err": float((out.reshape(ref.shape) - ref).norm() / ref.norm())}))
"""


def run(env):
    proc, res = run_snippet(SNIPPET, env={"VIT_ATTN_BACKEND": None, "TRITON_INTERPRET": None, **env})
    assert res is not None, proc.stderr[-3000:]
    return res


def test_explicit_plugin_backend_with_interpreter_runs_our_kernel_in_forward_cpu():
    res = run({"VIT_ATTN_BACKEND": "VIT_TRITON", "TRITON_INTERPRET": "1"})
    assert res["backend"] == "VIT_TRITON"
    assert res["calls"] == ["VIT_TRITON"]  # our kernel ran, once, through the custom op
    assert res["err"] < 1e-4


def test_automatic_choice_on_cpu_stays_stock_even_with_interpreter_on():
    res = run({"TRITON_INTERPRET": "1"})
    assert res["backend"] == "TORCH_SDPA" and res["calls"] == []
    assert res["err"] < 1e-5


def test_explicit_plugin_backend_without_interpreter_is_a_clear_error():
    res = run({"VIT_ATTN_BACKEND": "VIT_TRITON"})
    assert res["error"].startswith("BackendSelectionError")
    assert "missing triton_interpreter" in res["error"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("head", [16, 72, 80, 128])
def test_resolver_never_picks_a_plugin_backend_automatically_on_cpu(dtype, head):
    every = frozenset(FEATURES)
    assert resolve(ResolveRequest(head, dtype, platform="cpu", features=every)).chosen == "TORCH_SDPA"


def test_resolver_admits_vit_triton_on_cpu_only_explicitly_and_only_interpreted():
    feats = frozenset({"triton_interpreter", "vit_triton_kernel"})
    res = resolve(ResolveRequest(80, "float32", platform="cpu", features=feats, explicit="VIT_TRITON"))
    assert res.chosen == "VIT_TRITON" and res.how == "explicit"
    with pytest.raises(BackendSelectionError, match="missing triton_interpreter"):
        resolve(ResolveRequest(80, "float32", platform="cpu", features=frozenset({"vit_triton_kernel"}),
                               explicit="VIT_TRITON"))
    # on CUDA, float32 is still not one of VIT_TRITON's dtypes (the cpu override is cpu-only)
    with pytest.raises(BackendSelectionError, match="dtype float32"):
        resolve(ResolveRequest(80, "float32", platform="cuda", capability=(9, 0),
                               features=frozenset({"triton", "vit_triton_kernel"}), explicit="VIT_TRITON"))


def test_lengths_are_read_once_per_forward_not_once_per_layer():
    """A model that passes no max_seqlen (Qwen2-VL-family towers, for backends they do not
    know) hands every layer the same cu_seqlens: the plugin's op reads the lengths once for that
    tensor, again for a new one or after an in-place change, and stays correct."""
    proc, res = run_snippet("""
import json, torch
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vit_backend_plugin.vllm_glue import mm_encoder
with set_current_vllm_config(VllmConfig()):
    layers = [MMEncoderAttention(num_heads=2, head_size=80) for _ in range(3)]
def ref(q, k, v, cu):
    return torch.cat([torch.nn.functional.scaled_dot_product_attention(
        *(x[:, a:b].transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())], dim=1)
def err(out, r):
    return float((out.reshape(r.shape) - r).norm() / r.norm())
torch.manual_seed(0)
q, k, v = (torch.randn(1, 41, 2, 80) for _ in range(3))
reads, errs = [], []
cu = torch.tensor([0, 9, 40, 41], dtype=torch.int32)
for layer in layers:                       # one forward: three layers, one tensor
    errs.append(err(layer(q, k, v, cu_seqlens=cu), ref(q, k, v, cu)))
reads.append(mm_encoder.LENGTH_READS)
cu2 = torch.tensor([0, 30, 41], dtype=torch.int32)   # the next forward: a new tensor
errs.append(err(layers[0](q, k, v, cu_seqlens=cu2), ref(q, k, v, cu2)))
reads.append(mm_encoder.LENGTH_READS)
cu2[1] = 5                                  # changed in place: read again
errs.append(err(layers[0](q, k, v, cu_seqlens=cu2), ref(q, k, v, cu2)))
reads.append(mm_encoder.LENGTH_READS)
with torch.inference_mode():                # as vLLM runs its forwards: no version counters
    cu3 = torch.tensor([0, 20, 41], dtype=torch.int32)
    for layer in layers:
        errs.append(err(layer(q, k, v, cu_seqlens=cu3), ref(q, k, v, cu3)))
    reads.append(mm_encoder.LENGTH_READS)
    cu4 = torch.tensor([0, 1, 41], dtype=torch.int32)
    errs.append(err(layers[0](q, k, v, cu_seqlens=cu4), ref(q, k, v, cu4)))
    reads.append(mm_encoder.LENGTH_READS)
print("RESULT " + json.dumps({"backend": layers[0].attn_backend.name, "reads": reads, "errs": errs}))
""", env={"VIT_ATTN_BACKEND": "VIT_TRITON", "TRITON_INTERPRET": "1"})
    assert res is not None, proc.stderr[-3000:]
    assert res["backend"] == "VIT_TRITON"
    assert res["reads"] == [1, 2, 3, 4, 5]
    assert max(res["errs"]) < 1e-4
