"""One phase's child process: its output streamed to a log, progress parsed for the display,
and ended (with everything it spawned) when it hangs after its results or runs out of time."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vit_backend_plugin.harness.commands import PhaseCommand

_TQDM = re.compile(r"(\d+)/(\d+) \[")
_OWN_PROGRESS = re.compile(r"^VIT_PARITY_PROGRESS (\d+)/(\d+)")
_ERROR_LINES = 25
# An exception line ("ValueError: ...") once vLLM's log prefix ("(Worker pid=7) ERROR 12-06
# 20:14:51 [file.py:953] ") and torch's "[rank0]: " are taken off.
_LOG_PREFIX = re.compile(r"^(?:\([^)]*pid=\d+\)\s+)?(?:[A-Z]+ \d\d-\d\d [\d:]+ \[[^\]]*\]\s+)?"
                         r"(?:\[rank\d+\]:\s*)?")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception)(?::\s.*)?$")
CAUSE = "cause: "  # error_text's line for the root cause, when it is above the last lines


def exception_lines(lines: list[str]) -> list[str]:
    """The exception lines among a child's output, in order, without log prefixes."""
    out = []
    for line in lines:
        text = _LOG_PREFIX.sub("", line, count=1).strip()
        if _EXCEPTION.match(text):
            out.append(text)
    return out


def headline(error_text: str) -> str:
    """One line for a failed phase: the root cause where error_text names one, else its last line."""
    lines = error_text.strip().splitlines()
    cause = next((ln for ln in lines if ln.startswith(CAUSE)), None)
    return cause[len(CAUSE):] if cause else (lines[-1] if lines else "")


@dataclass
class ChildResult:
    returncode: int
    seconds: float
    tail: list[str] = field(default_factory=list)
    timed_out: bool = False
    terminated_after_results: bool = False  # results were complete; the process would not exit
    where: dict = field(default_factory=dict)  # where it ran, when not here (a Ray node)

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 or self.terminated_after_results) and not self.timed_out

    def error_text(self) -> str:
        """The head, the root cause (the first exception line of the output kept: a vLLM engine
        that fails to start logs the reason in its worker, far above the parent's "Engine core
        initialization failed. See root cause above"), then the last lines."""
        head = (f"crashed: no complete results after the time limit ({self.seconds:.0f}s): killed"
                if self.timed_out else f"exit code {self.returncode}")
        last = self.tail[-_ERROR_LINES:]
        causes = exception_lines(self.tail)
        cause = [CAUSE + causes[0][:1000]] if causes else []
        body = "\n".join(last)[-(4000 - sum(map(len, cause)) - len(head) - 2):]
        return "\n".join([head, *cause, body])


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
              poll: float = 1.0, cancel: threading.Event | None = None) -> ChildResult:
    """Run one phase's process; stream its output to log_path; report tqdm-style progress.

    ``results_ready()`` (polled while the child runs) says its outputs are complete: a child
    still alive ``grace`` seconds after that is terminated and the result counts as complete.
    Past ``timeout`` without complete results the child is killed (``timed_out``).
    ``cancel`` (arms running in threads): once set, the child's group is ended and
    KeyboardInterrupt raised here, as Ctrl-C does in the main thread."""
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
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt("cancelled")  # the handler below ends the group
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
