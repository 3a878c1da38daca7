"""User-local file locations read at run time (no benchmark/CLI imports: the kernels use this)."""

from __future__ import annotations

import os
from pathlib import Path


def user_configs_path() -> Path:
    """VIT_TRITON launch configs written by `vit-parity tune --kernel-configs`."""
    env = os.environ.get("VIT_TRITON_CONFIGS")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vit_backend_plugin" / "vit_triton_configs.json"
