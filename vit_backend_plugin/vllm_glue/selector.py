"""Make the current vLLM platform's ``get_vit_attn_backend`` answer with our resolver.

Every model reaches ViT backend selection through ``vision.get_vit_attn_backend`` ->
``current_platform.get_vit_attn_backend``, so patching the platform class covers
MMEncoderAttention and the models that ask directly (Qwen2/2.5/3-VL, GLM-4.1V, ...). The one
vLLM method the plugin patches: vLLM 0.32 has no hook for this choice short of replacing the whole
platform (a platform plugin); ``unpatch_platform`` restores it.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import os

from vit_backend_plugin.selection import resolver, speed_table
from vit_backend_plugin.selection.catalog import load_catalog, normalize_dtype
from vit_backend_plugin.selection.probe import runtime_features

logger = logging.getLogger("vllm.vit_backend_plugin")

ENV_VAR = "VIT_ATTN_BACKEND"
_ORIGINAL: dict[str, object] = {}  # platform class qualname -> original attribute (or None)
_LOGGED: set[tuple] = set()
# Set while a stock layer is built for a run-time fallback: the patched selection answers as vLLM.
_STOCK_ONLY = contextvars.ContextVar("vit_backend_plugin_stock_only", default=False)
_WARNED: set[str] = set()


def platform_kind(platform) -> str:
    if platform.is_cuda():
        return "cuda"
    if platform.is_rocm():
        return "rocm"
    if platform.is_cpu():
        return "cpu"
    return "other"


def explicit_source(backend) -> str:
    """Where an explicit ViT backend choice comes from ("" when the choice is automatic)."""
    if backend is not None:
        return "mm_encoder_attn_backend"
    return ENV_VAR if os.environ.get(ENV_VAR) else ""


def current_architecture() -> str | None:
    """The model class vLLM resolved for the model being built (None outside model building)."""
    try:
        from vllm.config import get_current_vllm_config_or_none

        cfg = get_current_vllm_config_or_none()
        return cfg.model_config.architecture if cfg is not None and cfg.model_config is not None else None
    except Exception:  # noqa: BLE001 - a vLLM without these names: every run of the head size counts
        return None


def build_request(platform, head_size: int, dtype, backend) -> resolver.ResolveRequest:
    kind = platform_kind(platform)
    cap = platform.get_device_capability() if kind in ("cuda", "rocm") else None
    capability = (cap.major, cap.minor) if cap is not None else None
    dtype_name = normalize_dtype(dtype)
    source = explicit_source(backend)
    explicit = backend.name if backend is not None else (os.environ[ENV_VAR] if source else None)
    measured, measured_source, engine = ({}, "", {})
    if explicit is None and kind == "cuda":
        measured, measured_source = speed_table.lookup(capability, dtype_name, head_size)
        engine = speed_table.engine_lookup(capability, dtype_name, head_size,
                                           architecture=current_architecture())
    return resolver.ResolveRequest(
        head_size=head_size, dtype=dtype_name, platform=kind, capability=capability,
        features=runtime_features(kind), explicit=explicit, explicit_source=source,
        measured=measured, measured_source=measured_source, engine_measured=engine,
    )


def resolve_for_vllm(platform, head_size: int, dtype, backend=None):
    """The AttentionBackendEnum member our resolver picks. Raises BackendSelectionError /
    ResolverInputError for a bad explicit choice (user error, shown as is)."""
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    req = build_request(platform, head_size, dtype, backend)
    res = resolver.resolve(req, load_catalog())
    key = (res.chosen, req.head_size, req.dtype)
    if key not in _LOGGED:
        _LOGGED.add(key)
        logger.info("%s", res.log_line(req.head_size, req.dtype))
    return AttentionBackendEnum[res.chosen]


def _expected_signature(head_size, dtype, backend=None):
    """The call shape of vLLM 0.32's Platform.get_vit_attn_backend (minus cls)."""


_EXPECTED = inspect.signature(_expected_signature)


def _warn_once(key: str, msg: str, *args) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(msg, *args)


def patch_platform(platform) -> None:
    cls = type(platform)
    key = f"{cls.__module__}.{cls.__qualname__}"
    if key in _ORIGINAL:
        return
    _ORIGINAL[key] = cls.__dict__.get("get_vit_attn_backend")
    stock = cls.get_vit_attn_backend  # bound classmethod, whatever class defines it

    def get_vit_attn_backend(klass, *args, **kwargs):
        if _STOCK_ONLY.get():
            return stock(*args, **kwargs)
        # Any call shape: a vLLM that passes something new gets its own selection, not a TypeError.
        try:
            bound = _EXPECTED.bind(*args, **kwargs)
        except TypeError as e:
            _warn_once("signature", "vit-backend-plugin: get_vit_attn_backend called with an "
                       "unexpected signature (%s); using stock vLLM ViT backend selection", e)
            return stock(*args, **kwargs)
        try:
            return resolve_for_vllm(platform, **bound.arguments)
        except (resolver.BackendSelectionError, resolver.ResolverInputError):
            raise  # the user's explicit choice cannot run: say so clearly, don't second-guess
        except Exception as e:  # our bug must not take vLLM down
            _warn_once("resolve", "vit-backend-plugin: resolver failed (%s: %s); using stock vLLM "
                       "ViT backend selection", type(e).__name__, e)
            return stock(*args, **kwargs)

    get_vit_attn_backend.__vit_backend_plugin__ = True
    cls.get_vit_attn_backend = classmethod(get_vit_attn_backend)


def unpatch_platform(platform) -> None:
    cls = type(platform)
    key = f"{cls.__module__}.{cls.__qualname__}"
    if key not in _ORIGINAL:
        return
    orig = _ORIGINAL.pop(key)
    if orig is None:
        delattr(cls, "get_vit_attn_backend")
    else:
        cls.get_vit_attn_backend = orig


def is_patched(platform) -> bool:
    fn = getattr(type(platform).get_vit_attn_backend, "__func__", None)
    return bool(getattr(fn, "__vit_backend_plugin__", False))


@contextlib.contextmanager
def stock_selection():
    """Inside, every ViT backend selection is stock vLLM's own (what a model asks included)."""
    token = _STOCK_ONLY.set(True)
    try:
        yield
    finally:
        _STOCK_ONLY.reset(token)
