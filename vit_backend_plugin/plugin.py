"""``register()``: what vLLM runs in every process via the ``vllm.general_plugins`` entry point.

Idempotent and cheap. Never takes vLLM down: an unsupported vLLM, an import error or any
exception here rolls back every step installed so far (each undo runs even if another fails),
leaves stock vLLM in place and logs ONE warning.
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


def _install(undo: list) -> None:
    """The ViT glue, step by step; each step's undo goes on ``undo`` before the step runs, so a
    step that fails halfway is undone too (every undo only removes what its step added)."""
    from vllm.platforms import current_platform

    from vit_backend_plugin.vllm_glue import registration, selector

    steps = (
        ("backend enum members", registration.register_enum_members,
         registration.unregister_enum_members),
        ("custom op", registration.register_custom_op, registration.unregister_custom_op),
        ("MMEncoderAttention OOT class", registration.register_oot, registration.unregister_oot),
        ("platform ViT selection", lambda: selector.patch_platform(current_platform),
         lambda: selector.unpatch_platform(current_platform)),
    )
    for name, do, undo_step in steps:
        undo.append((name, undo_step))
        do()


def _rollback(undo: list) -> list[str]:
    """Undo in reverse order; every undo runs whatever the others do. Returns what failed."""
    failed = []
    for name, undo_step in reversed(undo):
        try:
            undo_step()
        except Exception as e:  # noqa: BLE001 - reported in the one warning, the rest still runs
            failed.append(f"{name}: {type(e).__name__}: {e}")
    undo.clear()
    return failed


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
    undo: list = []
    try:
        _check_vllm_version()
        _install(undo)
        _state["installed"] = True
    except Exception as e:
        failed = _rollback(undo)
        _state["error"] = f"{type(e).__name__}: {e}"
        if failed:
            _state["error"] += "; rollback incomplete: " + "; ".join(failed)
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
