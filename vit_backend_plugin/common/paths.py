"""The one rule for where the plugin keeps user-local files (no benchmark/CLI imports: the kernels
and the resolver use this at run time).

Everything lives under ``$XDG_CACHE_HOME/vit_backend_plugin`` (``~/.cache/vit_backend_plugin``
when XDG_CACHE_HOME is unset). Each file has its own override variable, for a user who keeps one
elsewhere: ``VIT_PARITY_CACHE`` (the harness's demo assets and lm-eval task index; it replaces the
root), ``VIT_SPEED_TABLE`` and ``VIT_TRITON_CONFIGS`` (one file each).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "vit_backend_plugin"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/vit_backend_plugin``; an empty or relative XDG_CACHE_HOME is ignored, as
    the XDG base-directory spec says."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / APP


def harness_cache_root() -> Path:
    """Demo model and data, lm-eval's task index: ``$VIT_PARITY_CACHE`` or :func:`cache_root`."""
    env = os.environ.get("VIT_PARITY_CACHE")
    return Path(env).expanduser() if env else cache_root()


def user_speed_table_path() -> Path:
    """The speed table `vit-parity tune` / `record-engine` write; it outranks the shipped one."""
    env = os.environ.get("VIT_SPEED_TABLE")
    return Path(env).expanduser() if env else cache_root() / "speed_table.json"


def user_configs_path() -> Path:
    """VIT_TRITON launch configs written by `vit-parity tune --kernel-configs`."""
    env = os.environ.get("VIT_TRITON_CONFIGS")
    return Path(env).expanduser() if env else cache_root() / "vit_triton_configs.json"
