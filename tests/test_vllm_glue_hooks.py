"""The glue uses vLLM's own hooks and code, never a patched or copied part of MMEncoderAttention
(real vLLM 0.32 on its CPU platform; our Triton kernel in Triton's interpreter)."""

import pytest

pytest.importorskip("vllm")

from _subproc import CAPTURE_PLUGIN_LOG, run_snippet  # noqa: E402

VLLM = CAPTURE_PLUGIN_LOG + """
import numpy as np
import torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
def build(n=1, **kw):
    with set_current_vllm_config(VllmConfig()):
        return [MMEncoderAttention(num_heads=2, head_size=72, **kw) for _ in range(n)]
def ref(q, k, v, cu):
    b = [int(x) for x in cu]
    return torch.cat([torch.nn.functional.scaled_dot_product_attention(
        *(x[:, a:z].transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
        for a, z in zip(b[:-1], b[1:])], dim=1)
"""


def test_register_leaves_every_attribute_of_vllms_class_untouched_and_is_idempotent():
    proc, res = run_snippet(VLLM + """
before = dict(vars(MMEncoderAttention))
original = MMEncoderAttention.__dict__["compute_max_seqlen"].__func__
import vit_backend_plugin, vllm.plugins
from vit_backend_plugin.plugin import status
vllm.plugins.load_general_plugins()
vit_backend_plugin.register(); vit_backend_plugin.register()
vllm.plugins.plugins_loaded = False
vllm.plugins.load_general_plugins()
from vllm.model_executor.custom_op import op_registry_oot
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
after = dict(vars(MMEncoderAttention))
print("RESULT " + json.dumps({
    "same_function": MMEncoderAttention.__dict__["compute_max_seqlen"].__func__ is original,
    "changed": sorted(k for k in set(before) | set(after) if before.get(k) is not after.get(k)),
    "oot": op_registry_oot["MMEncoderAttention"].__name__,
    "members": E._member_names_.count("VIT_TRITON"),
    "installed": status()["installed"],
    "warnings": [m for l, m in records if l == "WARNING"]}))
""")
    assert res is not None, proc.stderr[-3000:]
    assert res["same_function"]  # vLLM's own compute_max_seqlen, not a wrapper of it
    assert res["changed"] == []  # nothing on vLLM's class added, replaced or removed
    assert res["oot"] == "PluginMMEncoderAttention"  # through vLLM's register_oot hook
    assert res["installed"] and res["members"] == 1 and res["warnings"] == []


def test_tower_metadata_reaches_the_plugin_op_without_a_device_read():
    """Pixtral's own metadata helper (vLLM's compute_max_seqlen + maybe_recompute_cu_seqlens, as
    every tower that asks for a max does): vLLM gives our backend max_seqlen 0, and the op takes
    the host max noted by the OOT hook, for two cu_seqlens tensors used alternately (Qwen2.5-VL's
    full and windowed attention), with no read of the lengths from the device."""
    proc, res = run_snippet(VLLM + """
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.model_executor.models.pixtral import _make_packed_sequence_metadata
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
from vit_backend_plugin.vllm_glue import mm_encoder
layers = build(4)
torch.manual_seed(0)
q, k, v = (torch.randn(1, 41, 2, 72) for _ in range(3))
full = _make_packed_sequence_metadata([9, 31, 1], E.VIT_TRITON, 144, 1, torch.device("cpu"))
window = _make_packed_sequence_metadata([20, 21], E.VIT_TRITON, 144, 1, torch.device("cpu"))
reads, errs = mm_encoder.LENGTH_READS, []
with torch.inference_mode():  # as vLLM runs a forward
    for i, layer in enumerate(layers):
        cu, mx, _ = (full, window)[i % 2]
        errs.append(float((layer(q, k, v, cu_seqlens=cu, max_seqlen=mx) - ref(q, k, v, cu)).abs().max()))
print("RESULT " + json.dumps({"vllm_max": [int(full[1]), int(window[1])], "errs": errs,
      "reads": mm_encoder.LENGTH_READS - reads, "backend": layers[0].attn_backend.name}))
""", env={"VIT_ATTN_BACKEND": "VIT_TRITON", "TRITON_INTERPRET": "1"})
    assert res is not None, proc.stderr[-3000:]
    assert res["backend"] == "VIT_TRITON"
    assert res["vllm_max"] == [0, 0]  # vLLM's own answer for a backend it does not know
    assert res["reads"] == 0
    assert max(res["errs"]) < 1e-4


def test_fallen_back_layer_is_attribute_for_attribute_the_layer_stock_vllm_builds():
    """A next vLLM whose __init__ derives one more attribute from the backend (as 0.32 added the
    FlashInfer workspace and the fp8 state; fault injection: a wrapper of vLLM's __init__): a
    layer leaving a failing plugin kernel gets it, and every other attribute, as stock builds it."""
    proc, res = run_snippet(VLLM + """
vllm_init = MMEncoderAttention.__init__
def next_init(self, *a, **kw):
    vllm_init(self, *a, **kw)
    self.next_vllm_state = "derived from " + self.attn_backend.name
MMEncoderAttention.__init__ = next_init
MACHINERY = set(vars(torch.nn.Module()))
def state(layer):  # the module machinery and the bound forward aside
    return {k: repr(v) for k, v in vars(layer).items() if k not in MACHINERY and k != "_forward_method"}
stock = state(build(prefix="visual.blocks.0.attn.attn")[0])  # before the plugin: vLLM's own layer
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
from vit_backend_plugin.vllm_glue import selector
resolve = selector.resolve_for_vllm
selector.resolve_for_vllm = lambda *a, **kw: E.VIT_TRITON  # the automatic choice on an H100
layer = build(prefix="visual.blocks.0.attn.attn")[0]
selector.resolve_for_vllm = resolve
before = state(layer)
import vit_backend_plugin.kernels.triton_vit as tv
def missing_configs():
    raise FileNotFoundError("vit_backend_plugin/kernels/configs.json")
tv.load_configs = missing_configs
torch.manual_seed(0)
q, k, v = (torch.randn(1, 12, 2, 72) for _ in range(3))
cu = torch.tensor([0, 5, 12], dtype=torch.int32)
# vLLM's CUDA dispatch (on CPU, forward_cpu runs an automatic choice as stock: TORCH_SDPA)
err = float((layer.forward_cuda(q, k, v, cu, torch.tensor(7)) - ref(q, k, v, cu)).abs().max())
print("RESULT " + json.dumps({"stock": stock, "before": before, "after": state(layer), "err": err,
      "cls": type(layer).__name__, "warnings": [m for l, m in records if l == "WARNING"]}))
""", env={"TRITON_INTERPRET": "1", "VIT_ATTN_BACKEND": None})
    assert res is not None, proc.stderr[-3000:]
    stock, before, after = res["stock"], res["before"], res["after"]
    assert res["cls"] == "PluginMMEncoderAttention"
    assert set(stock) <= set(before)  # built by vLLM's __init__: nothing stock has is missing
    assert "VIT_TRITON" in before["attn_backend"]
    assert before["next_vllm_state"] == repr("derived from VIT_TRITON")
    assert {k: after[k] for k in stock} == stock  # every stock attribute, as stock has it
    assert stock["next_vllm_state"] == repr("derived from TORCH_SDPA")
    assert res["err"] < 1e-5
    assert len(res["warnings"]) == 1 and res["warnings"][0].endswith("vLLM's own choice TORCH_SDPA")


def test_a_stock_backend_after_fallback_gets_the_real_max_seqlen():
    """vLLM computed max_seqlen 0 for our backend; a stock backend that takes a max (vLLM's own
    compute_max_seqlen says which) gets the host max the OOT hook noted, without a device read."""
    proc, res = run_snippet(VLLM + """
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
from vit_backend_plugin.vllm_glue import mm_encoder
P = mm_encoder.PluginMMEncoderAttention
probe = {b: MMEncoderAttention.compute_max_seqlen(getattr(E, b), mm_encoder._ONE_TOKEN) > 0
         for b in ("FLASH_ATTN", "TRITON_ATTN", "TORCH_SDPA")}
layer = build()[0]
layer.attn_backend, layer._vit_stock_needs_max = E.TRITON_ATTN, True  # after a fallback on a GPU
cu_np = np.array([0, 9, 40, 41], dtype=np.int32)
cu = P.maybe_recompute_cu_seqlens(E.VIT_TRITON, cu_np, 144, 1, torch.device("cpu"))
reads = mm_encoder.LENGTH_READS
noted = int(layer._stock_max_seqlen(cu, torch.tensor(0, dtype=torch.int32)))
none = int(layer._stock_max_seqlen(cu, None))
kept = layer._stock_max_seqlen(cu, 17)
noted_reads = mm_encoder.LENGTH_READS - reads
fresh = int(layer._stock_max_seqlen(torch.tensor([0, 3, 5], dtype=torch.int32), torch.tensor(0)))
stock_cu = MMEncoderAttention.maybe_recompute_cu_seqlens(E.TRITON_ATTN, cu_np, 144, 1, torch.device("cpu"))
print("RESULT " + json.dumps({"probe": probe, "noted": noted, "none": none, "kept": kept,
      "noted_reads": noted_reads, "fresh": fresh, "fresh_reads": mm_encoder.LENGTH_READS - reads,
      "same_values": bool(torch.equal(cu, stock_cu))}))
""")
    assert res is not None, proc.stderr[-3000:]
    assert res["probe"] == {"FLASH_ATTN": True, "TRITON_ATTN": True, "TORCH_SDPA": False}
    assert res["noted"] == res["none"] == 31 and res["kept"] == 17 and res["noted_reads"] == 0
    assert res["fresh"] == 3 and res["fresh_reads"] == 1  # a tensor no hook saw: read once
    assert res["same_values"]  # the hook returns vLLM's own cu_seqlens for our backends
