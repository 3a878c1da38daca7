"""The README's `vit-parity explain` example is what the command prints today."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_explain_example_is_real_output():
    text = README.read_text()
    section = text[text.index("### Which backend will my model get? `vit-parity explain`"):]
    block = re.search(r"```console\n\$ (vit-parity explain [^\n]*)\n(.*?)```", section, re.S)
    assert block, "no console example in the explain section"
    command, shown = block.group(1), block.group(2)
    argv = shlex.split(command)[1:]
    # the example was taken at 110 columns (rich wraps the table and the chosen line to fit)
    env = {**os.environ, "COLUMNS": "110"}
    p = subprocess.run([sys.executable, "-m", "vit_backend_plugin.cli", *argv], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    real = [line.rstrip() for line in p.stdout.splitlines()]
    assert [line.rstrip() for line in shown.splitlines()] == real, (
        "README example is stale: rerun `COLUMNS=110 " + command + "` and paste its output")
