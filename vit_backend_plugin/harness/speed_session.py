"""The throughput phase of all arms at once: workers, interleaved rounds, throughput.json.

Each arm (and the A/A control: a second engine of the baseline) gets a worker process
(:mod:`vit_backend_plugin.harness.speed_worker`) that builds its engine, warms it up and then
times one round per request. Together (every engine fits the device): the workers are started
one after another (vLLM sizes its memory from what is free at start) and all stay alive while
the rounds run in :func:`~vit_backend_plugin.harness.speed_order.round_order`. Apart: one worker
at a time, visiting the arms in :func:`~vit_backend_plugin.harness.speed_order.visit_order`.
Either way a worker that fails to start, dies or outruns its time fails its own arm only; the
others go on. Ctrl-C ends every worker and its engine.
"""

from __future__ import annotations

import collections
import json
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vit_backend_plugin.harness.children import ChildResult, _kill_group, child_env
from vit_backend_plugin.harness.commands import PhaseCommand
from vit_backend_plugin.harness.speed_order import round_order, visit_order
from vit_backend_plugin.harness.speed_worker import PREFIX
from vit_backend_plugin.harness.throughput import median_metrics, metric_keys
from vit_backend_plugin.rundir.layout import atomic_write_json

DEFAULT_TIMEOUT_S = 1800.0  # a worker's start + warm-up, and one round, when the config sets none


class WorkerError(RuntimeError):
    """A worker that failed: the text is the phase's error (head, root cause, last lines)."""


@dataclass
class Member:
    name: str  # an arm, or the A/A control
    command: PhaseCommand
    out: Path  # its throughput.json
    log: Path
    control_of: str | None = None  # the A/A control: the arm it repeats


@dataclass
class Outcome:
    rounds: dict[int, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0  # wall time of its worker(s), start to stop


class Worker:
    """One worker process; its output goes to the member's log, its protocol lines to a queue."""

    def __init__(self, member: Member, append: bool):
        self.member = member
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.started = time.monotonic()
        member.log.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(member.log, "a" if append else "w", encoding="utf-8", errors="replace")
        self.log.write("$ " + " ".join(member.command.argv) + "\n")
        self.log.flush()
        # stdout: the protocol alone (the worker sends everything else to stderr: the log)
        self.proc = subprocess.Popen(
            member.command.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=child_env(member.command), start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read_protocol, daemon=True)
        self.logger = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()
        self.logger.start()

    def _read_protocol(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            try:
                msg = json.loads(line[len(PREFIX):]) if line.startswith(PREFIX) else None
            except ValueError:
                msg = None
            if isinstance(msg, dict):
                self.messages.put(msg)
            else:  # a worker that is not ours, or broken: keep what it said
                self._log_line(line)
        self.messages.put(None)  # end of the channel: the process is gone (or going)

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            self._log_line(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _log_line(self, line: str) -> None:
        if not self.log.closed:
            self.log.write(line + "\n")
            self.log.flush()
        if line.strip() and "%|" not in line:
            self.tail.append(line)

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        """The next protocol message with ``key``; WorkerError if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise WorkerError(self._error(timed_out=True)) from None
            if msg is None:
                self.proc.wait(timeout=30)
                self.logger.join(timeout=5)  # its last words (an engine core may hold stderr)
                raise WorkerError(self._error())
            if key in msg:
                return msg

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it has died: expect() reports why

    def round(self, r: int, timeout: float) -> dict[str, Any]:
        self.send({"round": r})
        msg = self.expect("round", timeout)
        return msg["metrics"]

    def stop(self, grace: float) -> None:
        """Ask it to end; whatever is left of its process group after ``grace`` is killed."""
        self.send({"stop": True})
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=grace)
        except (subprocess.TimeoutExpired, OSError):
            pass
        self.kill()

    def kill(self) -> None:
        _kill_group(self.proc)  # the engine core processes too
        self.reader.join(timeout=10)
        self.logger.join(timeout=10)
        self.log.close()

    def _error(self, timed_out: bool = False) -> str:
        rc = self.proc.poll()
        return ChildResult(rc if rc is not None else -1, time.monotonic() - self.started,
                           list(self.tail), timed_out=timed_out).error_text()


def measure(members: list[Member], settings: dict[str, Any], together: bool, *,
            grace: float, on_round=None, say=print) -> dict[str, Outcome]:
    """Time every member's rounds, interleaved; write each complete member's throughput.json."""
    rounds = int(settings["repeats"])
    limit = float(settings.get("timeout_s") or DEFAULT_TIMEOUT_S)
    out = {m.name: Outcome() for m in members}
    by_name = {m.name: m for m in members}
    order: list[tuple[int, str]] = []
    workers: dict[str, Worker] = {}

    def start(m: Member, append: bool) -> Worker | None:
        w = Worker(m, append)
        try:
            out[m.name].info = w.expect("ready", limit)["ready"]
        except WorkerError as e:
            fail(m.name, w, str(e))
            return None
        say(f"{m.name} throughput: engine ready ({time.monotonic() - w.started:.0f}s)")
        return w

    def fail(name: str, w: Worker, text: str) -> None:
        out[name].error = text
        out[name].seconds += time.monotonic() - w.started
        w.kill()
        workers.pop(name, None)

    def timed(name: str, w: Worker, r: int) -> bool:
        try:
            metrics = w.round(r, limit)
        except WorkerError as e:
            fail(name, w, str(e))
            return False
        out[name].rounds[r] = {**metrics, "round": r, "slot": len(order)}
        order.append((r, name))
        if on_round is not None:
            on_round(len(order), rounds * len(members))
        return True

    def finish(name: str, w: Worker) -> None:
        w.stop(grace)
        out[name].seconds += time.monotonic() - w.started
        workers.pop(name, None)

    try:
        if together:
            for m in members:
                w = start(m, append=False)
                if w is not None:
                    workers[m.name] = w
            for r, name in round_order([m.name for m in members], rounds):
                if name in workers:
                    timed(name, workers[name], r)
            for name, w in list(workers.items()):
                finish(name, w)
        else:
            seen: set[str] = set()
            for name, block in visit_order([m.name for m in members], rounds, settings["visits"]):
                if out[name].error is not None:
                    continue
                w = start(by_name[name], append=name in seen)
                seen.add(name)
                if w is None:
                    continue
                workers[name] = w
                if all(timed(name, w, r) for r in block):
                    finish(name, w)
    except BaseException:  # Ctrl-C: no engine left behind
        for w in workers.values():
            w.kill()
        raise
    for m in members:
        o = out[m.name]
        if o.error is None and len(o.rounds) == rounds:
            atomic_write_json(m.out, document(m, o, settings, together, order))
        elif o.error is None:
            o.error = f"{len(o.rounds)} of {rounds} rounds timed"
    return out


def document(m: Member, o: Outcome, settings: dict[str, Any], together: bool,
             order: list[tuple[int, str]]) -> dict[str, Any]:
    """throughput.json (its shape: :mod:`vit_backend_plugin.rundir.layout`)."""
    spec = json.loads(m.command.argv[m.command.argv.index("--spec") + 1])
    repeats = [o.rounds[r] for r in sorted(o.rounds)]
    med = median_metrics([{k: v for k, v in x.items() if k not in ("round", "slot")}
                          for x in repeats])
    doc = {
        "engine": spec["engine"],
        "mode": settings.get("mode", "offline"),
        "arm": m.name,
        "backend": spec["backend"],
        "metrics": {k: med.get(k) for k in metric_keys(spec["engine"])},
        "repeats": repeats,
        "interleave": {"together": together, "rounds": len(repeats),
                       "order": [list(x) for x in order]},
        "settings": settings,
        "worker_seconds": round(o.seconds, 1),
        **o.info,
    }
    if m.control_of is not None:
        doc["control_of"] = m.control_of
    return doc
