"""FlashInfer host-buffer metadata builder, registered as vLLM attention backend
``FLASHINFER_HOST`` (select with ``--attention-backend FLASHINFER_HOST``).

Importing this package imports neither vLLM nor flashinfer; :func:`register` imports
vLLM's registry only.
"""

from __future__ import annotations

import copyreg

NAME = "FLASHINFER_HOST"
CLASS_PATH = "vit_backend_plugin.flashinfer_host.backend.FlashInferHostBackend"


def register() -> bool:
    """Register ``FLASHINFER_HOST`` with vLLM's attention-backend registry.

    Idempotent: a second call (vLLM runs general plugins in every process, sometimes more
    than once) changes nothing. Returns True if this call created the enum member.
    """
    from vllm.v1.attention.backends.registry import (
        _ATTN_OVERRIDES,
        AttentionBackendEnum,
        register_backend,
    )

    copyreg.pickle(AttentionBackendEnum, _reduce_member)  # idempotent: one entry per class
    member = AttentionBackendEnum.__members__.get(NAME)
    if member is not None:
        if _ATTN_OVERRIDES.get(member, member.value) != CLASS_PATH:
            register_backend(member, CLASS_PATH)
        return False
    register_backend(NAME, CLASS_PATH)
    return True


def _reduce_member(member):
    """Pickle FLASHINFER_HOST by name, through :func:`_member`. The enum's own reduction stores the
    member's value and looks it up when unpickled, which fails in a process the plugin has not
    registered in yet: a spawned engine core unpickles its config (attention backend included)
    before it loads vLLM's plugins. Every other member pickles as before."""
    if member.name == NAME:
        return _member, (NAME,)
    return member.__reduce_ex__(2)


def _member(name: str):
    """Unpickler of :func:`_reduce_member`: registers the backend here first, then returns it."""
    register()
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    return AttentionBackendEnum[name]
