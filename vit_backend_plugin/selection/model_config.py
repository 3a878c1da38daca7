"""Read a vision tower's attention head size (and dtype) from a local HF config.json. Pure."""

from __future__ import annotations

import json
from pathlib import Path

# (hidden-size key, heads key) pairs, in the order HF vision configs use them:
# Qwen2-VL: embed_dim/num_heads; Qwen2.5-VL: hidden_size/num_heads;
# SigLIP/CLIP (LLaVA-OneVision), InternViT: hidden_size/num_attention_heads.
_PAIRS = (("embed_dim", "num_heads"), ("hidden_size", "num_heads"),
          ("hidden_size", "num_attention_heads"))


class ModelConfigError(ValueError):
    pass


def load_config(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelConfigError(f"no config.json at {p}") from None
    except (OSError, ValueError) as e:
        raise ModelConfigError(f"cannot read {p}: {e}") from None


def vision_head_size(cfg: dict) -> int:
    vc = cfg.get("vision_config")
    if not isinstance(vc, dict):
        raise ModelConfigError("config has no vision_config: not a vision-language model")
    if isinstance(vc.get("head_dim"), int) and vc["head_dim"] > 0:
        return vc["head_dim"]
    for hidden_key, heads_key in _PAIRS:
        hidden, heads = vc.get(hidden_key), vc.get(heads_key)
        if isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
            if hidden % heads:
                raise ModelConfigError(f"vision {hidden_key}={hidden} not divisible by {heads_key}={heads}")
            return hidden // heads
    raise ModelConfigError("vision_config has no hidden size / head count this tool knows")


def model_dtype(cfg: dict) -> str | None:
    for c in (cfg.get("vision_config") or {}, cfg, cfg.get("text_config") or {}):
        for key in ("torch_dtype", "dtype"):
            if isinstance(c.get(key), str):
                return c[key]
    return None
