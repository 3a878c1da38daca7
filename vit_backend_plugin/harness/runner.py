"""Runs a validated config: accuracy per arm in a fresh process, then every arm's throughput
together, rounds interleaved; resumable; crash-tolerant.

Layout and states follow :mod:`vit_backend_plugin.rundir.layout`. For each arm, in order
(baseline first):

1. ``status.json`` is read; a phase marked ``complete`` whose files do not verify (missing,
   truncated or corrupt results/samples/throughput) is demoted and redone. ``--force`` redoes all.
2. ``settings.json`` (the arm's effective settings and the versions its interpreter runs),
   ``command.json`` (exact argv + env overrides per phase) and ``env.json`` (versions, device,
   read by the arm's interpreter) are written before anything starts.
3. Each phase still to do: its old outputs are removed, state ``running`` is written, the child
   runs (output to ``<phase>.log``, progress parsed for the display), and the phase becomes
   ``complete`` only if its outputs verify, else ``failed`` with the error's last lines.
   A process killed hard leaves ``running``: the next run redoes that phase.
4. Throughput, once every arm's accuracy is done: all arms (and the A/A control, when asked)
   are timed in one session of interleaved rounds (:mod:`.speed_session`). Rounds from another
   session would not share its drift, so if any arm's throughput is to be redone, all are.

A failing arm never stops the others. The exit code comes from the report's verdicts
(:mod:`.outcome`). The parts live in their own modules: arms (:mod:`.arms`), planning
(:mod:`.plan`), verification (:mod:`.verify`), versions/device (:mod:`.env_capture`), child
processes (:mod:`.children`) and the display (:mod:`.display`); this module orchestrates.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from vit_backend_plugin.harness.arms import Arm
from vit_backend_plugin.harness.children import ChildResult, child_env, headline, run_child
from vit_backend_plugin.harness.commands import PhaseCommand, accuracy_command, throughput_command
from vit_backend_plugin.harness.config import ConfigError
from vit_backend_plugin.harness.display import Display, summary_table
from vit_backend_plugin.harness.env_capture import device_probe, environment_info
from vit_backend_plugin.harness.outcome import MEANING, exit_code
from vit_backend_plugin.harness.parallel import run_concurrently
from vit_backend_plugin.harness.placement import (
    Scheduler,
    accuracy_env,
    comma,
    devices_needed,
    engine_devices,
    throughput_env,
)
from vit_backend_plugin.harness.plan import (
    Plan,
    check_devices,
    prepare,
    print_plan,
    resolve_demo_refs,
    write_run_info,
)
from vit_backend_plugin.harness.speed_order import fits_together
from vit_backend_plugin.harness.speed_session import Member, measure
from vit_backend_plugin.harness.verify import (
    ACCURACY_SKIPPED,
    verify,
    verify_accuracy,
    verify_throughput,
)
from vit_backend_plugin.rundir.layout import (
    AA_CONTROL,
    ARM_SETTINGS,
    COMMAND,
    ENV,
    LM_EVAL_DIR,
    THROUGHPUT,
    ArmStatus,
    atomic_write_json,
)

PLACEMENT = "placement.json"  # where arms' accuracy ran and throughput was measured

# Names other code imports from here (the runner was one module before it was split).
__all__ = [
    "ACCURACY_SKIPPED", "ChildResult", "Display", "Plan", "check_devices", "child_env",
    "environment_info", "execute", "headline", "make_report", "prepare", "print_plan",
    "resolve_demo_refs",
    "run_arm", "run_child", "summary_table", "verify", "verify_accuracy",
    "verify_throughput", "write_run_info",
]


def _clean(phase: str, adir: Path) -> None:
    if phase == "accuracy":
        shutil.rmtree(adir / LM_EVAL_DIR, ignore_errors=True)
    else:
        (adir / THROUGHPUT).unlink(missing_ok=True)


def arm_commands(plan: Plan, arm: Arm, devices: list[str] | None = None) -> dict[str, PhaseCommand]:
    """Both phases' commands, with what placement adds (devices; see :mod:`.placement`)."""
    cfg, adir = plan.effective(), plan.run_dir / arm.name
    acc = accuracy_command(cfg, arm, adir, plan.include_path)
    tp = throughput_command(cfg, arm, adir)
    acc.env = {**acc.env, **accuracy_env(devices, arm.engine_args)}
    tp.env = {**tp.env, **throughput_env(plan.devices, arm.engine_args)}
    return {"accuracy": acc, "throughput": tp}


def _write_commands(adir: Path, commands: dict[str, PhaseCommand], keep_accuracy: bool) -> None:
    record = {p: c.to_json() for p, c in commands.items()}
    if keep_accuracy:  # the accuracy phase is not run now: keep where and how it did run
        try:
            old = json.loads((adir / COMMAND).read_text(encoding="utf-8"))["accuracy"]
            if isinstance(old, dict):
                record["accuracy"] = old
        except (OSError, ValueError, KeyError, TypeError):
            pass
    atomic_write_json(adir / COMMAND, record)


def run_arm(plan: Plan, arm: Arm, *, force: bool, display: Display,
            probes: dict[str, dict[str, Any]] | None = None,
            phases: tuple[str, ...] = ("accuracy",), prepare_only: bool = False,
            devices: list[str] | None = None, cancel: threading.Event | None = None,
            launch: Callable[..., ChildResult] | None = None) -> ArmStatus:
    """One arm's child-per-phase phases (accuracy; throughput is :func:`run_throughput`'s).
    ``probes``: each interpreter's
    device probe, shared by the arms. ``prepare_only``: write the arm's records even when no
    phase of ``phases`` is left (its throughput is about to run). ``devices``: the arm's device
    set (``--gpus``); ``cancel``: ends the child when set (arms side by side); ``launch``: runs
    the child elsewhere (a Ray task; :func:`run_child`'s signature)."""
    cfg = plan.effective()
    adir = plan.run_dir / arm.name
    status = None if force else ArmStatus.read(adir)
    if status is None:
        status = ArmStatus(arm=arm.name)
    todo = []
    for phase in phases:
        state = status.phases.get(phase, "pending")
        if state == "complete":
            why = verify(phase, adir, cfg)
            if why is None:
                continue
            display.say(f"[yellow]{arm.name}[/] {phase}: redoing ({why})")
        elif state == "running":
            display.say(f"[yellow]{arm.name}[/] {phase}: redoing (interrupted in an earlier run)")
        elif state == "failed":
            display.say(f"[yellow]{arm.name}[/] {phase}: retrying (failed in an earlier run)")
        todo.append(phase)
    if not todo and not prepare_only:
        display.say(f"[green]{arm.name}[/] {'/'.join(phases)}: complete, skipped "
                    "(use --force to redo)")
        return status

    commands = arm_commands(plan, arm, devices)
    adir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(adir / ARM_SETTINGS, plan.record(arm))
    _write_commands(adir, commands, keep_accuracy="accuracy" not in todo)
    probes = {} if probes is None else probes
    try:
        if arm.python not in probes:
            probes[arm.python] = device_probe(arm.python, plan.interpreters.get(arm.python))
        env_info = environment_info(probes[arm.python], child_env(commands["accuracy"]), arm.env,
                                    plan.gpus)
    except ConfigError as e:  # its interpreter answered at planning time; record why not now
        env_info = {"error": str(e)}
    atomic_write_json(adir / ENV, {**env_info, "arm": arm.name, "backend": arm.backend,
                                   "env_overrides": arm.env})
    for phase in todo:
        _clean(phase, adir)
        status.phases[phase] = "running"
        status.errors.pop(phase, None)
        status.write(adir)
        if phase == "accuracy" and not cfg.accuracy:
            (adir / LM_EVAL_DIR).mkdir(parents=True, exist_ok=True)
            (adir / LM_EVAL_DIR / ACCURACY_SKIPPED).write_text("accuracy: false in the config\n")
            status.phases[phase] = "complete"
            status.write(adir)
            display.say(f"{arm.name} accuracy: skipped (disabled in config)")
            continue
        label = arm.name if devices is None else f"{arm.name} [{comma(devices)}]"
        if devices is not None:
            display.say(f"{arm.name} {phase}: running on devices {comma(devices)}")
        update, finish = display.phase(label, phase)
        try:
            res = (launch or run_child)(
                commands[phase], adir / f"{phase}.log", update, cfg.timeout_s,
                results_ready=lambda p=phase: verify(p, adir, cfg) is None,
                grace=cfg.exit_grace_s, cancel=cancel)
            if res.where:  # a Ray node: record where it ran next to how
                commands[phase].extra["ran_on"] = res.where
                _write_commands(adir, commands, keep_accuracy=False)
        except BaseException:
            status.phases[phase] = "failed"
            status.errors[phase] = "interrupted"
            status.write(adir)
            finish("interrupted")
            raise
        why = verify(phase, adir, cfg) if res.ok else None
        status.notes.pop(phase, None)
        if res.ok and why is None:
            status.phases[phase] = "complete"
            finish("complete")
            extra = ""
            if res.terminated_after_results:
                status.notes[phase] = (f"results complete; the process had not exited "
                                       f"{cfg.exit_grace_s:.0f}s later: terminated")
                extra = f"; {status.notes[phase]}"
            display.say(f"[green]{arm.name}[/] {phase}: complete ({res.seconds:.0f}s{extra})")
        else:
            status.phases[phase] = "failed"
            status.errors[phase] = res.error_text() if not res.ok else f"outputs incomplete: {why}"
            finish("[red]failed")
            display.say(f"[red]{arm.name}[/] {phase}: FAILED ({escape(headline(status.errors[phase]))}); "
                        f"log: {adir / (phase + '.log')}")
        status.write(adir)
    return status


def _throughput_todo(plan: Plan, statuses: dict[str, ArmStatus], force: bool) -> list[str]:
    """Why the throughput session must run (empty: every arm's is complete and verifies)."""
    cfg = plan.effective()
    why = []
    for arm in plan.arms:
        st = statuses[arm.name]
        problem = verify("throughput", plan.run_dir / arm.name, cfg)
        if force or st.phases.get("throughput") != "complete" or problem is not None:
            why.append(f"{arm.name}: {problem or st.phases.get('throughput', 'pending')}")
    if cfg.throughput.enabled and cfg.throughput.aa_control:
        problem = verify("throughput", plan.run_dir / AA_CONTROL, cfg)
        if problem is not None:
            why.append(f"A/A control: {problem}")
    return why


def run_throughput(plan: Plan, statuses: dict[str, ArmStatus], *, force: bool, display: Display,
                   probes: dict[str, dict[str, Any]]) -> None:
    """Every arm's throughput in one session of interleaved rounds (or none, if all verify)."""
    cfg = plan.effective()
    why = _throughput_todo(plan, statuses, force)
    if not why:
        display.say("throughput: complete for every arm, skipped (use --force to redo)")
        return
    if cfg.throughput.enabled:
        display.say("throughput: timing every arm together, rounds interleaved "
                    f"(to do: {'; '.join(why)})")
    members = []
    for arm in plan.arms:
        st = run_arm(plan, arm, force=False, display=display, probes=probes, phases=(),
                     prepare_only=True)  # the arm's records, as it will run
        _clean("throughput", plan.run_dir / arm.name)
        st.phases["throughput"] = "running"
        st.errors.pop("throughput", None)
        st.notes.pop("throughput", None)
        if not cfg.throughput.enabled:
            atomic_write_json(plan.run_dir / arm.name / THROUGHPUT, {
                "engine": cfg.engine, "metrics": {}, "skipped": "throughput.enabled is false"})
            st.phases["throughput"] = "complete"
        st.write(plan.run_dir / arm.name)
        statuses[arm.name] = st
        adir = plan.run_dir / arm.name
        members.append(Member(arm.name, arm_commands(plan, arm)["throughput"], adir / THROUGHPUT,
                              adir / "throughput.log"))
    if not cfg.throughput.enabled:
        display.say("throughput: skipped (disabled in config)")
        return
    base = next(a for a in plan.arms if a.name == cfg.baseline_name)
    aa_dir = plan.run_dir / AA_CONTROL
    shutil.rmtree(aa_dir, ignore_errors=True)
    if cfg.throughput.aa_control:
        aa_cmd = throughput_command(cfg, base, aa_dir)
        aa_cmd.env = {**aa_cmd.env, **throughput_env(plan.devices, base.engine_args)}
        members.append(Member(AA_CONTROL, aa_cmd, aa_dir / THROUGHPUT,
                              aa_dir / "throughput.log", control_of=base.name))
    together = cfg.throughput.together
    if together is None:
        together = fits_together(bool(plan.gpus), [
            plan_arm.engine_args.get("gpu_memory_utilization") for plan_arm in
            [*plan.arms, *([base] if cfg.throughput.aa_control else [])]])
    display.say(f"throughput: {cfg.throughput.repeats} rounds per arm, "
                + ("all engines alive together" if together else
                   f"one engine at a time ({cfg.throughput.visits} visits per arm)")
                + f"; {throughput_where(plan)}")
    update, finish = display.phase("all arms", "throughput")
    try:
        outcomes = measure(members, cfg.throughput.model_dump(mode="json"), together,
                           grace=cfg.exit_grace_s, on_round=update,
                           say=lambda text: display.say(escape(text)))
    except BaseException:
        for arm in plan.arms:
            statuses[arm.name].phases["throughput"] = "failed"
            statuses[arm.name].errors["throughput"] = "interrupted"
            statuses[arm.name].write(plan.run_dir / arm.name)
        finish("interrupted")
        raise
    finish("complete" if all(o.error is None for o in outcomes.values()) else "[red]failed")
    for name, o in outcomes.items():
        if name == AA_CONTROL:
            if o.error is not None:
                display.say(f"[red]A/A control[/] throughput: FAILED ({escape(headline(o.error))})")
            continue
        st = statuses[name]
        adir = plan.run_dir / name
        problem = verify("throughput", adir, cfg) if o.error is None else None
        if o.error is None and problem is None:
            st.phases["throughput"] = "complete"
            display.say(f"[green]{name}[/] throughput: complete ({o.seconds:.0f}s)")
        else:
            st.phases["throughput"] = "failed"
            st.errors["throughput"] = o.error or f"outputs incomplete: {problem}"
            display.say(f"[red]{name}[/] throughput: FAILED "
                        f"({escape(headline(st.errors['throughput']))}); log: {adir / 'throughput.log'}")
        st.write(adir)


def accuracy_side_by_side(plan: Plan, *, force: bool, display: Display,
                          probes: dict[str, dict[str, Any]]) -> dict[str, ArmStatus]:
    """Every arm's accuracy phase at once: on its own devices of ``plan.devices`` as they free
    up, or as Ray tasks (``plan.ray_address``). One arm's crash never stops the others."""
    arms = {a.name: a for a in plan.arms}
    launchers: dict[str, Callable[..., ChildResult]] = {}
    scheduler = None
    if plan.ray_address is not None:
        from vit_backend_plugin.harness import ray_arms

        cluster = ray_arms.connect(plan.ray_address)
        display.say(f"ray: {cluster.describe()}")
        try:
            ray_arms.check_fits(cluster, {a.name: devices_needed(a.engine_args) for a in plan.arms})
        except ConfigError:
            ray_arms.disconnect()
            raise
        for a in plan.arms:
            launchers[a.name] = ray_arms.launcher(cluster, a.name, devices_needed(a.engine_args))
    else:
        scheduler = Scheduler({a.name: devices_needed(a.engine_args) for a in plan.arms},
                              list(plan.devices or []))
        display.say(f"arms side by side on devices {comma(plan.devices or [])}")

    def one(name: str, devices: list[str] | None, cancel: threading.Event) -> ArmStatus:
        return run_arm(plan, arms[name], force=force, display=display, probes=probes,
                       phases=("accuracy",), devices=devices, cancel=cancel,
                       launch=launchers.get(name))

    def crashed(name: str, error: str) -> ArmStatus:
        adir = plan.run_dir / name
        st = ArmStatus.read(adir) or ArmStatus(arm=name)
        st.phases["accuracy"] = "failed"
        st.errors["accuracy"] = error.strip()[-4000:]
        st.write(adir)
        display.say(f"[red]{name}[/] accuracy: FAILED ({escape(headline(error))})")
        return st

    try:
        return run_concurrently(plan.arm_names, one, scheduler, crashed)
    finally:
        if plan.ray_address is not None:
            ray_arms.disconnect()


def throughput_where(plan: Plan) -> str:
    """Where the throughput session runs: one device set, the same for every arm."""
    import socket

    if plan.devices is None:
        devices = "the first visible device"
    else:
        devices = "devices " + comma(plan.devices[:max(engine_devices(a.engine_args)
                                                       for a in plan.arms)])
    return f"measured on {socket.gethostname()}, {devices}, with no other arm running"


def write_placement(plan: Plan) -> None:
    """placement.json: where arms' accuracy ran and where throughput was measured."""
    atomic_write_json(plan.run_dir / PLACEMENT, {
        "mode": "ray" if plan.ray_address else ("devices" if plan.devices else "one device"),
        "devices": plan.devices, "ray_address": plan.ray_address,
        "throughput": throughput_where(plan),
    })


def make_report(run_dir: Path, display: Display) -> dict[str, Any] | None:
    """Build the report; its summary (read back from summary.json), or None if it failed."""
    import json

    from vit_backend_plugin.report import build_report

    try:
        paths = build_report(run_dir)
        summary = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    except Exception as e:  # the data is safe on disk; say what failed
        display.say(f"[red]report: failed: {escape(f'{type(e).__name__}: {e}')}")
        return None
    display.say(f"[bold]report:[/] {', '.join(str(p) for p in paths.values())}")
    return summary


def execute(plan: Plan, *, force: bool = False, console: Console | None = None,
            report: bool = True, no_fail: bool = False, say_exit: bool = True) -> int:
    """Run every arm of a prepared plan, then the report; the exit code of :mod:`.outcome`."""
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    write_run_info(plan)
    statuses: dict[str, ArmStatus] = {}
    display = Display(console)
    display.say(f"run dir: {plan.run_dir}  engine: {plan.cfg.engine}  arms: "
                f"{', '.join(plan.arm_names)} (baseline {plan.cfg.baseline_name})")
    probes: dict[str, dict[str, Any]] = {}
    write_placement(plan)
    with display:
        if plan.devices is None and plan.ray_address is None:  # today's: one arm at a time
            for arm in plan.arms:
                statuses[arm.name] = run_arm(plan, arm, force=force, display=display,
                                             probes=probes, phases=("accuracy",))
        else:
            statuses.update(accuracy_side_by_side(plan, force=force, display=display,
                                                  probes=probes))
        # only now, with no arm's accuracy running anywhere on this host
        run_throughput(plan, statuses, force=force, display=display, probes=probes)
    display.console.print(summary_table(plan, statuses))
    summary = make_report(plan.run_dir, display) if report else None
    code = exit_code({n: s.complete for n, s in statuses.items()}, summary,
                     accuracy=plan.cfg.accuracy, report_failed=report and summary is None,
                     no_fail=no_fail)
    if say_exit:  # the demo says its own (it exits by the verdicts it expects)
        display.say(f"exit code {code}" + (" (--no-fail)" if no_fail else f" ({MEANING[code]})"))
    return code
