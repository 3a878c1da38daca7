"""Run-time faults of a plugin kernel inside a real vLLM MMEncoderAttention (CPU platform, our
Triton kernel in Triton's interpreter): an automatic choice falls back per layer to vLLM's own
backend with one warning; an explicit choice raises a clear error instead."""

import pytest

pytest.importorskip("vllm")

from _subproc import CAPTURE_PLUGIN_LOG, run_snippet  # noqa: E402

PRE = CAPTURE_PLUGIN_LOG + """
import torch
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
import vit_backend_plugin.kernels.triton_vit as tv
from vit_backend_plugin.vllm_glue.mm_encoder import PluginBackendError

faults = []
def missing_configs():  # what a wheel without kernels/configs.json did at the first call
    faults.append(1)
    raise FileNotFoundError("vit_backend_plugin/kernels/configs.json")
tv.load_configs = missing_configs

torch.manual_seed(0)
cu = torch.tensor([0, 5, 12], dtype=torch.int32)
q, k, v = torch.randn(3, 1, 12, 2, 72).unbind(0)
ref = torch.cat([torch.nn.functional.scaled_dot_product_attention(
    *(x[:, a:b].transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
    for a, b in ((0, 5), (5, 12))], dim=1)
def call(layer):
    return layer.forward_cuda(q, k, v, cu, torch.tensor(7, dtype=torch.int32))
"""


def test_automatic_choice_falls_back_per_layer_with_one_warning():
    proc, res = run_snippet(PRE + """
with set_current_vllm_config(VllmConfig()):
    layers = [MMEncoderAttention(num_heads=2, head_size=72) for _ in range(2)]
for layer in layers:
    layer.attn_backend = E.VIT_TRITON  # what the resolver picks automatically on an H100
errs, names = [], []
for layer in layers:
    for _ in range(2):
        errs.append(float((call(layer) - ref).abs().max()))
    names.append(layer.attn_backend.name)
print("RESULT " + json.dumps({"errs": errs, "names": names, "faults": len(faults),
      "sources": [l.vit_backend_source for l in layers],
      "warnings": [m for l, m in records if l == "WARNING"]}))
""", env={"TRITON_INTERPRET": "1", "VIT_ATTN_BACKEND": None})
    assert res is not None, proc.stderr[-3000:]
    assert res["sources"] == ["", ""]
    assert max(res["errs"]) < 1e-5  # every call answered, by vLLM's own backend
    assert res["names"] == ["TORCH_SDPA", "TORCH_SDPA"]  # vLLM's own choice on CPU
    assert res["faults"] == 2  # once per layer; afterwards the layer stays on stock
    assert len(res["warnings"]) == 1, res["warnings"]
    w = res["warnings"][0]
    assert "VIT_TRITON failed at run time (FileNotFoundError: " in w and "configs.json" in w
    assert w.endswith("now uses vLLM's own choice TORCH_SDPA")


def test_explicit_env_choice_raises_clear_error():
    proc, res = run_snippet(PRE + """
with set_current_vllm_config(VllmConfig()):
    layer = MMEncoderAttention(num_heads=2, head_size=72)  # VIT_ATTN_BACKEND set: explicit
layer.attn_backend = E.VIT_TRITON  # what that explicit choice resolves to on a GPU
try:
    call(layer)
    err = None
except PluginBackendError as e:
    err = str(e)
print("RESULT " + json.dumps({"err": err, "name": layer.attn_backend.name,
      "source": layer.vit_backend_source, "warnings": [m for l, m in records if l == "WARNING"]}))
""", env={"TRITON_INTERPRET": "1", "VIT_ATTN_BACKEND": "TORCH_SDPA"})
    assert res is not None, proc.stderr[-3000:]
    assert res["source"] == "VIT_ATTN_BACKEND"
    assert res["err"] is not None and res["err"].startswith(
        "ViT attention backend VIT_TRITON (VIT_ATTN_BACKEND) failed at run time: FileNotFoundError: ")
    assert "does not switch to another backend" in res["err"]
    assert res["name"] == "VIT_TRITON" and res["warnings"] == []


def test_explicit_engine_argument_is_recorded_as_explicit():
    proc, res = run_snippet(PRE + """
from types import SimpleNamespace
from vllm.config.multimodal import MultiModalConfig
cfg = VllmConfig()
cfg.model_config = SimpleNamespace(multimodal_config=MultiModalConfig(mm_encoder_attn_backend="TORCH_SDPA"))
with set_current_vllm_config(cfg):
    layer = MMEncoderAttention(num_heads=2, head_size=72)
layer.attn_backend = E.VIT_TRITON
try:
    call(layer)
    err = None
except PluginBackendError as e:
    err = str(e)
print("RESULT " + json.dumps({"err": err, "source": layer.vit_backend_source}))
""", env={"TRITON_INTERPRET": "1", "VIT_ATTN_BACKEND": None})
    assert res is not None, proc.stderr[-3000:]
    assert res["source"] == "mm_encoder_attn_backend"
    assert res["err"].startswith("ViT attention backend VIT_TRITON (mm_encoder_attn_backend) "
                                 "failed at run time: FileNotFoundError")
