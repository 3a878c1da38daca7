"""A failed install is rolled back completely: every step register() took is undone, each undo
independently of the others (real vLLM 0.32 on its CPU platform; faults injected)."""

import pytest

pytest.importorskip("vllm")

from _subproc import CAPTURE_PLUGIN_LOG, run_snippet  # noqa: E402

# The last install step (the platform's ViT selection) patches the platform, then fails.
LAST_STEP_FAILS = CAPTURE_PLUGIN_LOG + """
import vit_backend_plugin.vllm_glue.selector as selector
real_patch = selector.patch_platform
def patch_then_fail(platform):
    real_patch(platform)
    raise RuntimeError("injected at the last step")
selector.patch_platform = patch_then_fail
"""
AFTER = """
import vllm.plugins
vllm.plugins.load_general_plugins()
import torch
import vllm.platforms.cpu as cpu
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.config.multimodal import MultiModalConfig
from vllm.model_executor.custom_op import op_registry_oot
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vllm.platforms import current_platform
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
from vit_backend_plugin.kernels.registry import PLUGIN_BACKENDS
from vit_backend_plugin.plugin import status
def error_of(fn):
    try:
        fn()
    except Exception as e:
        return type(e).__name__
with set_current_vllm_config(VllmConfig()):
    layer = MMEncoderAttention(num_heads=2, head_size=72)
q = torch.randn(1, 5, 144)
print("RESULT " + json.dumps({
    "members": [n for n in PLUGIN_BACKENDS if n in E.__members__ or hasattr(E, n)],
    "values": [str(v) for v in E._value2member_map_ if "vllm_glue" in str(v)],
    "oot": "MMEncoderAttention" in op_registry_oot,
    "patched": "get_vit_attn_backend" in cpu.CpuPlatform.__dict__,
    "op": hasattr(torch.ops.vllm, "vit_plugin_attention"),
    "auto": current_platform.get_vit_attn_backend(80, torch.bfloat16).name,
    "stock_check": error_of(lambda: current_platform.get_vit_attn_backend(
        80, torch.bfloat16, backend=E.TRITON_ATTN)),
    "config_name": error_of(lambda: MultiModalConfig(mm_encoder_attn_backend="VIT_TRITON")),
    "cls": type(layer).__name__, "shape": list(layer(q, q, q).shape),
    "fi_host": "FLASHINFER_HOST" in E.__members__, "status": status(),
    "warnings": [m for l, m in records if l == "WARNING"]}))
"""


def test_fault_at_the_last_install_step_rolls_every_step_back():
    proc, res = run_snippet(LAST_STEP_FAILS + AFTER)
    assert res is not None, proc.stderr[-3000:]
    assert res["members"] == [] and res["values"] == []  # no plugin member left in vLLM's enum
    assert not res["oot"] and not res["patched"] and not res["op"]
    assert res["auto"] == "TORCH_SDPA" and res["stock_check"] == "AssertionError"  # stock selection
    assert res["config_name"] is not None  # vLLM's config no longer accepts our names
    assert res["cls"] == "MMEncoderAttention" and res["shape"] == [1, 5, 144]
    assert res["fi_host"]  # the decoder backend is independent of the ViT glue
    assert not res["status"]["installed"]
    assert len(res["warnings"]) == 1
    assert res["warnings"][0] == ("vit-backend-plugin disabled, stock vLLM ViT attention selection "
                                  "in use (RuntimeError: injected at the last step)")


def test_a_failing_undo_step_does_not_stop_the_others():
    proc, res = run_snippet(LAST_STEP_FAILS + """
import vit_backend_plugin.vllm_glue.registration as registration
def undo_fails():
    raise RuntimeError("injected in an undo")
registration.unregister_oot = undo_fails
""" + AFTER)
    assert res is not None, proc.stderr[-3000:]
    assert res["oot"]  # the undo that failed
    assert res["members"] == [] and res["values"] == [] and not res["patched"] and not res["op"]
    assert res["auto"] == "TORCH_SDPA" and res["stock_check"] == "AssertionError"
    assert len(res["warnings"]) == 1
    assert res["warnings"][0].endswith(
        "(RuntimeError: injected at the last step; rollback incomplete: "
        "MMEncoderAttention OOT class: RuntimeError: injected in an undo)")
