"""Run a snippet in a fresh interpreter: vLLM plugin state is per process, like in vLLM."""

import json
import os
import subprocess
import sys
import textwrap


def run_snippet(code: str, env: dict | None = None, timeout: int = 300):
    full_env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "PYTHONUNBUFFERED": "1", **(env or {})}
    for k, v in list(full_env.items()):
        if v is None:
            del full_env[k]
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    result = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            break
    return proc, result


# Snippet preamble: capture the plugin's log records (level, message) in `records`.
CAPTURE_PLUGIN_LOG = """
import json, logging, os
records = []
class H(logging.Handler):
    def emit(self, r): records.append((r.levelname, r.getMessage()))
logging.getLogger("vllm.vit_backend_plugin").addHandler(H())
logging.getLogger("vllm.vit_backend_plugin").setLevel(logging.INFO)
"""
