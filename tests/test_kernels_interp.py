"""VIT_TRITON numerics on CPU through the Triton interpreter (TRITON_INTERPRET=1).

The interpreter must be switched on before triton is imported, so the checks live in
tests/kernels_helpers.py and run here in a fresh subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
pytest.importorskip("hypothesis")

HERE = Path(__file__).parent


def test_interpreter_numerics():
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE / "kernels_helpers.py"), "-q", "-p", "no:cacheprovider",
         "-x", "--timeout", "600"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
