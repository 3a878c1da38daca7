"""The exact command line and environment each phase of each backend runs with. Pure: no imports
of torch, vLLM or lm-eval, so it is cheap to build and to test.

Accuracy runs lm-eval's own CLI (``python -m lm_eval ...``) in a fresh process, started through
the thin wrapper :mod:`vit_backend_plugin.harness.lm_eval_child` (it registers the plugin's
kernels with transformers for the ``hf`` engine and honours the test fault-injection hook, then
hands the same argv to ``lm_eval.__main__.cli_evaluate``). ``lm_eval_argv`` is the equivalent
``lm_eval`` command, recorded in command.json so a reviewer can paste it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vit_backend_plugin.harness.config import Config, backend_route
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


def model_args(cfg: Config, backend: str) -> dict[str, Any]:
    """lm-eval ``--model_args`` for one backend (pretrained first, then the backend, then extras)."""
    args: dict[str, Any] = {"pretrained": cfg.model}
    route = backend_route(cfg.engine, backend)
    if cfg.engine == "vllm":
        if route == "engine_arg":
            args["mm_encoder_attn_backend"] = backend
    else:
        args["attn_implementation"] = backend
    if cfg.max_images_per_prompt is not None:
        args["max_images"] = cfg.max_images_per_prompt
    if cfg.trust_remote_code:
        args["trust_remote_code"] = True
    args.update(cfg.engine_args)
    return args


def backend_env(cfg: Config, backend: str) -> dict[str, str]:
    env = dict(cfg.env)
    if cfg.engine == "vllm" and backend_route(cfg.engine, backend) == "env":
        env["VIT_ATTN_BACKEND"] = backend
    return env


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and x >= 1 else repr(float(x))


def lm_eval_args(cfg: Config, backend: str, output_path: Path, include_path: str | None) -> list[str]:
    """Arguments after ``lm_eval`` (the legacy/`run` form seed 001 uses)."""
    a = [
        "--model", LM_EVAL_MODEL[cfg.engine],
        "--model_args", json.dumps(model_args(cfg, backend)),
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


def accuracy_command(
    cfg: Config,
    backend: str,
    backend_dir: Path,
    include_path: str | None = None,
    python: str | None = None,
) -> PhaseCommand:
    args = lm_eval_args(cfg, backend, Path(backend_dir) / LM_EVAL_DIR, include_path)
    return PhaseCommand(
        argv=[python or sys.executable, "-m", "vit_backend_plugin.harness.lm_eval_child", *args],
        env=backend_env(cfg, backend),
        lm_eval_argv=["lm_eval", *args],
    )


def throughput_spec(cfg: Config, backend: str, backend_dir: Path) -> dict[str, Any]:
    """Everything the throughput child needs, as plain JSON (recorded verbatim in command.json)."""
    return {
        "engine": cfg.engine,
        "model": cfg.model,
        "backend": backend,
        "route": backend_route(cfg.engine, backend),
        "trust_remote_code": cfg.trust_remote_code,
        "seed": cfg.throughput.seed,
        "device": cfg.device,
        "engine_args": cfg.engine_args,
        "settings": cfg.throughput.model_dump(mode="json"),
        "out": str(Path(backend_dir) / THROUGHPUT),
    }


def throughput_command(
    cfg: Config, backend: str, backend_dir: Path, python: str | None = None
) -> PhaseCommand:
    spec = throughput_spec(cfg, backend, backend_dir)
    return PhaseCommand(
        argv=[
            python or sys.executable,
            "-m",
            "vit_backend_plugin.harness.throughput",
            "--spec",
            json.dumps(spec, sort_keys=True),
        ],
        env=backend_env(cfg, backend),
    )
