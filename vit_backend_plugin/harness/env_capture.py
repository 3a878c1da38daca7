"""What an arm ran on (env.json, and the versions in settings.json): package versions, Python,
device, GPU name and driver, the environment that matters. Versions are read BY THE ARM'S
INTERPRETER (:mod:`.interpreter_probe`, run as a child process): an arm on another virtualenv
ran other versions than the harness's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from vit_backend_plugin.harness import interpreter_probe
from vit_backend_plugin.harness.config import ConfigError

_PROBE = Path(interpreter_probe.__file__)
_WATCHED = ("VLLM_", "CUDA_VISIBLE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
            "TRANSFORMERS_OFFLINE", "VIT_", "TRITON_")


def probe_interpreter(python: str, *, device: bool = False, timeout: float = 300) -> dict[str, Any]:
    """The interpreter's own answer (versions, where it imports our modules from; with
    ``device``, torch's view of the GPU). One-line ConfigError when it cannot answer."""
    argv = [python, str(_PROBE)] + (["--device"] if device else [])
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"python {python} cannot be run: {e}") from None
    lines = proc.stdout.strip().splitlines()
    try:
        if proc.returncode != 0 or not lines:
            raise ValueError
        return json.loads(lines[-1])
    except ValueError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"python {python} did not answer the version probe "
                          f"(exit {proc.returncode}): {last}") from None


def device_probe(python: str, answer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The interpreter's full answer, device included (torch's view of the GPU). The harness's
    own interpreter answers the device part in this process (the same torch, and importing it
    takes seconds), on top of ``answer`` (its version probe from planning, where there is one);
    another one in a child process."""
    if not _is_this_interpreter(python):
        return probe_interpreter(python, device=True)
    return {**(answer or probe_interpreter(python)), "device": interpreter_probe.device()}


def _is_this_interpreter(python: str) -> bool:
    try:
        return os.path.samefile(python, sys.executable)
    except OSError:
        return False


def check_interpreter(name: str, python: str, info: dict[str, Any], engine: str,
                      accuracy: bool) -> None:
    """The arm's interpreter can start its children: this plugin (its child modules), the
    engine, and lm-eval for the accuracy phase."""
    need = ["vit_backend_plugin", "transformers" if engine == "hf" else "vllm"]
    if accuracy:
        need.append("lm_eval")
    missing = [m for m in need if not (info.get("modules") or {}).get(m)]
    if missing:
        raise ConfigError(f"arm {name!r}: python {python} cannot import {', '.join(missing)} "
                          "(install vit-backend-plugin[eval] with the engine there)")


def gpu_info() -> list[dict[str, str]] | None:
    """Name, driver and compute capability of each GPU from nvidia-smi; None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append(dict(zip(("name", "driver", "capability"), parts, strict=True)))
    return gpus or None


def watched_environment(child_env: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """Of a child's environment, the variables that change what an engine does, and the arm's."""
    return {k: v for k, v in sorted(child_env.items()) if k.startswith(_WATCHED) or k in overrides}


def environment_info(probe: dict[str, Any], child_env: dict[str, str], overrides: dict[str, str],
                     gpus: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """env.json: the arm's interpreter's answer to ``probe_interpreter(python, device=True)``
    (versions, torch's view of the device), the GPUs from nvidia-smi (name, driver) and the
    environment its children get."""
    info = dict(probe)
    device = dict(info.pop("device", None) or {})
    if gpus:
        device["nvidia_smi"] = gpus
    return {**info, "device": device, "environment": watched_environment(child_env, overrides)}
