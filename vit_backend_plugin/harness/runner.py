"""Runs a validated config: per backend, a fresh process per phase; resumable; crash-tolerant.

Layout and states follow :mod:`vit_backend_plugin.rundir.layout`. For each backend, in order
(baseline first):

1. ``status.json`` is read; a phase marked ``complete`` whose files do not verify (missing,
   truncated or corrupt results/samples/throughput) is demoted and redone. ``--force`` redoes all.
2. ``command.json`` (exact argv + env overrides per phase) and ``env.json`` (versions, device)
   are written before anything starts.
3. Each phase still to do: its old outputs are removed, state ``running`` is written, the child
   runs (output to ``<phase>.log``, progress parsed for the display), and the phase becomes
   ``complete`` only if its outputs verify, else ``failed`` with the error's last lines.
   A process killed hard leaves ``running``: the next run redoes that phase.

A failing backend never stops the others. The parts live in their own modules: planning
(:mod:`.plan`), verification (:mod:`.verify`), versions/device (:mod:`.env_capture`), child
processes (:mod:`.children`) and the display (:mod:`.display`); this module orchestrates.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from vit_backend_plugin.harness.children import ChildResult, child_env, run_child
from vit_backend_plugin.harness.commands import accuracy_command, throughput_command
from vit_backend_plugin.harness.display import Display, summary_table
from vit_backend_plugin.harness.env_capture import environment_info
from vit_backend_plugin.harness.plan import (
    Plan,
    check_devices,
    prepare,
    print_plan,
    resolve_demo_refs,
    write_run_info,
)
from vit_backend_plugin.harness.verify import (
    ACCURACY_SKIPPED,
    verify,
    verify_accuracy,
    verify_throughput,
)
from vit_backend_plugin.rundir.layout import (
    COMMAND,
    ENV,
    LM_EVAL_DIR,
    PHASES,
    THROUGHPUT,
    ArmStatus,
    atomic_write_json,
)

# Names other code imports from here (the runner was one module before it was split).
__all__ = [
    "ACCURACY_SKIPPED", "ChildResult", "Display", "Plan", "check_devices", "child_env",
    "environment_info", "execute", "make_report", "prepare", "print_plan", "resolve_demo_refs",
    "run_backend", "run_child", "summary_table", "verify", "verify_accuracy",
    "verify_throughput", "write_run_info",
]


def _clean(phase: str, bdir: Path) -> None:
    if phase == "accuracy":
        shutil.rmtree(bdir / LM_EVAL_DIR, ignore_errors=True)
    else:
        (bdir / THROUGHPUT).unlink(missing_ok=True)


def run_backend(plan: Plan, backend: str, *, force: bool, display: Display,
                env_info: dict[str, Any]) -> ArmStatus:
    cfg = plan.effective()
    bdir = plan.run_dir / backend
    status = None if force else ArmStatus.read(bdir)
    if status is None:
        status = ArmStatus(arm=backend)
    todo = []
    for phase in PHASES:
        state = status.phases.get(phase, "pending")
        if state == "complete":
            why = verify(phase, bdir, cfg)
            if why is None:
                continue
            display.say(f"[yellow]{backend}[/] {phase}: redoing ({why})")
        elif state == "running":
            display.say(f"[yellow]{backend}[/] {phase}: redoing (interrupted in an earlier run)")
        elif state == "failed":
            display.say(f"[yellow]{backend}[/] {phase}: retrying (failed in an earlier run)")
        todo.append(phase)
    if not todo:
        display.say(f"[green]{backend}[/]: complete, skipped (use --force to redo)")
        return status

    commands = {
        "accuracy": accuracy_command(cfg, backend, bdir, plan.include_path),
        "throughput": throughput_command(cfg, backend, bdir),
    }
    bdir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(bdir / COMMAND, {p: c.to_json() for p, c in commands.items()})
    atomic_write_json(bdir / ENV, {**env_info, "backend": backend,
                                   "env_overrides": commands["accuracy"].env})
    for phase in PHASES:
        if phase not in todo:
            continue
        _clean(phase, bdir)
        status.phases[phase] = "running"
        status.errors.pop(phase, None)
        status.write(bdir)
        if phase == "accuracy" and not cfg.accuracy:
            (bdir / LM_EVAL_DIR).mkdir(parents=True, exist_ok=True)
            (bdir / LM_EVAL_DIR / ACCURACY_SKIPPED).write_text("accuracy: false in the config\n")
            status.phases[phase] = "complete"
            status.write(bdir)
            display.say(f"{backend} accuracy: skipped (disabled in config)")
            continue
        if phase == "throughput" and not cfg.throughput.enabled:
            atomic_write_json(bdir / THROUGHPUT, {"engine": cfg.engine, "metrics": {},
                                                  "skipped": "throughput.enabled is false"})
            status.phases[phase] = "complete"
            status.write(bdir)
            display.say(f"{backend} throughput: skipped (disabled in config)")
            continue
        update, finish = display.phase(backend, phase)
        timeout = cfg.timeout_s if phase == "accuracy" else cfg.throughput.timeout_s
        try:
            res = run_child(commands[phase], bdir / f"{phase}.log", update, timeout,
                            results_ready=lambda p=phase: verify(p, bdir, cfg) is None,
                            grace=cfg.exit_grace_s)
        except BaseException:
            status.phases[phase] = "failed"
            status.errors[phase] = "interrupted"
            status.write(bdir)
            finish("interrupted")
            raise
        why = verify(phase, bdir, cfg) if res.ok else None
        status.notes.pop(phase, None)
        if res.ok and why is None:
            status.phases[phase] = "complete"
            finish("complete")
            extra = ""
            if res.terminated_after_results:
                status.notes[phase] = (f"results complete; the process had not exited "
                                       f"{cfg.exit_grace_s:.0f}s later: terminated")
                extra = f"; {status.notes[phase]}"
            display.say(f"[green]{backend}[/] {phase}: complete ({res.seconds:.0f}s{extra})")
        else:
            status.phases[phase] = "failed"
            status.errors[phase] = res.error_text() if not res.ok else f"outputs incomplete: {why}"
            finish("[red]failed")
            last = status.errors[phase].strip().splitlines()[-1] if status.errors[phase].strip() else ""
            display.say(f"[red]{backend}[/] {phase}: FAILED ({last}); log: {bdir / (phase + '.log')}")
        status.write(bdir)
    return status


def make_report(run_dir: Path, display: Display) -> bool:
    from vit_backend_plugin.report import build_report

    try:
        out = build_report(run_dir)
    except Exception as e:  # the data is safe on disk; say what failed
        display.say(f"[red]report: failed: {type(e).__name__}: {e}")
        return False
    paths = [run_dir / n for n in ("report.md", "report.html", "summary.json") if (run_dir / n).exists()]
    where = ", ".join(str(p) for p in paths) or str(out)
    display.say(f"[bold]report:[/] {where}")
    return True


def execute(plan: Plan, *, force: bool = False, console: Console | None = None,
            report: bool = True) -> int:
    """Run every backend of a prepared plan; returns 0 if all phases completed, else 1."""
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    write_run_info(plan)
    env_info = environment_info()
    statuses: dict[str, ArmStatus] = {}
    display = Display(console)
    display.say(f"run dir: {plan.run_dir}  engine: {plan.cfg.engine}  backends: "
                f"{', '.join(plan.backends)} (baseline {plan.cfg.baseline_name})")
    with display:
        for backend in plan.backends:
            statuses[backend] = run_backend(plan, backend, force=force, display=display,
                                            env_info=env_info)
    display.console.print(summary_table(plan, statuses))
    if report:
        make_report(plan.run_dir, display)
    return 0 if all(s.complete for s in statuses.values()) else 1
