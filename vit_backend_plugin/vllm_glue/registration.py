"""What the plugin registers with vLLM and torch, and how each registration is undone.

Every ``unregister_*`` removes only what its ``register_*`` added, may run after a partial
``register_*`` and is idempotent: ``plugin.py`` rolls a failed install back with them.
"""

from __future__ import annotations

import gc

import torch
from torch.library import Library
from vllm.model_executor.custom_op import op_registry_oot
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vllm.utils.torch_utils import direct_register_custom_op
from vllm.v1.attention.backends.registry import AttentionBackendEnum

from vit_backend_plugin.kernels.registry import PLUGIN_BACKENDS
from vit_backend_plugin.vllm_glue import mm_encoder

OP_NAME = "vit_plugin_attention"
_BACKEND_PATH = f"{mm_encoder.__name__}.{mm_encoder.PluginVitBackend.__qualname__}"
_ADDED_MEMBERS: list[str] = []  # enum members this process added (a name already there is not ours)
_OP_LIB: list[Library] = []  # our torch.library fragment: the op lives as long as this object


def register_enum_members() -> None:
    """The plugin's backends as AttentionBackendEnum members: vLLM's config accepts them by name."""
    for name in PLUGIN_BACKENDS:
        if name not in AttentionBackendEnum.__members__:
            AttentionBackendEnum.register(name, _BACKEND_PATH)
            _ADDED_MEMBERS.append(name)


def unregister_enum_members() -> None:
    """vLLM has no unregister: undo what ``AttentionBackendEnum.register`` did, for our names."""
    enum = AttentionBackendEnum
    left = []
    for name in list(_ADDED_MEMBERS):
        member = enum._member_map_.pop(name, None)  # first: Enum refuses to delete a member
        if name in enum._member_names_:
            enum._member_names_.remove(name)
        if member is not None and enum._value2member_map_.get(member.value) is member:
            del enum._value2member_map_[member.value]
        if name in vars(enum):
            delattr(enum, name)
        if name in enum.__members__ or name in vars(enum):
            left.append(name)
        else:
            _ADDED_MEMBERS.remove(name)
    # The members share one value: the map may still name one removed before the last.
    for value, member in list(enum._value2member_map_.items()):
        if value == _BACKEND_PATH and member.name not in enum.__members__:
            del enum._value2member_map_[value]
    if left:
        raise RuntimeError(f"AttentionBackendEnum still has {', '.join(left)}")


def register_custom_op() -> None:
    """torch.ops.vllm.vit_plugin_attention, in a Library fragment of our own so that it can go."""
    if _OP_LIB or hasattr(torch.ops.vllm, OP_NAME):
        return
    lib = Library("vllm", "FRAGMENT")
    _OP_LIB.append(lib)  # before defining: a half-registered op goes with the library too
    direct_register_custom_op(
        op_name=OP_NAME,
        op_func=mm_encoder._vit_plugin_attention,
        fake_impl=mm_encoder._vit_plugin_attention_fake,
        target_lib=lib,
    )


def unregister_custom_op() -> None:
    """Dropping the last reference to our Library removes its definitions (torch.library's
    finaliser), and torch.ops' cached entry with them. An op defined by someone else stays."""
    if not _OP_LIB:
        return
    _OP_LIB.clear()
    if hasattr(torch.ops.vllm, OP_NAME):
        gc.collect()  # something (a traceback, say) held the library a moment longer
    if hasattr(torch.ops.vllm, OP_NAME):
        raise RuntimeError(f"torch.ops.vllm.{OP_NAME} is still registered")


def register_oot() -> None:
    """vLLM's out-of-tree hook: every MMEncoderAttention(...) a model builds is ours."""
    if op_registry_oot.get("MMEncoderAttention") is mm_encoder.PluginMMEncoderAttention:
        return
    if "MMEncoderAttention" in op_registry_oot:
        raise RuntimeError(
            f"another plugin already replaced MMEncoderAttention with "
            f"{op_registry_oot['MMEncoderAttention'].__qualname__}"
        )
    MMEncoderAttention.register_oot(mm_encoder.PluginMMEncoderAttention)


def unregister_oot() -> None:
    if op_registry_oot.get("MMEncoderAttention") is mm_encoder.PluginMMEncoderAttention:
        del op_registry_oot["MMEncoderAttention"]
