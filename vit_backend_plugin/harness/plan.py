"""Planning a run: resolve demo:// references and the arms, validate against the installed
software, each arm's interpreter and the run dir already there (a rerun must use the same config,
and each arm the settings it ran with), and the `--dry-run` listing."""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vit_backend_plugin.harness.arms import (
    Arm,
    arm_record,
    resolve_arm,
    resolve_arms,
    settings_changes,
)
from vit_backend_plugin.harness.commands import accuracy_command, throughput_command
from vit_backend_plugin.harness.config import DEMO_SCHEME, Config, ConfigError, parse_config
from vit_backend_plugin.harness.config_checks import validate_environment
from vit_backend_plugin.harness.env_capture import check_interpreter, gpu_info, probe_interpreter
from vit_backend_plugin.rundir.layout import AA_CONTROL, ARM_SETTINGS, RunInfo

# Config keys that do not change what an arm's results mean (a rerun may change them freely).
# The arms' own settings (backend, engine_args, env, python) are compared per arm instead.
_NEUTRAL_KEYS = {"name", "description", "backends", "arms", "baseline", "output_dir", "run_id",
                 "parity", "timeout_s", "exit_grace_s", "engine_args", "env", "_resolved"}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Plan:
    cfg: Config  # as written (demo:// references kept)
    run_dir: Path
    model: str  # resolved model (local path or hub id)
    include_path: str | None  # resolved lm-eval include path
    arms: list[Arm]  # baseline first
    # interpreter -> its probe (versions); GPUs from nvidia-smi: what settings.json records
    interpreters: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpus: list[dict[str, str]] | None = None
    # --gpus: the device ids arms are placed on (None: today's one device, arms one by one);
    # --ray-address: arms' accuracy phases become Ray tasks on that cluster
    devices: list[str] | None = None
    ray_address: str | None = None

    def effective(self) -> Config:
        """The config with demo:// references resolved (what the children see)."""
        return self.cfg.model_copy(update={"model": self.model, "include_path": self.include_path})

    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.arms]

    def record(self, arm: Arm) -> dict[str, Any]:
        """The arm's settings.json as it would be written now."""
        if arm.python not in self.interpreters:
            self.interpreters[arm.python] = probe_interpreter(arm.python)
        return arm_record(arm, self.interpreters[arm.python], self.gpus)


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
            force: bool = False, gpus: str | None = None, ray_address: str | None = None) -> Plan:
    """Resolve and validate everything; raises ConfigError before anything runs."""
    run_id = run_id or cfg.run_id or cfg.name or "run"
    if not _RUN_ID.match(run_id):
        raise ConfigError(f"run id {run_id!r} must be letters, digits, '.', '_' or '-'")
    run_dir = Path(output_dir or cfg.output_dir).expanduser() / run_id
    model, include = resolve_demo_refs(cfg)
    eff = cfg.model_copy(update={"model": model, "include_path": include})
    validate_environment(eff, include)
    check_devices(eff)
    plan = Plan(cfg=cfg, run_dir=run_dir, model=model, include_path=include,
                arms=resolve_arms(eff), gpus=gpu_info(), ray_address=ray_address)
    place(plan, gpus)
    for arm in plan.arms:
        plan.record(arm)  # asks its interpreter for the versions it runs
        check_interpreter(arm.name, arm.python, plan.interpreters[arm.python], cfg.engine,
                          cfg.accuracy)
    if not force:
        check_rerun(plan)
    return plan


def place(plan: Plan, gpus: str | None) -> None:
    """--gpus / --ray-address: the device set, and every arm fitting it (one line otherwise)."""
    from vit_backend_plugin.harness import placement

    if gpus is not None and plan.ray_address is not None:
        raise ConfigError("--gpus and --ray-address: choose one (Ray places arms on its nodes' GPUs)")
    needs = {a.name: placement.devices_needed(a.engine_args) for a in plan.arms}
    plan.devices = placement.select_devices(gpus, placement.visible_devices(plan.gpus))
    if plan.devices is not None:
        placement.check_fits(needs, plan.devices, f"--gpus {gpus} gives")


def check_rerun(plan: Plan) -> None:
    """A run dir already there must have been made with the same config, and every arm that has
    completed work with the settings (and versions) it has now: nothing is reused from another
    setting. One-line ConfigError naming what changed; ``--force`` redoes it instead."""
    try:
        old = RunInfo.read(plan.run_dir)
    except (OSError, ValueError, TypeError):
        old = None  # none, or unreadable: rewritten by the run; arms verify their own files
    if old is not None:
        before = _fingerprint(old.config)
        now = _fingerprint(plan.cfg.model_dump(mode="json"))
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if diff:
            raise ConfigError(
                f"{plan.run_dir} holds a run made with a different config (differs in: "
                f"{', '.join(diff)}); use --force to redo it, or --run-id NEW"
            )
    from vit_backend_plugin.rundir.layout import ArmStatus

    for arm in plan.arms:
        status = ArmStatus.read(plan.run_dir / arm.name)
        if status is None or "complete" not in status.phases.values():
            continue  # nothing of it would be kept
        recorded = recorded_settings(plan.run_dir, arm.name, old)
        changes = settings_changes(recorded, plan.record(arm)) if recorded else []
        if changes:
            more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
            raise ConfigError(
                f"arm {arm.name!r} in {plan.run_dir} was run with other settings "
                f"({'; '.join(changes[:3])}{more}); use --force to redo it, or --run-id NEW"
            )


def recorded_settings(run_dir: Path, arm: str, old: RunInfo | None) -> dict[str, Any] | None:
    """What an arm ran with: its settings.json; for a run dir written before arms recorded it,
    the arm resolved from that run's config snapshot (backend, engine_args, env)."""
    try:
        data = json.loads((run_dir / arm / ARM_SETTINGS).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass
    if old is None:
        return None
    try:
        snapshot = {k: v for k, v in old.config.items() if k != "_resolved"}
        settings = resolve_arm(parse_config(snapshot, source=str(run_dir)), arm).settings()
    except ConfigError:
        return None
    settings.pop("python")  # not recorded then
    return settings


def check_devices(cfg: Config) -> None:
    """The hf engine's plugin kernels need CUDA: say so before any model loads."""
    from vit_backend_plugin.harness.config import hf_plugin_backends

    if cfg.engine != "hf":
        return
    ours = [a.backend for a in cfg.arm_configs() if a.backend in hf_plugin_backends()]
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
    """`--dry-run`: each arm (backend and what it sets), every phase's exact command and
    environment; nothing runs."""
    out = out or sys.stdout
    cfg = plan.effective()
    print(f"# run dir: {plan.run_dir}  engine: {cfg.engine}  baseline: {cfg.baseline_name}", file=out)
    for arm in plan.arms:
        print(f"# arm {arm.name}: {arm.label}", file=out)
    if plan.devices is not None or plan.ray_address is not None:
        from vit_backend_plugin.harness.placement import comma, devices_needed

        needs = ", ".join(f"{a.name} {devices_needed(a.engine_args)}" for a in plan.arms)
        where = (f"as Ray tasks on {plan.ray_address}" if plan.ray_address else
                 f"side by side on devices {comma(plan.devices or [])} (each child gets its "
                 "own as CUDA_VISIBLE_DEVICES)")
        print(f"# accuracy: {where}; devices per arm: {needs}", file=out)
    for arm in plan.arms:
        adir = plan.run_dir / arm.name
        phases = {"accuracy": accuracy_command(cfg, arm, adir, plan.include_path),
                  "throughput": throughput_command(cfg, arm, adir)}
        for phase, cmd in phases.items():
            off = (phase == "accuracy" and not cfg.accuracy) or (
                phase == "throughput" and not cfg.throughput.enabled)
            print(f"# {arm.name} {phase}" + (": skipped (disabled in config)" if off else ""), file=out)
            if off:
                continue
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(cmd.env.items()))
            argv = cmd.lm_eval_argv or cmd.argv
            if cmd.lm_eval_argv and arm.python != sys.executable:
                argv = [arm.python, "-m", "lm_eval", *cmd.lm_eval_argv[1:]]  # that venv's lm-eval
            print((env + " " if env else "") + shlex.join(argv), file=out)
    tp = cfg.throughput
    if tp.enabled:
        base = next(a for a in plan.arms if a.name == cfg.baseline_name)
        if tp.aa_control:
            cmd = throughput_command(cfg, base, plan.run_dir / AA_CONTROL)
            print(f"# A/A control: a second engine of {base.name}, timed in the same rounds", file=out)
            print(shlex.join(cmd.argv), file=out)
        print(f"# throughput: {tp.repeats} rounds per arm, interleaved (A B, B A, ...), every "
              "worker started before the first round where the engines fit together", file=out)


def write_run_info(plan: Plan) -> None:
    cfg = plan.cfg
    info = RunInfo(
        run_id=plan.run_dir.name,
        engine=cfg.engine,
        arms=plan.arm_names,
        arm_settings={a.name: a.settings() for a in plan.arms},
        baseline=cfg.baseline_name,
        tasks=list(cfg.tasks),
        model=cfg.model,
        config={
            **cfg.model_dump(mode="json"),
            "_resolved": {"model": plan.model, "include_path": plan.include_path},
        },
    )
    info.write(plan.run_dir)
