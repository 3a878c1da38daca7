"""``register()``: what vLLM runs in every process via the ``vllm.general_plugins`` entry point.

Idempotent and cheap. Never takes vLLM down: an unsupported vLLM, an import error or any
exception here rolls back what was installed, leaves stock vLLM in place and logs ONE warning.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("vllm.vit_backend_plugin")

# Only the vLLM minor the glue was tested against (its internals move between minors).
SUPPORTED_VLLM = ">=0.32,<0.33"

_state = {"attempted": False, "installed": False, "error": None}


class UnsupportedVllmError(RuntimeError):
    pass


def _check_vllm_version() -> None:
    import vllm
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    version = Version(vllm.__version__)
    # Compare the release only: dev/rc builds of a supported minor count as supported.
    if Version(version.base_version) not in SpecifierSet(SUPPORTED_VLLM):
        raise UnsupportedVllmError(f"vLLM {vllm.__version__} is not supported (need {SUPPORTED_VLLM})")


def _install() -> None:
    from vllm.platforms import current_platform

    from vit_backend_plugin.vllm_glue import mm_encoder, selector

    mm_encoder.register_enum_members()
    mm_encoder.register_custom_op()
    mm_encoder.register_oot()
    mm_encoder.patch_compute_max_seqlen()
    selector.patch_platform(current_platform)


def _rollback() -> None:
    try:
        from vllm.platforms import current_platform

        from vit_backend_plugin.vllm_glue import mm_encoder, selector

        selector.unpatch_platform(current_platform)
        mm_encoder.unpatch_compute_max_seqlen()
        mm_encoder.unregister_oot()
    except Exception:  # nothing more we can undo; stock vLLM keeps what it has
        pass


def _register_flashinfer_host() -> None:
    """The FlashInfer host-buffer decoder backend: independent of the ViT part."""
    try:
        from vit_backend_plugin import flashinfer_host
    except ImportError:
        return
    try:
        flashinfer_host.register()
    except Exception as e:
        logger.warning(
            "vit-backend-plugin: FLASHINFER_HOST backend not registered (%s: %s); "
            "stock FlashInfer unaffected", type(e).__name__, e,
        )


def register() -> None:
    if _state["attempted"]:
        return
    _state["attempted"] = True
    try:
        _check_vllm_version()
        _install()
        _state["installed"] = True
    except Exception as e:
        _rollback()
        _state["error"] = f"{type(e).__name__}: {e}"
        logger.warning(
            "vit-backend-plugin disabled, stock vLLM ViT attention selection in use (%s)",
            _state["error"],
        )
        if isinstance(e, UnsupportedVllmError):
            return  # an unsupported vLLM gets nothing from us
    # Independent of the ViT part: a ViT glue failure must not take this backend with it.
    _register_flashinfer_host()


def status() -> dict:
    return dict(_state)
