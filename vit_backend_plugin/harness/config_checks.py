"""Config checks that need the installed software or the filesystem: backend names for the
engine, the model path (or the offline HF cache), lm-eval's task index, parity thresholds.
Run by :func:`vit_backend_plugin.harness.plan.prepare` before anything starts; each problem is
a one-line :class:`~vit_backend_plugin.harness.config.ConfigError`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from vit_backend_plugin.harness.config import (
    DEMO_SCHEME,
    HUB_ID,
    Config,
    ConfigError,
    _one_line,
    hf_backends,
    vllm_backends,
)


def check_backends(cfg: Config) -> None:
    if cfg.engine == "vllm":
        valid = list(vllm_backends())
    else:
        valid = hf_backends()
    for arm in cfg.arm_configs():
        b = arm.backend
        if b is None:
            if cfg.engine == "vllm":
                continue  # the automatic choice
            raise ConfigError(f"arm {arm.name!r}: engine hf needs a backend (attn_implementation); "
                              f"valid: {', '.join(valid)}")
        if b not in valid:
            hint = ""
            lower = {v.lower(): v for v in valid}
            if b.lower() in lower:
                hint = f" (did you mean {lower[b.lower()]!r}?)"
            where = f"arm {arm.name!r}: " if cfg.arms is not None else ""
            raise ConfigError(
                f"{where}unknown backend {b!r} for engine {cfg.engine}{hint}; valid: {', '.join(valid)}"
            )


def check_interpreters(cfg: Config) -> None:
    """An arm's ``python`` must be an executable file (it starts both phases' children)."""
    for arm in cfg.arm_configs():
        if arm.python is None:
            continue
        path = Path(arm.python).expanduser()
        if not path.is_file():
            raise ConfigError(f"arm {arm.name!r}: python {arm.python} does not exist")
        if not os.access(path, os.X_OK):
            raise ConfigError(f"arm {arm.name!r}: python {arm.python} is not executable")


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
    check_interpreters(cfg)
    check_model(cfg)
    check_parity(cfg)
    check_tasks(cfg, include_path if include_path is not None else cfg.include_path)
