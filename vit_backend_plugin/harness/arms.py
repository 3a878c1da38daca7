"""Arms: each setting under test, resolved once from the config into what its children run with.

An arm (``arms:`` in a config, or one per backend of the ``backends:`` shorthand) names a ViT
backend (default ``AUTO``), engine arguments deep-merged over the config's ``engine_args``, an
environment merged over the config's ``env`` and, optionally, another interpreter. Resolution is
pure (no processes, no filesystem): :func:`resolve_arms` gives one :class:`Arm` per arm, the
single object both phases' commands are built from (:mod:`.commands`) and whose
:meth:`Arm.settings` a rerun compares with what the arm ran with (:func:`settings_changes`).
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from vit_backend_plugin.harness.config import (
    AUTO_BACKEND,
    BACKEND_ENV,
    ArmConfig,
    Config,
    ConfigError,
    backend_route,
)

# What a rerun compares per arm: the settings, and the versions and GPU model that ran it.
COMPARED = ("backend", "engine_args", "env", "python", "versions", "gpu")
# Versions whose change means the arm ran on other software (recorded are more; see env_capture).
COMPARED_VERSIONS = ("python", "torch", "vllm", "lm_eval", "transformers", "vit-backend-plugin")


@dataclass(frozen=True)
class Arm:
    name: str  # also its directory under the run dir
    backend: str
    route: str  # engine_arg | env | auto (vllm); attn_implementation[+plugin] (hf)
    engine_args: dict[str, Any]  # effective: the config's, deep-merged with the arm's
    env: dict[str, str]  # effective overrides for the children, VIT_ATTN_BACKEND included
    python: str  # the interpreter of both phases' children
    model_args: dict[str, Any] = field(default_factory=dict)  # lm-eval --model_args
    label: str = ""  # the backend and what the arm itself sets, for people (print_plan, tables)

    def settings(self) -> dict[str, Any]:
        """What the arm runs with, as run.json's ``arm_settings`` and settings.json record it."""
        return {"backend": self.backend, "engine_args": self.engine_args, "env": self.env,
                "python": self.python}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; nested dicts (compilation_config, mm_processor_kwargs, ...)
    merge key by key; a ``None`` value removes the key (an arm dropping a config-wide setting)."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _model_args(cfg: Config, backend: str, route: str, engine_args: dict[str, Any]) -> dict[str, Any]:
    """lm-eval ``--model_args``: pretrained first, then the backend, then the extras."""
    args: dict[str, Any] = {"pretrained": cfg.model}
    if cfg.engine == "vllm":
        if route == "engine_arg":
            args["mm_encoder_attn_backend"] = backend
    else:
        args["attn_implementation"] = backend
    if cfg.max_images_per_prompt is not None:
        args["max_images"] = cfg.max_images_per_prompt
    if cfg.trust_remote_code:
        args["trust_remote_code"] = True
    args.update(engine_args)
    return args


def resolve_arm(cfg: Config, name: str) -> Arm:
    """One arm of ``cfg`` (``cfg.model`` as the children get it: demo:// resolved by then)."""
    spec = next((a for a in cfg.arm_configs() if a.name == name), None)
    if spec is None:
        raise ConfigError(f"no arm named {name!r}; the config's arms: {', '.join(cfg.arm_names())}")
    return _resolve(cfg, spec)


def resolve_backend(cfg: Config, backend: str) -> Arm:
    """An arm of just this backend and the config's own settings (for scripts that name a
    backend rather than an arm of the config)."""
    return _resolve(cfg, ArmConfig(name=backend, backend=backend))


def _resolve(cfg: Config, spec: ArmConfig) -> Arm:
    name, backend = spec.name, spec.backend
    if backend is None:
        if cfg.engine != "vllm":
            raise ConfigError(f"arm {name!r}: engine hf needs a backend (attn_implementation)")
        backend = AUTO_BACKEND
    try:
        route = backend_route(cfg.engine, backend)
    except KeyError:
        raise ConfigError(f"arm {name!r}: unknown backend {backend!r} for engine {cfg.engine}") from None
    engine_args = deep_merge(copy.deepcopy(cfg.engine_args), spec.engine_args)  # arms share nothing
    env = {**cfg.env, **spec.env}
    if cfg.engine == "vllm" and route == "env":
        env[BACKEND_ENV] = backend
    python = os.path.abspath(os.path.expanduser(spec.python)) if spec.python else sys.executable
    own = [f"{k}={v!r}" for k, v in _flat(spec.engine_args)] + [f"env {k}={v}" for k, v in spec.env.items()]
    label = "; ".join([backend, *own] + ([f"python {python}"] if spec.python else []))
    return Arm(name=name, backend=backend, route=route, engine_args=engine_args, env=env,
               python=python, model_args=_model_args(cfg, backend, route, engine_args), label=label)


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def resolve_arms(cfg: Config) -> list[Arm]:
    """Every arm, baseline first."""
    return [resolve_arm(cfg, n) for n in cfg.ordered_arm_names()]


# --------------------------------------------------------------------------- reruns
def arm_record(arm: Arm, probe: dict[str, Any], gpus: list[dict[str, str]] | None) -> dict[str, Any]:
    """settings.json: the arm's settings, and the versions (read by its own interpreter: see
    env_capture) and GPUs that ran it."""
    return {
        "arm": arm.name, **arm.settings(), "route": arm.route, "model_args": arm.model_args,
        "versions": {"python": probe.get("python"), **(probe.get("versions") or {})},
        "plugin_from": (probe.get("modules") or {}).get("vit_backend_plugin"),
        "gpu": gpus,
    }


def _changes(before: Any, now: Any, path: str) -> list[str]:
    if isinstance(before, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(before) | set(now), key=str):
            out += _changes(before.get(k), now.get(k), f"{path}.{k}")
        return out
    if before == now:
        return []

    def short(x: Any) -> str:
        text = "unset" if x is None else repr(x)
        return text if len(text) <= 40 else text[:37] + "..."

    return [f"{path} {short(before)} -> {short(now)}"]


def settings_changes(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between an arm's recorded settings (settings.json) and its settings now, as
    ``key old -> new`` items. Keys the record lacks (older run dirs) are not compared; of the
    versions only :data:`COMPARED_VERSIONS`."""
    out: list[str] = []
    for key in COMPARED:
        if key not in recorded or key not in now:
            continue
        before, after = recorded[key], now[key]
        if key == "versions" and isinstance(before, dict) and isinstance(after, dict):
            before = {k: before.get(k) for k in COMPARED_VERSIONS}
            after = {k: after.get(k) for k in COMPARED_VERSIONS}
        if key == "gpu":  # the GPU model counts; a driver update alone does not
            before, after = _gpu_names(before), _gpu_names(after)
        out += _changes(before, after, key)
    return out


def _gpu_names(gpus: Any) -> str | None:
    if not isinstance(gpus, list):
        return None
    return ", ".join(str(g.get("name")) for g in gpus if isinstance(g, dict)) or None
