"""Arms' accuracy phases side by side: one thread per running arm, each waiting on its own child
(a local process on its device set, or a Ray task). The main thread only schedules, so Ctrl-C
lands there: it sets ``cancel``, every thread's child is ended (its whole process group), and
the interrupt goes on once all have stopped. An arm whose thread fails is recorded and the
others go on."""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable

from vit_backend_plugin.harness.placement import Scheduler
from vit_backend_plugin.rundir.layout import ArmStatus

# run_one(arm name, its devices or None, cancel) -> its status after the phase
RunOne = Callable[[str, "list[str] | None", threading.Event], ArmStatus]


def run_concurrently(names: list[str], run_one: RunOne, scheduler: Scheduler | None,
                     on_crash: Callable[[str, str], ArmStatus]) -> dict[str, ArmStatus]:
    """Run every arm; with ``scheduler`` as its devices free up, else all at once (Ray places
    them). ``on_crash(arm, error)``: the status of an arm whose thread raised."""
    cancel = threading.Event()
    done: queue.Queue[tuple[str, ArmStatus | None, str | None]] = queue.Queue()
    threads: dict[str, threading.Thread] = {}
    statuses: dict[str, ArmStatus] = {}

    def work(name: str, devices: list[str] | None) -> None:
        try:
            done.put((name, run_one(name, devices, cancel), None))
        except BaseException as e:  # noqa: BLE001 - reported, never lost with the thread
            interrupted = isinstance(e, KeyboardInterrupt) and cancel.is_set()
            done.put((name, None, None if interrupted else traceback.format_exc()))

    def start_ready() -> None:
        ready = scheduler.start() if scheduler else [(n, None) for n in names if n not in threads]
        for name, devices in ready:
            threads[name] = threading.Thread(target=work, args=(name, devices), daemon=True,
                                             name=f"arm-{name}")
            threads[name].start()

    try:
        start_ready()
        while len(statuses) < len(names):
            try:
                name, status, error = done.get(timeout=0.5)  # short: Ctrl-C gets through
            except queue.Empty:
                continue
            threads[name].join()
            statuses[name] = status if status is not None else on_crash(name, error or "interrupted")
            if scheduler is not None:
                scheduler.finish(name)
            start_ready()
    except BaseException:
        cancel.set()
        for t in threads.values():
            while t.is_alive():
                try:
                    t.join()
                except KeyboardInterrupt:  # a second Ctrl-C: still wait for the children to end
                    continue
        raise
    return {n: statuses[n] for n in names}
