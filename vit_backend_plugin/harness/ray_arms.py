"""`--ray-address`: each arm's accuracy phase as a Ray task holding the GPUs the arm needs.

The task runs the arm's usual child (:func:`.children.run_child`, the same command) on the node
Ray picks; Ray sets its ``CUDA_VISIBLE_DEVICES``. Its outputs and log go straight into the run
dir, so the run dir must be on a filesystem every node shares (and every node must have the same
interpreters and this package). The driver keeps status.json as on one host (a rerun resumes
the same way), follows progress from the log on the shared filesystem, and on Ctrl-C cancels
the tasks (each ends its child's process group). Throughput is measured afterwards on the
driver's host, as without Ray.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vit_backend_plugin.harness.children import ChildResult, _consume, run_child
from vit_backend_plugin.harness.commands import PhaseCommand
from vit_backend_plugin.harness.config import ConfigError

_CANCEL_WAIT_S = 60  # a cancelled task ends its child's group (up to 15 s) before it returns


@dataclass
class Cluster:
    address: str
    node_gpus: list[float]  # GPUs of each alive node

    @property
    def has_gpus(self) -> bool:
        return any(self.node_gpus)

    def describe(self) -> str:
        gpus = ", ".join(f"{g:g}" for g in self.node_gpus)
        return (f"{self.address}: {len(self.node_gpus)} node(s), GPUs per node: {gpus}"
                + ("" if self.has_gpus else " (no GPU: arms run on CPU, one CPU each)"))


def connect(address: str) -> Cluster:
    """``local`` starts a Ray instance here (ended with the run); ``auto`` or host:port joins
    a running cluster."""
    import ray

    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ConfigError(f"--ray-address {address}: cannot connect: {e}") from None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return Cluster(address, [float(n.get("Resources", {}).get("GPU", 0)) for n in nodes])


def disconnect() -> None:
    import ray

    ray.shutdown()


def check_fits(cluster: Cluster, needs: dict[str, int]) -> None:
    """An arm needing more GPUs than any one node has would wait forever: one line instead."""
    if not cluster.has_gpus:
        return
    most = max(cluster.node_gpus)
    for arm, n in needs.items():
        if n > most:
            raise ConfigError(f"arm {arm!r} needs {n} GPUs on one node and the Ray cluster's "
                              f"largest node has {most:g}")


def _run_on_node(cmd: dict[str, Any], log_path: str, timeout: float | None, grace: float,
                 results_ready) -> ChildResult:
    """The Ray task: the arm's child, on this node, with the GPUs Ray gave the task."""
    import ray

    res = run_child(PhaseCommand(**cmd), Path(log_path), None, timeout, results_ready, grace)
    res.where = {"ray_node": ray.util.get_node_ip_address(), "host": socket.gethostname(),
                 "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                 "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
    return res


def launcher(cluster: Cluster, arm: str, needed: int):
    """A :func:`run_child` stand-in that runs the child as a Ray task of ``needed`` GPUs."""
    import ray

    remote = ray.remote(_run_on_node).options(
        num_gpus=needed if cluster.has_gpus else 0, num_cpus=1, max_retries=0,
        name=f"vit-parity:{arm}")

    def launch(cmd: PhaseCommand, log_path: Path, on_progress=None, timeout=None,
               results_ready=None, grace: float = 60.0, cancel: threading.Event | None = None,
               poll: float = 1.0) -> ChildResult:
        Path(log_path).unlink(missing_ok=True)  # progress is followed from the new one
        ref = remote.remote(
            {"argv": cmd.argv, "env": cmd.env}, str(log_path), timeout, grace, results_ready)
        follow = _LogFollower(Path(log_path), on_progress)
        while True:
            done, _ = ray.wait([ref], timeout=poll)
            follow.read()
            if done:
                return ray.get(ref)
            if cancel is not None and cancel.is_set():
                ray.cancel(ref)  # KeyboardInterrupt in the task: run_child ends its group
                ray.wait([ref], timeout=_CANCEL_WAIT_S)
                raise KeyboardInterrupt("cancelled")

    return launch


class _LogFollower:
    """Progress from the child's log as it grows on the shared filesystem."""

    def __init__(self, path: Path, on_progress) -> None:
        self.path, self.on_progress, self.pos, self.buf = path, on_progress, 0, ""
        self.tail: deque[str] = deque(maxlen=10)
        self.started = time.monotonic()

    def read(self) -> None:
        if self.on_progress is None:
            return
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                f.seek(self.pos)
                chunk = f.read()
                self.pos = f.tell()
        except OSError:
            return
        *lines, self.buf = (self.buf + chunk).replace("\r", "\n").split("\n")
        for line in lines:
            _consume(line, self.tail, self.on_progress)
