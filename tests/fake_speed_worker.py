"""A scripted throughput worker for tests of the harness around it: it speaks the worker
protocol of vit_backend_plugin.harness.speed_worker without an engine.

    python tests/fake_speed_worker.py --spec JSON
Environment: FAKE_MODE ok | no_start | die_at_2 | hang_at_1 | child (leaves a sleeping
grandchild, like an engine core); FAKE_CRASH=1 = no_start (an arm whose engine refuses its
settings); FAKE_RATE requests/s (+ round number); FAKE_TRACE a file that gets "<arm> <round>"
per round timed. The ready message records the spec's env_keys as the process saw them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

PREFIX = "VIT_PARITY_WORKER "  # asserted equal to the real one in test_speed_session


def send(obj):
    print(PREFIX + json.dumps(obj), flush=True)


def main() -> int:
    spec = json.loads(sys.argv[sys.argv.index("--spec") + 1])
    mode = "no_start" if os.environ.get("FAKE_CRASH") == "1" else os.environ.get("FAKE_MODE", "ok")
    trace = os.environ.get("FAKE_TRACE")
    name = spec.get("arm", "?")
    if mode == "no_start":
        print("ValueError: the engine refused this arm's settings", flush=True)
        return 1
    if mode == "child":
        import subprocess

        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    send({"ready": {"device": {"device": "cpu"},
                    "arm_env": {k: os.environ.get(k) for k in spec.get("env_keys", [])}}})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("stop"):
            break
        r = cmd["round"]
        if trace:
            with open(trace, "a") as f:
                f.write(f"{name} {r}\n")
        if mode == "die_at_2" and r == 2:
            print("RuntimeError: worker died in round 2", flush=True)
            return 3
        if mode == "hang_at_1" and r == 1:
            time.sleep(600)
        rate = float(os.environ.get("FAKE_RATE", "10"))
        send({"round": r, "metrics": {"requests_per_s": rate + r, "images_per_s": rate,
                                      "encoder_images_per_s": None, "input_tokens_per_s": 1.0,
                                      "ttft_mean_ms": 5.0, "ttft_p99_ms": 6.0}})
    return 0


PATH = str(Path(__file__).resolve())

if __name__ == "__main__":
    raise SystemExit(main())
