"""FlashInfer host-buffer metadata builder, registered as vLLM attention backend
``FLASHINFER_HOST`` (select with ``--attention-backend FLASHINFER_HOST``).

Importing this package imports neither vLLM nor flashinfer; :func:`register` imports
vLLM's registry only.
"""

from __future__ import annotations

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

    member = AttentionBackendEnum.__members__.get(NAME)
    if member is not None:
        if _ATTN_OVERRIDES.get(member, member.value) != CLASS_PATH:
            register_backend(member, CLASS_PATH)
        return False
    register_backend(NAME, CLASS_PATH)
    return True
