"""Which devices each arm's accuracy phase gets, and in which order arms start (pure: no
processes, no GPUs; the runner and the tests drive it with device lists).

An arm needs ``tensor_parallel_size × pipeline_parallel_size × data_parallel_size`` devices
(engine_args; lm-eval's ``vllm-vlm`` runs ``data_parallel_size`` replicas of a
``tensor_parallel_size`` engine). Arms start in config order as devices free up; one that does
not fit yet waits while later ones that fit start (they all finish, so nothing waits forever).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vit_backend_plugin.harness.config import ConfigError

# For tests and CPU machines only: device ids to place arms on instead of nvidia-smi's GPUs
# ("0,1,2,3"). Children get them as CUDA_VISIBLE_DEVICES like real ones.
FAKE_GPUS_ENV = "VIT_PARITY_FAKE_GPUS"
DP_REPLICA_GPUS_ENV = "VIT_PARITY_DP_REPLICA_GPUS"
PARALLEL_KEYS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")


def devices_needed(engine_args: dict[str, Any]) -> int:
    n = 1
    for key in PARALLEL_KEYS:
        v = engine_args.get(key, 1)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"engine_args.{key} must be a whole number >= 1, not {v!r}")
        n *= v
    return n


def engine_devices(engine_args: dict[str, Any]) -> int:
    """Devices of one engine (the throughput phase runs one engine: no data parallelism)."""
    return devices_needed({k: v for k, v in engine_args.items() if k != "data_parallel_size"})


def visible_devices(gpus: list[dict[str, str]] | None, environ=os.environ) -> list[str]:
    """The device ids arms may use: the test hook's, else CUDA_VISIBLE_DEVICES's (a subset the
    caller chose), else one per GPU nvidia-smi lists."""
    for var in (FAKE_GPUS_ENV, "CUDA_VISIBLE_DEVICES"):
        raw = environ.get(var)
        if raw is not None:
            return [d.strip() for d in raw.split(",") if d.strip()]
    return [str(i) for i in range(len(gpus or []))]


def select_devices(spec: str | None, visible: Sequence[str]) -> list[str] | None:
    """``--gpus``: None (the default: today's one device, no placement), ``all`` or a count.
    One-line ConfigError if the machine has fewer."""
    if spec is None:
        return None
    spec = spec.strip().lower()
    if spec == "all":
        if not visible:
            raise ConfigError(f"--gpus all: no GPU found (nvidia-smi lists none; {FAKE_GPUS_ENV} "
                              "gives device ids for tests/CPU)")
        return list(visible)
    try:
        n = int(spec)
    except ValueError:
        raise ConfigError(f"--gpus takes a count or 'all', not {spec!r}") from None
    if n < 1:
        raise ConfigError(f"--gpus must be at least 1, not {n}")
    if n > len(visible):
        raise ConfigError(f"--gpus {n}: only {len(visible)} GPU(s) visible"
                          + ("" if visible else f" (nvidia-smi lists none; {FAKE_GPUS_ENV} gives "
                                                "device ids for tests/CPU)"))
    return list(visible[:n])


def check_fits(needs: dict[str, int], devices: Sequence[str], where: str = "") -> None:
    """Every arm must fit the device set at all: else one line, before anything runs."""
    for arm, n in needs.items():
        if n > len(devices):
            raise ConfigError(f"arm {arm!r} needs {n} devices (tensor x pipeline x data parallel) "
                              f"and {where or 'the run has'} {len(devices)}")


@dataclass
class Scheduler:
    """Arms (name -> devices needed, in start order) over a device list."""

    needs: dict[str, int]
    devices: list[str]
    free: list[str] = field(init=False)
    waiting: list[str] = field(init=False)
    running: dict[str, list[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        check_fits(self.needs, self.devices)
        self.free = list(self.devices)
        self.waiting = list(self.needs)

    def start(self) -> list[tuple[str, list[str]]]:
        """The arms to start now, each with its devices (the lowest free ids, in list order)."""
        out = []
        for arm in list(self.waiting):
            n = self.needs[arm]
            if n <= len(self.free):
                got, self.free = self.free[:n], self.free[n:]
                self.waiting.remove(arm)
                self.running[arm] = got
                out.append((arm, got))
        return out

    def finish(self, arm: str) -> None:
        got = self.running.pop(arm)
        order = {d: i for i, d in enumerate(self.devices)}
        self.free = sorted([*self.free, *got], key=order.__getitem__)

    @property
    def done(self) -> bool:
        return not self.waiting and not self.running


def schedule(needs: dict[str, int], devices: list[str],
             durations: dict[str, float]) -> list[tuple[float, str, list[str]]]:
    """The start time and devices of each arm, given how long each takes (for tests and for
    explaining the order): what :class:`Scheduler` does over time."""
    s = Scheduler(needs, devices)
    now, ends, starts = 0.0, [], []
    while not s.done:
        for arm, got in s.start():
            starts.append((now, arm, got))
            ends.append((now + durations[arm], arm))
        ends.sort()
        now, arm = ends.pop(0)
        s.finish(arm)
    return starts


def comma(ids: Iterable[str]) -> str:
    return ",".join(ids)


def accuracy_env(devices: list[str] | None, engine_args: dict[str, Any]) -> dict[str, str]:
    """What placement adds to an arm's accuracy child: its devices, and for lm-eval's data
    parallelism a Ray instance of its own (a cluster on the node would otherwise take its
    replicas, and place them off the arm's devices)."""
    env = {} if devices is None else {"CUDA_VISIBLE_DEVICES": comma(devices)}
    dp = engine_args.get("data_parallel_size") or 1
    if dp > 1:
        env["RAY_ADDRESS"] = "local"
        if devices is not None:  # each replica reserves its engine's GPUs (see lm_eval_child)
            env[DP_REPLICA_GPUS_ENV] = str(engine_devices(engine_args))
    return env


def throughput_env(devices: list[str] | None, engine_args: dict[str, Any]) -> dict[str, str]:
    """The throughput session's device set: the first devices of the run's (the device of a run
    without --gpus: the first visible), as many as one engine of the arm takes."""
    return {} if devices is None else {
        "CUDA_VISIBLE_DEVICES": comma(devices[:engine_devices(engine_args)])}
