"""`vit-parity` on the core install (no torch, vLLM, lm-eval): a subcommand that needs an extra
says which, in one line, exit code 2; those that need none keep working."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vit_backend_plugin.cli import EXTRA_FOR_MODULE, SUBCOMMANDS, missing_extra_hint

# The optional modules made unimportable, as on `pip install vit-backend-plugin` without extras.
MISSING = ("torch", "vllm", "lm_eval", "triton", "transformers", "datasets")

RUN_WITHOUT_EXTRAS = f"""
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(MISSING)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _NotInstalled())
from vit_backend_plugin.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def cli_without_extras(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", RUN_WITHOUT_EXTRAS, *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize("args,module,extras", [
    (["bench-kernels", "--help"], "torch", "vllm"),
    (["tune", "--help"], "torch", "vllm"),
    (["demo", "--dry-run"], "lm_eval", "vllm,eval"),
    (["demo", "--engine", "hf", "--dry-run"], "lm_eval", "vllm,eval"),
])
def test_missing_extra_is_one_line(args, module, extras, tmp_path):
    p = cli_without_extras(*args, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr  # the hint only: demo fails before it prepares anything
    assert f"needs {module!r}" in lines[0]
    assert f"pip install 'vit-backend-plugin[{extras}]'" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no run dir was started


def test_help_without_extras_still_says_what_the_command_does():
    p = cli_without_extras("bench-kernels", "--help")
    assert p.stdout.strip() == f"vit-parity bench-kernels: {SUBCOMMANDS['bench-kernels'].help}"


@pytest.mark.parametrize("command", ["explain", "run", "demo", "report", "record-engine"])
def test_help_needs_no_extras(command):
    p = cli_without_extras(command, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: vit-parity {command}")


def test_explain_needs_no_extras():
    p = cli_without_extras("explain", "--head-size", "80", "--capability", "9.0", "--json")
    assert p.returncode == 0, p.stderr
    planned = json.loads(p.stdout)["planned_for"]
    # what is installed here decides: not torch's SDPA sub-backends, nor vLLM's FlashAttention
    assert planned["features_from"] == "installed"
    assert not {"torch_cudnn_sdpa", "vllm_flash_attn", "triton"} & set(planned["features"])


def test_only_missing_optional_modules_get_the_hint():
    # installed here: a missing submodule is a version mismatch, its traceback is the answer
    assert missing_extra_hint("tune", ModuleNotFoundError(name="torch.no_such_module")) is None
    # not an optional dependency (a bug of ours, or a module no extra provides)
    assert missing_extra_hint("tune", ModuleNotFoundError(name="vit_backend_plugin.nope")) is None
    assert missing_extra_hint("tune", ModuleNotFoundError(name="no_such_pkg_xyz")) is None


def test_extras_named_are_the_ones_pyproject_declares():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    declared = set(pyproject["project"]["optional-dependencies"])
    named = set(EXTRA_FOR_MODULE.values()) | {e for c in SUBCOMMANDS.values() for e in c.extras}
    assert named <= declared
