"""What a throughput child saw, recorded in throughput.json: the arm's environment variables as
the process has them, and the engine's configuration as vLLM parsed it (not the command that
was built: the proof that an arm's settings reached the engine)."""

from __future__ import annotations

import os
from typing import Any


def arm_env(spec: dict[str, Any]) -> dict[str, str | None]:
    """The arm's environment variables as this process sees them (None: not set)."""
    return {k: os.environ.get(k) for k in spec.get("env_keys", [])}


def _plain(x: Any) -> Any:
    """JSON-able: enums by name, dtypes and other objects as text."""
    import enum

    if x is None or isinstance(x, bool | int | float | str):
        return x
    if isinstance(x, enum.Enum):
        return x.name
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset):
        return [_plain(v) for v in x]
    return str(x)


# Always recorded, whatever the arm sets: what decides how the encoder runs.
_ENGINE_FIELDS = {
    "model_config": ("dtype", "enforce_eager", "max_model_len"),
    "multimodal_config": ("mm_encoder_attn_backend", "mm_encoder_attn_dtype", "mm_processor_kwargs"),
    "compilation_config": ("mode", "cudagraph_mode", "compile_mm_encoder", "cudagraph_mm_encoder"),
}


def engine_config(vllm_config, engine_args: dict[str, Any]) -> dict[str, Any]:
    """The engine's configuration as vLLM parsed it: the fields that decide how the encoder runs,
    and each engine argument the arm passed, read back from the sub-config that holds it
    (``compilation_config: {cudagraph_mm_encoder: true}`` -> the parsed value of that field)."""
    mc = vllm_config.model_config
    holders = {"model_config": mc, "multimodal_config": mc.multimodal_config,
               "compilation_config": vllm_config.compilation_config}
    out: dict[str, Any] = {
        name: {f: _plain(getattr(holders[name], f, None)) for f in fields}
        for name, fields in _ENGINE_FIELDS.items() if holders[name] is not None
    }
    searched = [mc, mc.multimodal_config, vllm_config.cache_config, vllm_config.scheduler_config,
                vllm_config.parallel_config, vllm_config.load_config, vllm_config]
    parsed: dict[str, Any] = {}
    for key, asked in engine_args.items():
        holder = next((h for h in searched if h is not None and hasattr(h, key)), None)
        if holder is None:
            parsed[key] = "(not a field of vLLM's config)"
            continue
        value = getattr(holder, key)
        if isinstance(asked, dict) and not isinstance(value, dict):  # a sub-config: its fields asked for
            value = {k: getattr(value, k, "(no such field)") for k in asked}
        parsed[key] = _plain(value)
    out["engine_args_parsed"] = parsed
    return out
