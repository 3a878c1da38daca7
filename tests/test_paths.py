"""Where the plugin keeps user-local files (common/paths.py): one rule, XDG_CACHE_HOME honoured by
every path and every consumer, a relative or empty XDG_CACHE_HOME ignored, each file's override
variable winning; and the test session's own tables (conftest.py) kept out of the developer's."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vit_backend_plugin.common import paths

OVERRIDES = {  # the path function -> its override variable
    paths.harness_cache_root: "VIT_PARITY_CACHE",
    paths.user_speed_table_path: "VIT_SPEED_TABLE",
    paths.user_configs_path: "VIT_TRITON_CONFIGS",
}


@pytest.fixture
def home(monkeypatch, tmp_path):
    """A fake HOME, no XDG_CACHE_HOME and no override variable set."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for var in OVERRIDES.values():
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def test_default_root_is_home_cache(home):
    assert paths.cache_root() == home / ".cache" / paths.APP
    for fn in OVERRIDES:
        assert paths.cache_root() in (fn(), *fn().parents), fn.__name__


def test_absolute_xdg_cache_home_is_honoured_by_every_path(home, monkeypatch, tmp_path):
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert paths.cache_root() == xdg / paths.APP
    for fn in OVERRIDES:
        assert xdg / paths.APP in (fn(), *fn().parents), fn.__name__
        assert home not in fn().parents, fn.__name__


@pytest.mark.parametrize("xdg", ["", "relative/cache", "~/cache"])
def test_relative_or_empty_xdg_cache_home_is_ignored(home, monkeypatch, xdg):
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert paths.cache_root() == home / ".cache" / paths.APP
    for fn in OVERRIDES:
        assert home / ".cache" / paths.APP in (fn(), *fn().parents), fn.__name__


@pytest.mark.parametrize("fn", list(OVERRIDES), ids=lambda fn: OVERRIDES[fn])
def test_each_override_variable_wins_over_xdg(home, monkeypatch, tmp_path, fn):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = {f: f() for f in OVERRIDES}
    monkeypatch.setenv(OVERRIDES[fn], str(tmp_path / "elsewhere"))
    assert fn() == tmp_path / "elsewhere"
    assert all(f() == before[f] for f in OVERRIDES if f is not fn)  # the others keep the rule
    monkeypatch.setenv(OVERRIDES[fn], "~/mine")
    assert fn() == home / "mine"  # expanded
    monkeypatch.setenv(OVERRIDES[fn], "")
    assert fn() == before[fn]  # empty: unset


def test_the_consumers_follow_the_rule(home, monkeypatch, tmp_path):
    """The speed table, the VIT_TRITON config loader and the harness read their files where the
    rule says, under XDG_CACHE_HOME."""
    import json

    from vit_backend_plugin.harness import demo_assets
    from vit_backend_plugin.selection import speed_table

    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert speed_table.user_table_path() == xdg / paths.APP / "speed_table.json"
    assert speed_table.save_user(speed_table.SpeedTable()) == xdg / paths.APP / "speed_table.json"
    assert speed_table.load_user() is not None
    assert demo_assets.cache_root() == xdg / paths.APP / "demo"

    tv = pytest.importorskip("vit_backend_plugin.kernels.triton_vit")
    shipped = tv.load_configs.__wrapped__()
    mine = dict(shipped, rules=[{"config": {"kernel": "main", "BLOCK_M": 16}}])
    (xdg / paths.APP / "vit_triton_configs.json").write_text(json.dumps(mine))
    assert tv.load_configs.__wrapped__() == mine


def test_the_session_keeps_user_tables_in_a_temporary_directory():
    """conftest.py: this process and its children read no developer table."""
    real = Path(os.path.expanduser("~")) / ".cache" / paths.APP
    for var in ("VIT_SPEED_TABLE", "VIT_TRITON_CONFIGS"):
        path = Path(os.environ[var])
        assert Path(tempfile.gettempdir()) in path.parents and real not in path.parents, var
    assert paths.user_speed_table_path() == Path(os.environ["VIT_SPEED_TABLE"])
    code = ("from vit_backend_plugin.common import paths; "
            "print(paths.user_speed_table_path()); print(paths.user_configs_path())")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert child.stdout.split() == [os.environ["VIT_SPEED_TABLE"], os.environ["VIT_TRITON_CONFIGS"]]
