"""Planning a run: resolve demo:// references, validate against the installed software and
the run dir already there (a rerun must use the same config), and the `--dry-run` listing."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vit_backend_plugin.harness.commands import accuracy_command, throughput_command
from vit_backend_plugin.harness.config import DEMO_SCHEME, Config, ConfigError
from vit_backend_plugin.harness.config_checks import validate_environment
from vit_backend_plugin.rundir.layout import RunInfo

# Config keys that do not change what a backend's results mean (a rerun may change them freely).
_NEUTRAL_KEYS = {"name", "description", "backends", "baseline", "output_dir", "run_id", "parity",
                 "timeout_s", "exit_grace_s", "env", "_resolved"}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Plan:
    cfg: Config  # as written (demo:// references kept)
    run_dir: Path
    model: str  # resolved model (local path or hub id)
    include_path: str | None  # resolved lm-eval include path
    backends: list[str]  # baseline first

    def effective(self) -> Config:
        """The config with demo:// references resolved (what the children see)."""
        return self.cfg.model_copy(update={"model": self.model, "include_path": self.include_path})


def resolve_demo_refs(cfg: Config) -> tuple[str, str | None]:
    model, include = cfg.model, cfg.include_path
    uses_demo = model.startswith(DEMO_SCHEME) or (include or "").startswith(DEMO_SCHEME)
    if not uses_demo:
        return model, include
    from vit_backend_plugin.harness import vit_models
    from vit_backend_plugin.harness.demo_assets import ensure_demo_assets

    known_model, known_tasks = f"{DEMO_SCHEME}tiny-qwen2-vl", f"{DEMO_SCHEME}mmmu"
    full_vits = {DEMO_SCHEME + n: n[len(vit_models.PREFIX):] for n in vit_models.names()}
    if model.startswith(DEMO_SCHEME) and model != known_model and model not in full_vits:
        raise ConfigError(f"unknown demo model {model!r}; embedded: "
                          f"{', '.join([known_model, *full_vits])}")
    if include and include.startswith(DEMO_SCHEME) and include != known_tasks:
        raise ConfigError(f"unknown demo include_path {include!r}; the embedded one is {known_tasks!r}")
    assets = ensure_demo_assets()
    if model in full_vits:  # full-size ViT config around the demo's tokenizer (dummy weights)
        model = str(vit_models.ensure_vit_model(full_vits[model], assets.model_dir,
                                                assets.root.parent / "full_vits"))
    elif model.startswith(DEMO_SCHEME):
        model = str(assets.model_dir)
    if include and include.startswith(DEMO_SCHEME):
        include = str(assets.tasks_dir)
    return model, include


def _fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    fp = {k: v for k, v in config.items() if k not in _NEUTRAL_KEYS}
    if isinstance(fp.get("throughput"), dict):
        fp["throughput"] = {k: v for k, v in fp["throughput"].items() if k != "timeout_s"}
    return fp


def prepare(cfg: Config, *, run_id: str | None = None, output_dir: str | None = None,
            force: bool = False) -> Plan:
    """Resolve and validate everything; raises ConfigError before anything runs."""
    run_id = run_id or cfg.run_id or cfg.name or "run"
    if not _RUN_ID.match(run_id):
        raise ConfigError(f"run id {run_id!r} must be letters, digits, '.', '_' or '-'")
    run_dir = Path(output_dir or cfg.output_dir).expanduser() / run_id
    model, include = resolve_demo_refs(cfg)
    plan = Plan(cfg=cfg, run_dir=run_dir, model=model, include_path=include,
                backends=cfg.ordered_backends())
    eff = plan.effective()
    validate_environment(eff, include)
    check_devices(eff)
    if not force:
        try:
            old = RunInfo.read(run_dir)
        except FileNotFoundError:
            old = None
        except (OSError, ValueError, TypeError):
            old = None  # unreadable run.json: rewritten below; backends verify their own files
        if old is not None:
            before = _fingerprint(old.config)
            now = _fingerprint(cfg.model_dump(mode="json"))
            diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            if diff:
                raise ConfigError(
                    f"{run_dir} holds a run made with a different config (differs in: "
                    f"{', '.join(diff)}); use --force to redo it, or --run-id NEW"
                )
    return plan


def check_devices(cfg: Config) -> None:
    """The hf engine's plugin kernels need CUDA: say so before any model loads."""
    from vit_backend_plugin.harness.config import hf_plugin_backends

    if cfg.engine != "hf":
        return
    ours = [b for b in cfg.backends if b in hf_plugin_backends()]
    if not ours:
        return
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        raise ConfigError(f"backend {ours[0]!r} is a CUDA kernel and no CUDA GPU is visible")


def print_plan(plan: Plan, out=None) -> None:
    """`--dry-run`: every phase's exact command and environment, per backend; nothing runs."""
    out = out or sys.stdout
    cfg = plan.effective()
    print(f"# run dir: {plan.run_dir}  engine: {cfg.engine}  baseline: {cfg.baseline_name}", file=out)
    for backend in plan.backends:
        bdir = plan.run_dir / backend
        phases = {"accuracy": accuracy_command(cfg, backend, bdir, plan.include_path),
                  "throughput": throughput_command(cfg, backend, bdir)}
        for phase, cmd in phases.items():
            off = (phase == "accuracy" and not cfg.accuracy) or (
                phase == "throughput" and not cfg.throughput.enabled)
            print(f"# {backend} {phase}" + (": skipped (disabled in config)" if off else ""), file=out)
            if off:
                continue
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(cmd.env.items()))
            argv = cmd.lm_eval_argv or cmd.argv
            print((env + " " if env else "") + shlex.join(argv), file=out)


def write_run_info(plan: Plan) -> None:
    cfg = plan.cfg
    info = RunInfo(
        run_id=plan.run_dir.name,
        engine=cfg.engine,
        arms=plan.backends,
        arm_settings={b: {"backend": b} for b in plan.backends},
        baseline=cfg.baseline_name,
        tasks=list(cfg.tasks),
        model=cfg.model,
        config={
            **cfg.model_dump(mode="json"),
            "_resolved": {"model": plan.model, "include_path": plan.include_path},
        },
    )
    info.write(plan.run_dir)
