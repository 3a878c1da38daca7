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

A failing backend never stops the others.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from vit_backend_plugin.harness.commands import (
    PhaseCommand,
    accuracy_command,
    throughput_command,
)
from vit_backend_plugin.harness.config import DEMO_SCHEME, Config, ConfigError, validate_environment
from vit_backend_plugin.rundir.layout import (
    COMMAND,
    ENV,
    LM_EVAL_DIR,
    PHASES,
    THROUGHPUT,
    BackendStatus,
    RunInfo,
    atomic_write_json,
)

# Config keys that do not change what a backend's results mean (a rerun may change them freely).
_NEUTRAL_KEYS = {"name", "description", "backends", "baseline", "output_dir", "run_id", "parity",
                 "timeout_s", "exit_grace_s", "env", "_resolved"}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TQDM = re.compile(r"(\d+)/(\d+) \[")
_OWN_PROGRESS = re.compile(r"^VIT_PARITY_PROGRESS (\d+)/(\d+)")
_ERROR_LINES = 25


# --------------------------------------------------------------------------- planning
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


# --------------------------------------------------------------------------- verification
def _lm_eval_files(bdir: Path) -> tuple[list[Path], list[Path]]:
    root = bdir / LM_EVAL_DIR
    return sorted(root.rglob("results_*.json")), sorted(root.rglob("samples_*.jsonl"))


def verify_accuracy(bdir: Path, tasks: list[str]) -> str | None:
    """None if lm-eval's results and per-item samples are all there and parse; else why not."""
    results, _ = _lm_eval_files(bdir)
    if not results:
        return "no lm-eval results file"
    if len(results) > 1:
        return f"{len(results)} lm-eval results files (expected one)"
    try:
        data = json.loads(results[0].read_text())
    except (OSError, ValueError) as e:
        return f"corrupt results file {results[0].name}: {e}"
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        return f"results file {results[0].name} has no 'results' section"
    known = set(data["results"]) | set(data.get("groups") or {})
    missing = [t for t in tasks if t not in known]
    if missing:
        return f"results file lacks task(s) {', '.join(missing)}"
    n_samples = data.get("n-samples") or {}
    stamp = results[0].name[len("results_"):-len(".json")]  # lm-eval names both with one timestamp
    for leaf in data.get("configs") or {}:
        sample_file = results[0].parent / f"samples_{leaf}_{stamp}.jsonl"
        try:
            lines = [json.loads(x) for x in sample_file.read_text().splitlines() if x.strip()]
        except FileNotFoundError:
            return f"no samples file for task {leaf}"
        except (OSError, ValueError) as e:
            return f"corrupt samples file {sample_file.name}: {e}"
        want = (n_samples.get(leaf) or {}).get("effective")
        if want is not None and len(lines) != want:
            return f"samples file for {leaf} has {len(lines)} items, results say {want}"
    return None


def verify_throughput(bdir: Path, enabled: bool) -> str | None:
    path = bdir / THROUGHPUT
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return "no throughput.json"
    except (OSError, ValueError) as e:
        return f"corrupt throughput.json: {e}"
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        return "throughput.json has no metrics"
    if data.get("skipped"):
        return "throughput was skipped but is now enabled" if enabled else None
    if not data["metrics"] or all(v is None for v in data["metrics"].values()):
        return "throughput.json has no measured values"
    return None


ACCURACY_SKIPPED = "SKIPPED"  # lm_eval/SKIPPED: the config turned the accuracy phase off


def verify(phase: str, bdir: Path, cfg: Config) -> str | None:
    if phase == "accuracy":
        if not cfg.accuracy:
            ok = (bdir / LM_EVAL_DIR / ACCURACY_SKIPPED).is_file()
            return None if ok else "accuracy was run but is now disabled"
        return verify_accuracy(bdir, cfg.tasks)
    return verify_throughput(bdir, cfg.throughput.enabled)


# --------------------------------------------------------------------------- environment info
_PACKAGES = ("torch", "torchvision", "transformers", "tokenizers", "vllm", "lm_eval", "datasets",
             "triton", "flash-attn", "xformers", "flashinfer-python", "pydantic", "numpy",
             "vit-backend-plugin")


def environment_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    device: dict[str, Any] = {"machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        import torch

        device["torch_cuda"] = torch.version.cuda
        device["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            device["gpus"] = [
                {"name": torch.cuda.get_device_name(i),
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
                for i in range(torch.cuda.device_count())
            ]
    except Exception as e:  # torch missing or broken: still record what we can
        device["torch_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
    watched = {k: v for k, v in os.environ.items()
               if k.startswith(("VLLM_", "CUDA_VISIBLE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                "TRANSFORMERS_OFFLINE", "VIT_"))}
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "device": device,
        "environment": watched,
    }


# --------------------------------------------------------------------------- child processes
@dataclass
class ChildResult:
    returncode: int
    seconds: float
    tail: list[str] = field(default_factory=list)
    timed_out: bool = False
    terminated_after_results: bool = False  # results were complete; the process would not exit

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 or self.terminated_after_results) and not self.timed_out

    def error_text(self) -> str:
        head = (f"crashed: no complete results after the time limit ({self.seconds:.0f}s): killed"
                if self.timed_out else f"exit code {self.returncode}")
        return "\n".join([head, *self.tail[-_ERROR_LINES:]])[-4000:]


def child_env(cmd: PhaseCommand) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VIT_ATTN_BACKEND"}
    env.update(cmd.env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    """End the child and everything in its process group, and wait until they are gone: a
    vLLM engine-core process outliving lm-eval keeps its GPU memory, and the next backend's
    engine then fails to start (seen on the H100)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader; the rest of the group is reaped by init
            if proc.returncode is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.1)


def run_child(cmd: PhaseCommand, log_path: Path, on_progress=None,
              timeout: float | None = None, results_ready=None, grace: float = 60.0,
              poll: float = 1.0) -> ChildResult:
    """Run one phase's process; stream its output to log_path; report tqdm-style progress.

    ``results_ready()`` (polled while the child runs) says its outputs are complete: a child
    still alive ``grace`` seconds after that is terminated and the result counts as complete.
    Past ``timeout`` without complete results the child is killed (``timed_out``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: collections.deque[str] = collections.deque(maxlen=200)
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        log.write("$ " + " ".join(cmd.argv) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env(cmd),
            start_new_session=True, stdin=subprocess.DEVNULL,
        )

        def reader() -> None:
            buf = b""
            assert proc.stdout is not None
            while True:
                chunk = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
                if not chunk:
                    break
                log.write(chunk.decode("utf-8", "replace"))
                log.flush()
                buf += chunk
                *lines, buf = re.split(rb"[\r\n]", buf)
                for raw in lines:
                    _consume(raw.decode("utf-8", "replace"), tail, on_progress)
            if buf:
                _consume(buf.decode("utf-8", "replace"), tail, on_progress)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        timed_out = terminated = False
        ready_at: float | None = None
        try:
            while True:
                try:
                    proc.wait(timeout=poll)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if ready_at is None and results_ready is not None and results_ready():
                    ready_at = now
                if ready_at is not None and now - ready_at >= grace:
                    terminated = True
                    log.write(f"\n[vit-parity] results complete; process alive {grace:.0f}s later: "
                              "terminated\n")
                    _kill_group(proc)
                    break
                if ready_at is None and timeout is not None and now - start >= timeout:
                    timed_out = True
                    _kill_group(proc)
                    break
        except BaseException:  # Ctrl-C: take the child (and anything it spawned) down with us
            _kill_group(proc)
            raise
        t.join(timeout=10)
    return ChildResult(proc.returncode if proc.returncode is not None else -1,
                       time.monotonic() - start, list(tail), timed_out, terminated)


def _consume(line: str, tail: collections.deque, on_progress) -> None:
    line = line.rstrip()
    if not line:
        return
    m = _OWN_PROGRESS.match(line)
    if m is None and ("Running generate_until" in line or "Running loglikelihood" in line):
        m = _TQDM.search(line)
    if m is not None:
        if on_progress is not None:
            on_progress(int(m.group(1)), int(m.group(2)))
        return
    if _TQDM.search(line) and "%|" in line:
        return  # other progress bars: not useful in an error tail
    tail.append(line)


# --------------------------------------------------------------------------- display
class Display:
    """Rich progress (backend, phase, items done) on a terminal; plain lines otherwise."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.fields[backend]:<22}"),
            TextColumn("{task.fields[phase]:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.live,
        )

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def say(self, text: str) -> None:
        self.progress.console.print(text) if self.live else self.console.print(text, highlight=False)

    def phase(self, backend: str, phase: str):
        task = self.progress.add_task("", total=None, backend=backend, phase=phase, state="running")

        def update(done: int, total: int) -> None:
            self.progress.update(task, completed=done, total=total)

        def finish(state: str) -> None:
            t = self.progress.tasks[[x.id for x in self.progress.tasks].index(task)]
            total = t.total if t.total is not None else 1
            self.progress.update(task, state=state, total=total,
                                 completed=total if state == "complete" else t.completed)

        return update, finish


# --------------------------------------------------------------------------- running
def _clean(phase: str, bdir: Path) -> None:
    if phase == "accuracy":
        shutil.rmtree(bdir / LM_EVAL_DIR, ignore_errors=True)
    else:
        (bdir / THROUGHPUT).unlink(missing_ok=True)


def run_backend(plan: Plan, backend: str, *, force: bool, display: Display,
                env_info: dict[str, Any]) -> BackendStatus:
    cfg = plan.effective()
    bdir = plan.run_dir / backend
    status = None if force else BackendStatus.read(bdir)
    if status is None:
        status = BackendStatus(backend=backend)
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
        backends=plan.backends,
        baseline=cfg.baseline_name,
        tasks=list(cfg.tasks),
        model=cfg.model,
        config={
            **cfg.model_dump(mode="json"),
            "_resolved": {"model": plan.model, "include_path": plan.include_path},
        },
    )
    info.write(plan.run_dir)


def summary_table(plan: Plan, statuses: dict[str, BackendStatus]) -> Table:
    t = Table(title=f"run {plan.run_dir}", show_lines=False)
    t.add_column("backend")
    for p in PHASES:
        t.add_column(p)
    t.add_column("note")
    for b in plan.backends:
        st = statuses.get(b)
        if st is None:
            t.add_row(b, *["-"] * len(PHASES), "not run")
            continue
        cells = []
        for p in PHASES:
            s = st.phases.get(p, "pending")
            color = {"complete": "green", "failed": "red"}.get(s, "yellow")
            cells.append(f"[{color}]{s}[/]")
        note = ""
        if st.errors:
            ph, err = next(iter(st.errors.items()))
            note = f"{ph}: {err.strip().splitlines()[-1][:80]}" if err.strip() else ph
        elif st.notes:
            ph, text = next(iter(st.notes.items()))
            note = f"{ph}: {text}"
        t.add_row(b + (" (baseline)" if b == plan.cfg.baseline_name else ""), *cells, note)
    return t


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
    statuses: dict[str, BackendStatus] = {}
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
