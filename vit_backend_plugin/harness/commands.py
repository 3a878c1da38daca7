"""The exact command line and environment each phase of each arm runs with, built from the arm's
one resolved :class:`~vit_backend_plugin.harness.arms.Arm` (backend, effective engine args and
environment, interpreter, lm-eval model_args). Pure: no imports of torch, vLLM or lm-eval, so it
is cheap to build and to test.

Accuracy runs lm-eval's own CLI (``python -m lm_eval ...``) in a fresh process, started through
the thin wrapper :mod:`vit_backend_plugin.harness.lm_eval_child` (it registers the plugin's
kernels with transformers for the ``hf`` engine and honours the test fault-injection hook, then
hands the same argv to ``lm_eval.__main__.cli_evaluate``). ``lm_eval_argv`` is the equivalent
``lm_eval`` command, recorded in command.json so a reviewer can paste it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vit_backend_plugin.harness.arms import Arm, resolve_backend
from vit_backend_plugin.harness.config import Config
from vit_backend_plugin.rundir.layout import LM_EVAL_DIR, THROUGHPUT

LM_EVAL_MODEL = {"vllm": "vllm-vlm", "hf": "hf-multimodal"}
FAULT_ENV = "VIT_PARITY_FAULT"  # "backend:phase[,backend:phase...]": that child raises (tests)


@dataclass
class PhaseCommand:
    argv: list[str]  # exactly what is executed
    env: dict[str, str]  # overrides on top of the parent's environment
    lm_eval_argv: list[str] | None = None  # the equivalent `lm_eval ...` command (accuracy)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and x >= 1 else repr(float(x))


def lm_eval_args(cfg: Config, arm: Arm, output_path: Path, include_path: str | None) -> list[str]:
    """Arguments after ``lm_eval`` (the legacy/`run` form seed 001 uses)."""
    a = [
        "--model", LM_EVAL_MODEL[cfg.engine],
        "--model_args", json.dumps(arm.model_args),
        "--tasks", ",".join(cfg.tasks),
    ]
    if include_path:
        a += ["--include_path", str(include_path)]
    if cfg.num_fewshot is not None:
        a += ["--num_fewshot", str(cfg.num_fewshot)]
    if cfg.limit is not None:
        a += ["--limit", _num(cfg.limit)]
    if cfg.trust_remote_code:
        a += ["--trust_remote_code"]
    a += ["--batch_size", str(cfg.batch_size)]
    if cfg.apply_chat_template:
        a += ["--apply_chat_template"]
    if cfg.device:
        a += ["--device", cfg.device]
    if cfg.gen_kwargs:
        a += ["--gen_kwargs", json.dumps(cfg.gen_kwargs)]
    if cfg.seed is not None:
        a += ["--seed", str(cfg.seed)]
    a += ["--log_samples", "--output_path", str(output_path)]
    return a


def backend_env(cfg: Config, backend: str) -> dict[str, str]:
    """The environment of that backend with the config's settings (scripts/ name backends)."""
    return dict(resolve_backend(cfg, backend).env)


def accuracy_command(cfg: Config, arm: Arm, arm_dir: Path,
                     include_path: str | None = None) -> PhaseCommand:
    args = lm_eval_args(cfg, arm, Path(arm_dir) / LM_EVAL_DIR, include_path)
    return PhaseCommand(
        argv=[arm.python, "-m", "vit_backend_plugin.harness.lm_eval_child", *args],
        env=dict(arm.env),
        lm_eval_argv=["lm_eval", *args],
    )


def throughput_spec(cfg: Config, arm: Arm | str, arm_dir: Path) -> dict[str, Any]:
    """Everything the throughput child needs, as plain JSON (recorded verbatim in command.json).
    A backend name stands for that backend with the config's settings (scripts/)."""
    arm = resolve_backend(cfg, arm) if isinstance(arm, str) else arm
    return {
        "engine": cfg.engine,
        "model": cfg.model,
        "arm": arm.name,
        "backend": arm.backend,
        "route": arm.route,
        "trust_remote_code": cfg.trust_remote_code,
        "seed": cfg.throughput.seed,
        "device": cfg.device,
        # one engine is timed: data parallelism is the accuracy phase's (lm-eval's replicas)
        "engine_args": {k: v for k, v in arm.engine_args.items() if k != "data_parallel_size"},
        "env_keys": sorted(arm.env),  # the child records what it saw of these
        "settings": cfg.throughput.model_dump(mode="json"),
        "out": str(Path(arm_dir) / THROUGHPUT),
    }


def throughput_command(cfg: Config, arm: Arm, arm_dir: Path) -> PhaseCommand:
    spec = throughput_spec(cfg, arm, arm_dir)
    return PhaseCommand(
        argv=[arm.python, "-m", "vit_backend_plugin.harness.speed_worker", "--spec",
              json.dumps(spec, sort_keys=True)],
        env=dict(arm.env),
    )
