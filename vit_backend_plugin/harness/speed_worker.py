"""One arm's throughput worker: ``python -m vit_backend_plugin.harness.speed_worker --spec JSON``.

It builds the arm's engine and warms it up, says so, then times one round whenever the parent
asks (:mod:`vit_backend_plugin.harness.speed_session`), until told to stop. Keeping the engine
alive between rounds is what lets the rounds of several arms interleave.

Protocol, one JSON object per line: the parent writes ``{"round": r}`` or ``{"stop": true}`` to
stdin; the worker answers on stdout with lines starting ``VIT_PARITY_WORKER ``, and nothing else
goes to stdout: everything else written to it (the engine's prints, its processes' output) is
sent to stderr, the log, so a long message cannot be split by another process's write:
``{"ready": info}`` once warm, ``{"round": r, "metrics": {...}}`` per round. An error ends the
process with its traceback in the log; end of stdin (a parent gone) ends it too.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

PREFIX = "VIT_PARITY_WORKER "
_channel = sys.stdout  # replaced in main() by a private copy of stdout


def send(obj: dict[str, Any]) -> None:
    _channel.write(PREFIX + json.dumps(obj) + "\n")
    _channel.flush()


def _private_stdout() -> None:
    """Keep stdout for the protocol alone: a private, non-inheritable copy of it becomes the
    channel, and fd 1 (what this process and its children print to) becomes stderr."""
    global _channel
    sys.stdout.flush()
    _channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)


def _terminate(signum, frame):  # SIGTERM: unwind, so the runner's close() runs
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vit_backend_plugin.harness.speed_worker")
    p.add_argument("--spec", required=True, help="JSON built by harness.commands.throughput_spec")
    args = p.parse_args(argv)
    spec = json.loads(args.spec)
    _private_stdout()

    from vit_backend_plugin.harness.engine_record import arm_env
    from vit_backend_plugin.harness.lm_eval_child import check_fault
    from vit_backend_plugin.harness.throughput import device_info, make_runner

    check_fault(spec["backend"], "throughput")
    signal.signal(signal.SIGTERM, _terminate)
    runner = make_runner(spec, Path(spec["out"]).parent)
    try:
        runner.start()
        runner.warmup()
        send({"ready": {"arm_env": arm_env(spec), "device": device_info(), **runner.info()}})
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("stop"):
                break
            r = int(cmd["round"])
            send({"round": r, "metrics": runner.round(r)})
    finally:
        runner.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
