"""`vit-parity run` configs: one YAML file, validated completely before anything runs.

Every problem becomes a :class:`ConfigError` with a one-line message (the CLI prints it and
exits non-zero, no traceback): an unknown key, an unknown backend for the engine, an unknown
lm-eval task, a local model path that does not exist, an inconsistent setting.

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

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


# --------------------------------------------------------------------------- models
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


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
    warmup: int = Field(8, ge=0)  # requests run first and excluded from timing
    repeats: int = Field(3, ge=1)  # timed passes; the median is reported
    seed: int = 0  # random images / prompts (vllm bench --seed)
    timeout_s: float | None = Field(None, gt=0)

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


class Config(_Strict):
    name: str | None = None  # default: the config file's stem
    description: str | None = None
    model: str
    engine: Literal["vllm", "hf"]
    backends: list[str] = Field(min_length=1)
    baseline: str | None = None  # default: backends[0]
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
        dup = sorted({b for b in v if v.count(b) > 1})
        if dup:
            raise ValueError(f"listed twice: {', '.join(dup)}")
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

    @field_validator("env")
    @classmethod
    def _env(cls, v):
        if "VIT_ATTN_BACKEND" in v:
            raise ValueError("VIT_ATTN_BACKEND is set per backend by the harness; list the backend instead")
        return v

    @model_validator(mode="after")
    def _semantics(self):
        if self.baseline is not None and self.baseline not in self.backends:
            raise ValueError(f"baseline {self.baseline!r} is not one of the backends {self.backends}")
        if self.engine == "hf" and not isinstance(self.batch_size, int):
            raise ValueError("batch_size 'auto' is not supported by lm-eval's hf-multimodal model; use an integer")
        reserved = {"pretrained", "mm_encoder_attn_backend", "attn_implementation"}
        clash = sorted(reserved & set(self.engine_args))
        if clash:
            raise ValueError(f"engine_args may not set {', '.join(clash)} (the harness sets it per backend)")
        return self

    # -- derived
    @property
    def baseline_name(self) -> str:
        return self.baseline or self.backends[0]

    def ordered_backends(self) -> list[str]:
        """Baseline first, then the rest in config order."""
        b = self.baseline_name
        return [b] + [x for x in self.backends if x != b]


# --------------------------------------------------------------------------- loading
def _one_line(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "config"
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
        raise ConfigError(_one_line(e, source)) from None
    return cfg


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Config:
    """Read + schema-validate a YAML config (``overrides`` replace top-level keys first)."""
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
        data.setdefault("name", p.stem)
    return parse_config(data, source=str(p))


# --------------------------------------------------------------------------- environment checks
def check_backends(cfg: Config) -> None:
    if cfg.engine == "vllm":
        valid = list(vllm_backends())
    else:
        valid = hf_backends()
    for b in cfg.backends:
        if b not in valid:
            hint = ""
            lower = {v.lower(): v for v in valid}
            if b.lower() in lower:
                hint = f" (did you mean {lower[b.lower()]!r}?)"
            raise ConfigError(
                f"unknown backend {b!r} for engine {cfg.engine}{hint}; valid: {', '.join(valid)}"
            )


def check_model(cfg: Config) -> None:
    model = cfg.model
    if model.startswith(DEMO_SCHEME):
        return
    p = Path(model).expanduser()
    looks_local = model.startswith(("/", "./", "../", "~")) or p.exists() or not HUB_ID.match(model)
    if looks_local:
        if not p.exists():
            raise ConfigError(f"model path does not exist: {model}")
        if p.is_dir() and not (p / "config.json").is_file():
            raise ConfigError(f"model directory has no config.json: {model}")
        return
    # A hub id. Offline runs can only use what is already in the local HF cache.
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(model, "config.json")
        except Exception:
            hit = None
        if not isinstance(hit, str):
            raise ConfigError(
                f"model {model!r} is a hub id, HF_HUB_OFFLINE=1 and it is not in the local HF cache"
            )


def _task_cache_file(include_path: str | None) -> Path:
    import hashlib

    try:
        from importlib.metadata import version

        lm_ver = version("lm_eval")
    except Exception:
        lm_ver = "?"
    import lm_eval

    key = [lm_ver, str(Path(lm_eval.__file__).parent)]
    if include_path:
        inc = Path(include_path)
        stamps = sorted(
            (str(f), f.stat().st_mtime_ns) for f in inc.rglob("*.yaml")
        ) if inc.is_dir() else [(str(inc), 0)]
        key.append(json.dumps(stamps))
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    from vit_backend_plugin.common.paths import harness_cache_root

    return harness_cache_root() / "lm_eval_tasks" / f"{digest}.json"


def known_tasks(include_path: str | None = None) -> set[str]:
    """Every task/group/tag name lm-eval's TaskManager knows (cached: building the index takes ~15 s)."""
    cache = _task_cache_file(include_path)
    try:
        return set(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    import logging

    from lm_eval.tasks import TaskManager

    log = logging.getLogger("lm_eval")
    level = log.level
    log.setLevel(logging.ERROR)  # indexing warns once per overridden task: noise here
    try:
        names = sorted(TaskManager(include_path=include_path).all_tasks)
    finally:
        log.setLevel(level)
    try:
        from vit_backend_plugin.common.files import atomic_write_json

        atomic_write_json(cache, names)
    except OSError:
        pass
    return set(names)


def check_tasks(cfg: Config, include_path: str | None) -> None:
    if include_path and not Path(include_path).exists():
        raise ConfigError(f"include_path does not exist: {include_path}")
    try:
        names = known_tasks(include_path)
    except ImportError:
        raise ConfigError("lm-eval is not installed: pip install 'vit-backend-plugin[eval]'") from None
    for t in cfg.tasks:
        if t not in names:
            import difflib

            close = difflib.get_close_matches(t, sorted(names), n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise ConfigError(f"unknown lm-eval task {t!r}{hint}")


def check_parity(cfg: Config) -> None:
    if not cfg.parity:
        return
    try:
        from vit_backend_plugin.report.parity import ParityThresholds
    except ImportError:
        return  # the report helper validates when it runs
    try:
        if hasattr(ParityThresholds, "model_validate"):
            ParityThresholds.model_validate(cfg.parity)
        else:
            ParityThresholds(**cfg.parity)
    except ValidationError as e:
        raise ConfigError(_one_line(e, "parity")) from None
    except (TypeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"parity: {msg}") from None


def validate_environment(cfg: Config, include_path: str | None = None) -> None:
    """Everything that needs the installed software or the filesystem. Raises ConfigError."""
    check_backends(cfg)
    check_model(cfg)
    check_parity(cfg)
    check_tasks(cfg, include_path if include_path is not None else cfg.include_path)
