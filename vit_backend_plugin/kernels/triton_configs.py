"""VIT_TRITON's launch configs: the table (kernels/configs.json, or the user-local one that
`vit-parity tune --kernel-configs` writes) and the rule lookup by head_dim, max_seqlen, dtype."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from vit_backend_plugin.common.paths import user_configs_path

if TYPE_CHECKING:
    import torch


@cache
def load_configs() -> dict:
    """The user-local table from `vit-parity tune --kernel-configs` ($VIT_TRITON_CONFIGS or
    ~/.cache/vit_backend_plugin/vit_triton_configs.json) if present, else kernels/configs.json."""
    path = user_configs_path()
    if path.is_file():
        with open(path) as f:
            return json.load(f)
    return json.loads(resources.files("vit_backend_plugin.kernels").joinpath("configs.json").read_text())


def pick_config(head_dim: int, max_seqlen: int, dtype: torch.dtype) -> dict:
    """First rule whose head_dim and max_seqlen ranges (inclusive) and dtype (if given) match."""
    return _pick_from(load_configs(), head_dim, max_seqlen, dtype)


def _pick_from(table: dict, head_dim: int, max_seqlen: int, dtype: torch.dtype) -> dict:
    dname = str(dtype).removeprefix("torch.")
    for rule in table["rules"]:
        lo, hi = rule.get("head_dim", [0, 1 << 30])
        slo, shi = rule.get("max_seqlen", [0, 1 << 62])
        if lo <= head_dim <= hi and slo <= max_seqlen <= shi and rule.get("dtype", dname) == dname:
            cfg = dict(table.get("defaults", {}))
            cfg.update(rule["config"])
            return cfg
    raise LookupError(f"no kernel config for head_dim={head_dim} max_seqlen={max_seqlen} {dname}")
