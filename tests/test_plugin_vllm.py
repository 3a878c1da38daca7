"""The plugin against real vLLM 0.32 on its CPU platform (no mocks of vLLM): entry point,
resolver in MMEncoderAttention, explicit choices, VLLM_PLUGINS, fault injection."""

import importlib.metadata

import pytest

pytest.importorskip("vllm")

from _subproc import CAPTURE_PLUGIN_LOG, run_snippet  # noqa: E402

# Common preamble: capture the plugin's log records, then load plugins the way vLLM does.
PRE = CAPTURE_PLUGIN_LOG
LOAD = """
import vllm.plugins
vllm.plugins.load_general_plugins()
from vllm.platforms import current_platform
"""
BUILD = """
import torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
def build(head=72):
    with set_current_vllm_config(VllmConfig()):
        return MMEncoderAttention(num_heads=2, head_size=head)
"""


def test_entry_point_is_declared():
    eps = importlib.metadata.entry_points(group="vllm.general_plugins")
    ours = [ep for ep in eps if ep.name == "vit_backend_plugin"]
    assert len(ours) == 1 and ours[0].value == "vit_backend_plugin:register"


def test_load_general_plugins_installs_resolver_in_mm_encoder_attention():
    proc, res = run_snippet(PRE + LOAD + BUILD + """
from vit_backend_plugin.plugin import status
from vit_backend_plugin.vllm_glue.selector import is_patched
layer = build(72)
q = torch.randn(2, 9, 2 * 72)
out = layer(q, q, q)
ref = torch.nn.functional.scaled_dot_product_attention(
    *(x.view(2, 9, 2, 72).transpose(1, 2) for x in (q, q, q))).transpose(1, 2).reshape(2, 9, 144)
print("RESULT " + json.dumps({
    "status": status(), "patched": is_patched(current_platform),
    "cls": type(layer).__name__, "backend": layer.attn_backend.name,
    "close": bool(torch.allclose(out, ref, atol=1e-5)), "records": records}))
""")
    assert res is not None, proc.stderr[-3000:]
    assert res["status"]["installed"] and res["patched"]
    assert res["cls"] == "PluginMMEncoderAttention"
    assert res["backend"] == "TORCH_SDPA" and res["close"]
    infos = [m for lvl, m in res["records"] if lvl == "INFO" and m.startswith("ViT attention:")]
    assert infos == ["ViT attention: TORCH_SDPA (head_size=72, dtype=float32; static order TORCH_SDPA)"]


def test_explicit_choices_precedence_and_clear_errors():
    proc, res = run_snippet(PRE + LOAD + """
import torch
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
out = {}
def ask(**kw):
    try:
        return current_platform.get_vit_attn_backend(80, torch.bfloat16, **kw).name
    except Exception as e:
        return f"{type(e).__name__}: {e}"
out["env_bad"] = ask()                                  # VIT_ATTN_BACKEND=FLASH_ATTN on CPU
out["engine_arg_wins"] = ask(backend=E.TORCH_SDPA)      # engine arg beats the env var
out["engine_arg_bad"] = ask(backend=E.TRITON_ATTN)
out["plugin_member"] = E["VIT_TRITON"].name             # plugin backends are real enum members
from vllm.config.multimodal import MultiModalConfig
out["cli_parse"] = MultiModalConfig(mm_encoder_attn_backend="vit_triton").mm_encoder_attn_backend.name
print("RESULT " + json.dumps(out))
""", env={"VIT_ATTN_BACKEND": "FLASH_ATTN"})
    assert res is not None, proc.stderr[-3000:]
    assert res["env_bad"].startswith("BackendSelectionError: ViT attention backend FLASH_ATTN "
                                      "(VIT_ATTN_BACKEND) cannot run here: not available on cpu")
    assert res["env_bad"].endswith("Usable for head_size=80, dtype=bfloat16 on cpu: TORCH_SDPA")
    assert res["engine_arg_wins"] == "TORCH_SDPA"
    assert "TRITON_ATTN (mm_encoder_attn_backend) cannot run here" in res["engine_arg_bad"]
    assert "AssertionError" not in res["engine_arg_bad"]
    assert res["plugin_member"] == "VIT_TRITON" and res["cli_parse"] == "VIT_TRITON"


def test_vllm_plugins_excluding_us_keeps_stock_behaviour():
    proc, res = run_snippet(PRE + LOAD + """
import torch
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
from vit_backend_plugin.plugin import status
from vit_backend_plugin.vllm_glue.selector import is_patched
try:
    current_platform.get_vit_attn_backend(80, torch.bfloat16, backend=E.TRITON_ATTN)
    stock = "no error"
except AssertionError as e:
    stock = "AssertionError"  # vLLM's own check, untouched
print("RESULT " + json.dumps({"attempted": status()["attempted"], "patched": is_patched(current_platform),
      "auto": current_platform.get_vit_attn_backend(80, torch.bfloat16).name, "stock": stock,
      "members": "VIT_TRITON" in E.__members__}))
""", env={"VLLM_PLUGINS": "some_other_plugin", "VIT_ATTN_BACKEND": "FLASH_ATTN"})
    assert res is not None, proc.stderr[-3000:]
    assert res == {"attempted": False, "patched": False, "auto": "TORCH_SDPA",
                   "stock": "AssertionError", "members": False}


FAULTS = {
    # fault name -> code run before load_general_plugins()
    "oot_registration_raises": """
import vit_backend_plugin.vllm_glue.registration as m
def boom(): raise RuntimeError("injected")
m.register_oot = boom
""",
    "glue_import_fails": """
import sys
sys.modules["vit_backend_plugin.vllm_glue.selector"] = None  # import raises ImportError
""",
    "unsupported_vllm_version": """
import vllm
vllm.__version__ = "0.31.0"
""",
    # the glue reads vLLM internals: only the minor the tests ran against is admitted
    "untested_newer_vllm": """
import vllm
vllm.__version__ = "0.33.0"
""",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_register_faults_leave_stock_vllm_and_one_warning(fault):
    proc, res = run_snippet(PRE + FAULTS[fault] + LOAD + BUILD + """
from vit_backend_plugin.plugin import status
from vllm.model_executor.custom_op import op_registry_oot
import vllm.platforms.cpu as cpu
layer = build(72)
q = torch.randn(1, 5, 144)
print("RESULT " + json.dumps({"status": status(), "oot": "MMEncoderAttention" in op_registry_oot,
      "patched": "get_vit_attn_backend" in cpu.CpuPlatform.__dict__,
      "cls": type(layer).__name__, "shape": list(layer(q, q, q).shape), "records": records,
      "fi_host": "FLASHINFER_HOST" in __import__("vllm.v1.attention.backends.registry",
                                                  fromlist=["x"]).AttentionBackendEnum.__members__}))
""")
    assert res is not None, proc.stderr[-3000:]
    # the decoder backend is independent of the ViT glue; an unsupported vLLM gets nothing
    assert res["fi_host"] == (fault not in ("unsupported_vllm_version", "untested_newer_vllm"))
    assert res["status"]["attempted"] and not res["status"]["installed"]
    assert not res["oot"] and not res["patched"]
    assert res["cls"] == "MMEncoderAttention" and res["shape"] == [1, 5, 144]
    warnings = [m for lvl, m in res["records"] if lvl == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("vit-backend-plugin disabled, stock vLLM")
    if "vllm" in fault:
        assert "is not supported (need >=0.32,<0.33)" in warnings[0]


def test_resolution_fault_falls_back_to_stock_with_one_warning():
    proc, res = run_snippet(PRE + LOAD + BUILD + """
import vit_backend_plugin.selection.resolver as r
def boom(*a, **k): raise KeyError("injected")
r.resolve = boom
import vit_backend_plugin.vllm_glue.selector as s
s.resolver = r
names = [build(h).attn_backend.name for h in (72, 80, 64)]
print("RESULT " + json.dumps({"names": names, "records": records}))
""")
    assert res is not None, proc.stderr[-3000:]
    assert res["names"] == ["TORCH_SDPA"] * 3  # stock CPU answer
    warnings = [m for lvl, m in res["records"] if lvl == "WARNING"]
    assert len(warnings) == 1 and "resolver failed (KeyError" in warnings[0]


def test_plugin_backend_dispatch_through_mm_encoder_attention():
    """The OOT layer hands a plugin backend (our Triton kernel, run by Triton's CPU interpreter)
    the varlen inputs vLLM's wrappers get, in both layouts, and returns vLLM's output layout."""
    proc, res = run_snippet(PRE + LOAD + BUILD + """
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
layer = build(72)
layer.attn_backend = E.VIT_TRITON
torch.manual_seed(0)
cu = torch.tensor([0, 7, 71, 72, 137], dtype=torch.int32)
q, k, v = (torch.randn(1, 137, 2, 72) for _ in range(3))
def ref():
    outs = [torch.nn.functional.scaled_dot_product_attention(
        *(x[:, a:b].transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())]
    return torch.cat(outs, dim=1)
r = ref()
err = lambda o: float((o.reshape(r.shape) - r).norm() / r.norm())
out4 = layer.forward_cuda(q, k, v, cu, torch.tensor(65))            # (b, s, h, d)
out3 = layer.forward_cuda(*(x.reshape(1, 137, 144) for x in (q, k, v)), cu, torch.tensor(0))
print("RESULT " + json.dumps({"shape4": list(out4.shape), "shape3": list(out3.shape),
      "err4": err(out4), "err3": err(out3)}))
""", env={"TRITON_INTERPRET": "1"})
    assert res is not None, proc.stderr[-3000:]
    assert res["shape4"] == [1, 137, 2, 72] and res["shape3"] == [1, 137, 144]
    assert res["err4"] < 1e-4 and res["err3"] < 1e-4  # max_seqlen=0: derived from cu_seqlens


def test_patched_selector_survives_a_new_vllm_call_signature():
    """A vLLM that calls get_vit_attn_backend with arguments we don't know gets its own stock
    answer (one warning), never a TypeError from our wrapper; known calls still resolve."""
    proc, res = run_snippet(PRE + LOAD + """
import torch
from vllm.platforms.cpu import CpuPlatform
from vllm.v1.attention.backends.registry import AttentionBackendEnum as E
from vit_backend_plugin.vllm_glue import selector
stock_calls = []
class NextCpuPlatform(CpuPlatform):  # a future vLLM: one more keyword, one more positional
    @classmethod
    def get_vit_attn_backend(cls, head_size, dtype, backend=None, layout=None, *, attn_type="enc"):
        stock_calls.append([layout, attn_type])
        return E.TORCH_SDPA
p = NextCpuPlatform()
selector.patch_platform(p)
out = {"kw": NextCpuPlatform.get_vit_attn_backend(80, torch.float32, attn_type="dec").name,
       "pos": NextCpuPlatform.get_vit_attn_backend(80, torch.float32, None, "bshd").name,
       "known": NextCpuPlatform.get_vit_attn_backend(head_size=80, dtype=torch.float32).name}
print("RESULT " + json.dumps({**out, "stock_calls": stock_calls,
      "warnings": [m for l, m in records if l == "WARNING"],
      "resolved": [m for l, m in records if m.startswith("ViT attention: TORCH_SDPA (head_size=80")]}))
""")
    assert res is not None, proc.stderr[-3000:]
    assert res["kw"] == res["pos"] == res["known"] == "TORCH_SDPA"
    assert res["stock_calls"] == [[None, "dec"], ["bshd", "enc"]]  # the known call went to ours
    assert len(res["resolved"]) == 1
    assert len(res["warnings"]) == 1 and "unexpected signature" in res["warnings"][0]


def test_selector_reads_the_architecture_of_the_model_being_built():
    """Engine runs of the model's own architecture outrank other runs of its head size
    (speed_table.engine_lookup); the selector takes the architecture from the vLLM config that
    is current while the model is built, as vLLM's ModelConfig resolved it."""
    from vllm.config import ModelConfig, VllmConfig, set_current_vllm_config

    from vit_backend_plugin.harness.demo_assets import ensure_demo_assets
    from vit_backend_plugin.vllm_glue import selector

    mc = ModelConfig(model=str(ensure_demo_assets().model_dir), dtype="float32", max_model_len=2048)
    assert selector.current_architecture() is None  # outside model building
    with set_current_vllm_config(VllmConfig(model_config=mc)):
        assert selector.current_architecture() == mc.architecture == "Qwen2VLForConditionalGeneration"
