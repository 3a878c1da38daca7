"""What this machine (or this process) can actually run: the resolver's `features` input.

Two probes:
- :func:`installed_features` only looks for packages (``importlib.util.find_spec``), imports no
  torch/CUDA; `vit-parity explain` uses it to plan.
- :func:`runtime_features` imports each kernel for real and asks torch about the device; the
  plugin uses it inside vLLM processes, where a package that is installed but fails to import
  (ABI mismatch, missing CUDA libs) must count as absent.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

# Our Triton kernel's module (the package itself exports nothing: it imports no kernel).
KERNEL_MODULE = "vit_backend_plugin.kernels.triton_vit"


def _has_spec(name: str) -> bool:
    """Whether ``name`` is installed, importing nothing: find_spec of a submodule imports its
    parent package (``vllm.vllm_flash_attn`` would import all of vLLM and torch), so a
    submodule is looked for on disk beside its top-level package's spec instead."""
    top, _, rest = name.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None or not rest:
        return spec is not None
    for root in spec.submodule_search_locations or ():
        base = Path(root).joinpath(*rest.split("."))
        if base.is_dir() or base.with_suffix(".py").is_file() or any(base.parent.glob(base.name + ".*.so")):
            return True
    return False


def _imports(module: str, attr: str | None = None) -> bool:
    try:
        mod = importlib.import_module(module)
        return attr is None or hasattr(mod, attr)
    except Exception:  # any failure to import means: not usable here
        return False


def installed_features() -> frozenset[str]:
    """Packages present on this machine. GPU-only torch features are assumed to come with torch
    (true of CUDA builds): this is for planning, not for running."""
    feats = set()
    if _has_spec("vllm.vllm_flash_attn"):
        feats.add("vllm_flash_attn")
    for pkg in ("flash_attn", "xformers", "flashinfer", "triton", "aiter"):
        if _has_spec(pkg):
            feats.add(pkg)
    if _has_spec(KERNEL_MODULE):
        feats.add("vit_triton_kernel")
    if _has_spec("torch"):
        feats.update({"torch_cudnn_sdpa", "torch_flash_sdpa"})
    return frozenset(feats)


@functools.cache
def runtime_features(platform: str) -> frozenset[str]:
    """Kernels that really import here, and torch SDPA sub-backends this device offers."""
    feats = set()
    if platform in ("cuda", "rocm"):
        if _imports("vllm.vllm_flash_attn", "flash_attn_varlen_func"):
            feats.add("vllm_flash_attn")
            try:
                from vllm.v1.attention.backends.fa_utils import is_fa_version_supported

                if is_fa_version_supported(4):
                    feats.add("vllm_fa4")
            except Exception:
                pass
        if _imports("flash_attn", "flash_attn_varlen_func"):
            feats.add("flash_attn")
        if _imports("xformers.ops"):
            feats.add("xformers")
        if _has_spec("flashinfer") and _imports("flashinfer"):
            feats.add("flashinfer")
        if _imports("triton"):
            feats.add("triton")
            if _imports(KERNEL_MODULE, "vit_attention"):
                feats.add("vit_triton_kernel")
        if _has_spec("aiter") and _imports("aiter"):
            feats.add("aiter")
        try:
            import torch

            if torch.cuda.is_available():
                # Not cudnn_sdp_enabled(): vLLM turns cuDNN SDPA off globally at import, and
                # TORCH_SDPA_CUDNN / VIT_AUTO force it on for their own calls only.
                if torch.backends.cudnn.is_available():
                    feats.add("torch_cudnn_sdpa")
                if torch.backends.cuda.flash_sdp_enabled():
                    feats.add("torch_flash_sdpa")
        except Exception:
            pass
    if platform == "cpu" and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        # Triton's interpreter runs our kernel on CPU tensors (an explicit choice only: slow).
        if _imports("triton") and _imports(KERNEL_MODULE, "vit_attention"):
            feats.update({"triton_interpreter", "vit_triton_kernel"})
    logger.debug("vit-backend-plugin runtime features (%s): %s", platform, sorted(feats))
    return frozenset(feats)
