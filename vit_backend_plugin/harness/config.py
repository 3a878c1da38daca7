"""`vit-parity run` configs: one YAML file, validated completely before anything runs.

Every problem becomes a :class:`ConfigError` with a one-line message (the CLI prints it and
exits non-zero, no traceback): an unknown key, an unknown backend for the engine, an unknown
lm-eval task, a local model path that does not exist, an inconsistent setting. The schema and
loading are here; the checks against the installed software and the filesystem are in
:mod:`vit_backend_plugin.harness.config_checks`.

A config compares **arms**: each arm is one setting under test (a ViT backend, engine arguments,
environment, an interpreter); ``backends: [A, B]`` is shorthand for arms named after the
backends. Arm resolution (merging an arm over the config) is :mod:`vit_backend_plugin.harness.arms`.

Backend names come from data, not from lists here:

* engine ``vllm``: the backend catalog (``vit_backend_plugin/data/vit_backends.yaml`` via
  :mod:`vit_backend_plugin.selection.catalog`). ``provider: vllm`` backends are passed to vLLM as the
  engine argument ``mm_encoder_attn_backend``; ``provider: plugin`` backends through the
  environment variable ``VIT_ATTN_BACKEND`` (the plugin's own dispatch).
* engine ``hf``: ``eager`` plus every attention implementation registered with transformers'
  ``AttentionInterface`` (``sdpa``, ``flash_attention_2``, ...), plus this plugin's varlen kernels
  under lower-case names (``vit_triton``, ...) which the child process registers with that
  interface (:mod:`vit_backend_plugin.harness.hf_attention`; CUDA only).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vit_backend_plugin.rundir.layout import AA_CONTROL

DEMO_SCHEME = "demo://"  # `model: demo://...` / `include_path: demo://...`: the embedded demo assets
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ConfigError(ValueError):
    """A one-line, user-facing configuration problem."""


# --------------------------------------------------------------------------- backend names
AUTO_BACKEND = "AUTO"  # engine vllm: the automatic choice (no mm_encoder_attn_backend, no VIT_ATTN_BACKEND)


def vllm_backends() -> dict[str, str]:
    """name -> 'engine_arg' (vLLM's mm_encoder_attn_backend), 'env' (VIT_ATTN_BACKEND) or
    'auto' (nothing set: whatever vLLM, with the plugin's resolver, picks)."""
    from vit_backend_plugin.selection.catalog import load_catalog

    routes = {
        name: ("engine_arg" if spec.provider == "vllm" else "env")
        for name, spec in load_catalog().backends.items()
    }
    routes[AUTO_BACKEND] = "auto"
    return routes


def hf_plugin_backends() -> dict[str, str]:
    """lower-case transformers attn_implementation name -> plugin kernel name."""
    from vit_backend_plugin.harness.hf_attention import hf_plugin_backends as names

    return names()


def hf_backends() -> list[str]:
    """Valid ``attn_implementation`` values for the hf engine."""
    names = ["eager"]
    try:
        from transformers import AttentionInterface

        names += [n for n in AttentionInterface._global_mapping if n not in names]
    except Exception:  # transformers missing or changed: fall back to the always-present one
        names.append("sdpa")
    names += [n for n in hf_plugin_backends() if n not in names]
    return names


def backend_route(engine: str, backend: str) -> str:
    """How a backend reaches the engine: 'engine_arg', 'env' (vllm) or 'attn_implementation' /
    'attn_implementation+plugin' (hf)."""
    if engine == "vllm":
        return vllm_backends()[backend]
    return "attn_implementation+plugin" if backend in hf_plugin_backends() else "attn_implementation"


# --------------------------------------------------------------------------- shared rules
ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # an arm's name is its directory's name
ARM_NAME_MAX = 64
# Set by the harness per arm (from the arm's backend), never by engine_args.
RESERVED_ENGINE_ARGS = ("pretrained", "mm_encoder_attn_backend", "attn_implementation")
BACKEND_ENV = "VIT_ATTN_BACKEND"  # the plugin's backends reach vLLM through it: set per arm


def _check_arm_name(name: str) -> str:
    if len(name) > ARM_NAME_MAX or not ARM_NAME.match(name):
        raise ValueError(f"arm name {name!r} cannot be a directory name (letters, digits, '.', "
                         f"'_', '-', starting with a letter or digit, at most {ARM_NAME_MAX})")
    return name


def _check_engine_args(args: dict[str, Any]) -> dict[str, Any]:
    clash = [k for k in RESERVED_ENGINE_ARGS if k in args]
    if clash:
        raise ValueError(f"engine_args may not set {', '.join(clash)} (the harness sets it per "
                         "arm from its backend)")
    return args


def _check_env(env: dict[str, str]) -> dict[str, str]:
    if BACKEND_ENV in env:
        raise ValueError(f"{BACKEND_ENV} is set per backend by the harness; list the backend instead")
    return env


# --------------------------------------------------------------------------- models
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class _EngineSettings(_Strict):
    """The rules of ``engine_args`` and ``env``, one place for the config and each arm."""

    @field_validator("engine_args", check_fields=False)
    @classmethod
    def _engine_args(cls, v):
        return _check_engine_args(v)

    @field_validator("env", check_fields=False)
    @classmethod
    def _env(cls, v):
        return _check_env(v)


class ArmConfig(_EngineSettings):
    """One arm as written: only what differs from the config's own settings."""

    name: str
    backend: str | None = None  # default: AUTO (engine vllm: the automatic choice)
    engine_args: dict[str, Any] = Field(default_factory=dict)  # deep-merged over the config's
    env: dict[str, str] = Field(default_factory=dict)  # merged over the config's env
    python: str | None = None  # another interpreter for this arm's children (default: this one)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _check_arm_name(v)



class ThroughputConfig(_Strict):
    """The speed phase. vllm: offline generation over random images like
    ``vllm bench serve --dataset-name random-mm``; hf: vision-encoder images/s + prefill tokens/s."""

    enabled: bool = True
    image_sizes: list[tuple[int, int]] = Field(default_factory=lambda: [(224, 224)])  # (width, height)
    image_mix: list[float] | None = None  # weights for image_sizes (default: equal)
    images_per_prompt: int = Field(1, ge=1)
    input_len: int = Field(0, ge=0)  # random text tokens per prompt (vllm --random-input-len)
    num_prompts: int = Field(100, ge=1)
    output_len: int = Field(1, ge=1)  # 1 token: vision prefill dominates
    concurrency: int | None = Field(None, ge=1)  # vllm: max_num_seqs; hf: encoder batch size
    # offline: vLLM's LLM in the worker process; serve: a real `vllm serve` per arm measured by
    # `vllm bench serve --dataset-name random-mm` (engine vllm only)
    mode: Literal["offline", "serve"] = "offline"
    # Untimed requests before the first round (default: one full round's worth); every image size
    # is among them, so first-shape compiles and plan builds never land in a timed round.
    warmup: int | None = Field(None, ge=0)
    # Timed rounds per arm, interleaved across arms in rotating order (A B, B A, ...); each round
    # draws new images. 10 resolves about +-3% on a full-size ViT on the H100.
    repeats: int = Field(10, ge=1)
    # All arms' engines alive at once (each in its own worker), timed round by round; false: one
    # worker at a time, visiting the arms in rotating order. None: together where they fit.
    together: bool | None = None
    visits: int = Field(2, ge=1)  # together false: worker starts per arm (rounds split over them)
    aa_control: bool = False  # also time a second engine of the baseline (A/A control)
    seed: int = 0  # random images / prompts (vllm bench --seed)
    timeout_s: float | None = Field(None, gt=0)  # one worker's start + warm-up, and each round

    def warmup_requests(self) -> int:
        return self.num_prompts if self.warmup is None else self.warmup

    @field_validator("image_sizes")
    @classmethod
    def _sizes(cls, v):
        if not v:
            raise ValueError("needs at least one (width, height)")
        for w, h in v:
            if w <= 0 or h <= 0:
                raise ValueError(f"image size {w}x{h} must be positive")
        return v

    @model_validator(mode="after")
    def _mix(self):
        if self.image_mix is not None:
            if len(self.image_mix) != len(self.image_sizes):
                raise ValueError(
                    f"image_mix has {len(self.image_mix)} weights for {len(self.image_sizes)} image_sizes"
                )
            if any(w <= 0 for w in self.image_mix):
                raise ValueError("image_mix weights must be > 0 (drop a size instead of weighting it 0)")
        return self

    def weights(self) -> list[float]:
        mix = self.image_mix or [1.0] * len(self.image_sizes)
        total = float(sum(mix))
        return [w / total for w in mix]


class Config(_EngineSettings):
    name: str | None = None  # default: the config file's stem
    description: str | None = None
    model: str
    engine: Literal["vllm", "hf"]
    arms: list[ArmConfig] | None = Field(None, min_length=1)
    backends: list[str] | None = Field(None, min_length=1)  # shorthand: one arm per backend
    baseline: str | None = None  # an arm name; default: the first arm
    tasks: list[str] = Field(default_factory=lambda: ["mmmu_val"], min_length=1)
    include_path: str | None = None  # lm-eval --include_path (extra task yaml dir)
    limit: int | float | None = None  # lm-eval --limit: per task, count (>= 1) or fraction (< 1)
    num_fewshot: int | None = Field(None, ge=0)
    batch_size: int | str = 1  # int, or "auto" / "auto:N" (vllm only)
    apply_chat_template: bool = True
    max_images_per_prompt: int | None = Field(None, ge=1)
    seed: int | None = None  # lm-eval --seed (one value for all four seeds)
    trust_remote_code: bool = False
    device: str | None = None  # lm-eval --device
    gen_kwargs: dict[str, Any] = Field(default_factory=dict)  # lm-eval --gen_kwargs
    engine_args: dict[str, Any] = Field(default_factory=dict)  # extra model_args / engine args
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for every child process
    throughput: ThroughputConfig = Field(default_factory=ThroughputConfig)
    output_dir: str = "reports"
    run_id: str | None = None
    timeout_s: float | None = Field(None, gt=0)  # per accuracy phase
    # A child whose results are complete but which has not exited this long after is terminated
    # and counted complete (lm-eval's vllm-vlm process was seen to stay alive after writing).
    exit_grace_s: float = Field(60.0, gt=0)
    accuracy: bool = True  # false: throughput only (e.g. full-size ViTs with dummy weights)
    parity: dict[str, Any] = Field(default_factory=dict)  # report thresholds (ParityThresholds)

    @field_validator("backends")
    @classmethod
    def _unique(cls, v):
        if v is None:
            return v
        dup = sorted({b for b in v if v.count(b) > 1})
        if dup:
            raise ValueError(f"listed twice: {', '.join(dup)}")
        for b in v:
            _check_arm_name(b)
        return v

    @field_validator("arms")
    @classmethod
    def _unique_arms(cls, v):
        names = [a.name for a in v or []]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"arm name listed twice: {', '.join(dup)}")
        return v

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, v):
        # lm-eval reads --limit >= 1 as a count (int(1.5) == 1 items, silently) and < 1 as a fraction
        if v is None:
            return v
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and (
            0 < v < 1 or (v >= 1 and float(v).is_integer()))
        if not ok:
            raise ValueError(f"must be a whole number of items per task (>= 1) or a fraction of "
                             f"each task (between 0 and 1), got {v!r}")
        return int(v) if v >= 1 else float(v)

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v):
        if isinstance(v, int):
            if v < 1:
                raise ValueError("must be >= 1")
            return v
        if not re.fullmatch(r"auto(:\d+)?", v):
            raise ValueError(f"must be an integer, 'auto' or 'auto:N', got {v!r}")
        return v


    @model_validator(mode="after")
    def _semantics(self):
        if (self.arms is None) == (self.backends is None):
            raise ValueError("give either 'arms' or 'backends' (shorthand: one arm per backend)"
                             + (", not both" if self.arms is not None else ""))
        names = self.arm_names()
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the arms {names}")
        if AA_CONTROL in names:
            raise ValueError(f"arm name {AA_CONTROL!r} is reserved for the A/A control "
                             "(throughput.aa_control)")
        if self.engine == "hf" and self.throughput.mode == "serve":
            raise ValueError("throughput.mode serve runs `vllm serve`: engine vllm only")
        if self.engine == "hf" and not isinstance(self.batch_size, int):
            raise ValueError("batch_size 'auto' is not supported by lm-eval's hf-multimodal model; use an integer")
        return self

    # -- derived
    def arm_configs(self) -> list[ArmConfig]:
        """The arms as written, in config order (``backends:`` gives one per backend)."""
        if self.arms is not None:
            return list(self.arms)
        return [ArmConfig(name=b, backend=b) for b in self.backends or []]

    def arm_names(self) -> list[str]:
        return [a.name for a in self.arm_configs()]

    @property
    def baseline_name(self) -> str:
        return self.baseline or self.arm_names()[0]

    def ordered_arm_names(self) -> list[str]:
        """Baseline first, then the rest in config order."""
        b = self.baseline_name
        return [b] + [x for x in self.arm_names() if x != b]


# --------------------------------------------------------------------------- loading
def _loc(parts: tuple, data: Any) -> str:
    """Dotted location; an arm is named by its name where it has one (``arms.fp8.env``)."""
    parts = list(parts)
    if len(parts) > 1 and parts[0] == "arms" and isinstance(parts[1], int) and isinstance(data, dict):
        arms = data.get("arms")
        arm = arms[parts[1]] if isinstance(arms, list) and parts[1] < len(arms) else None
        if isinstance(arm, dict) and isinstance(arm.get("name"), str) and ARM_NAME.match(arm["name"]):
            parts[1] = arm["name"]
    return ".".join(str(p) for p in parts) or "config"


def _one_line(err: ValidationError, source: str, data: Any = None) -> str:
    e = err.errors()[0]
    loc = _loc(e["loc"], data)
    kind = e["type"]
    if kind == "extra_forbidden":
        msg = f"unknown key {loc!r}"
    elif kind == "missing":
        msg = f"missing required key {loc!r}"
    else:
        text = e["msg"].removeprefix("Value error, ")
        msg = f"{loc}: {text}"
    more = len(err.errors()) - 1
    return f"{source}: {msg}" + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def parse_config(data: Any, source: str = "config") -> Config:
    """Schema validation only (keys, types, ranges, internal consistency)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_one_line(e, source, data)) from None
    return cfg


def select_arms(data: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``--arms A,B``: the config's top-level overrides that run only these, in this order, the
    first as baseline. With ``backends:`` (or none) the names are the backends, as before arms."""
    arms = data.get("arms") if isinstance(data, dict) else None
    if not isinstance(arms, list):
        return {"backends": names, "baseline": None}
    by_name = {a.get("name"): a for a in arms if isinstance(a, dict)}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        known = ", ".join(str(n) for n in by_name)
        raise ConfigError(f"--arms: no arm named {unknown[0]!r}; the config's arms: {known}")
    return {"arms": [by_name[n] for n in dict.fromkeys(names)], "baseline": None}


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                arms: list[str] | None = None) -> Config:
    """Read + schema-validate a YAML config (``overrides`` replace top-level keys first; ``arms``
    selects arms by name, as ``--arms``)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {p}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{p}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    if isinstance(data, dict):
        data = {**data, **(overrides or {})}
        if arms:
            data.update(select_arms(data, arms))
        data.setdefault("name", p.stem)
    return parse_config(data, source=str(p))


# --------------------------------------------------------------------------- moved
_MOVED = {"check_backends", "check_model", "known_tasks", "check_tasks", "check_parity",
          "validate_environment"}


def __getattr__(name: str):
    """The environment checks live in :mod:`.config_checks`; old imports from here still work
    (looked up lazily: that module imports this one)."""
    if name in _MOVED:
        from vit_backend_plugin.harness import config_checks

        return getattr(config_checks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
