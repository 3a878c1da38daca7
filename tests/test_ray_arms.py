"""`vit-parity run --ray-address`: arms' accuracy phases as Ray tasks, on a local Ray instance
on CPU (no GPU: tasks request none). Fake children first (fast: the scheduling, the run dir,
resume); then two arms of the demo through the real lm-eval (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_parallel_arms import fake_commands, make_plan, seen

from vit_backend_plugin.harness import runner
from vit_backend_plugin.rundir.layout import COMMAND, ArmStatus

pytest.importorskip("ray")


def test_two_arms_as_ray_tasks_write_into_the_run_dir_and_resume(tmp_path, monkeypatch):
    fake_commands(monkeypatch, {"a": 3, "b": 3})
    p = make_plan(tmp_path, [{"name": "a"}, {"name": "b"}], None)
    p.ray_address = "local"
    assert runner.execute(p, report=False) == 0
    a, b = seen(p, "a"), seen(p, "b")
    assert a["start"] < b["end"] and b["start"] < a["end"]  # side by side (2 CPUs: one each)
    for arm in ("a", "b"):
        assert ArmStatus.read(p.run_dir / arm).complete
        ran_on = json.loads((p.run_dir / arm / COMMAND).read_text())["accuracy"]["extra"]["ran_on"]
        assert ran_on["ray_node"] and ran_on["gpu_ids"] == []  # where it ran, recorded
    assert json.loads((p.run_dir / runner.PLACEMENT).read_text())["mode"] == "ray"

    # resume: a phase left "running" (a driver killed hard) is redone; the complete arm is kept
    st = ArmStatus.read(p.run_dir / "b")
    st.phases["accuracy"] = "running"
    st.write(p.run_dir / "b")
    a_before = (p.run_dir / "a" / "seen.json").stat().st_mtime_ns
    b_before = (p.run_dir / "b" / "seen.json").stat().st_mtime_ns
    assert runner.execute(p, report=False) == 0
    assert (p.run_dir / "a" / "seen.json").stat().st_mtime_ns == a_before
    assert (p.run_dir / "b" / "seen.json").stat().st_mtime_ns != b_before


def test_a_crashed_ray_task_does_not_stop_the_other(tmp_path, monkeypatch):
    fake_commands(monkeypatch, {"a": 1})
    p = make_plan(tmp_path, [{"name": "a"}, {"name": "bad", "env": {"FAKE_CRASH": "1"}}], None)
    p.ray_address = "local"
    assert runner.execute(p, report=False) == 3
    assert ArmStatus.read(p.run_dir / "a").complete
    bad = ArmStatus.read(p.run_dir / "bad")
    assert bad.phases["accuracy"] == "failed"
    assert "engine refused this arm's settings" in bad.errors["accuracy"]


def test_an_arm_no_node_can_hold_is_one_line(monkeypatch):
    from vit_backend_plugin.harness import ray_arms
    from vit_backend_plugin.harness.config import ConfigError

    cluster = ray_arms.Cluster("auto", [4.0, 8.0])
    ray_arms.check_fits(cluster, {"a": 8})
    with pytest.raises(ConfigError, match="arm 'big' needs 16 GPUs on one node and the Ray "
                                          "cluster's largest node has 8"):
        ray_arms.check_fits(cluster, {"a": 1, "big": 16})
    ray_arms.check_fits(ray_arms.Cluster("local", [0.0]), {"big": 16})  # CPU: none requested


def demo_config(tmp_path: Path, name: str, arms: list[dict], **extra) -> Path:
    """The vLLM demo shrunk: one item per subject, no throughput."""
    import yaml

    from vit_backend_plugin.harness.demo import demo_config_data

    data = demo_config_data("vllm")
    data.pop("backends", None)
    data.update(name=name, output_dir=str(tmp_path), limit=1, arms=arms,
                throughput={"enabled": False}, **extra)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_demo_two_arms_on_a_local_ray_instance(tmp_path):
    """Two arms of the demo (the real lm-eval, vLLM's CPU engine, one item per subject) as Ray
    tasks of a local instance; their accuracy lands in the run dir and the report is built."""
    cfg = demo_config(tmp_path, "ray2", [{"name": "TORCH_SDPA", "backend": "TORCH_SDPA"},
                                         {"name": "sdpa_again", "backend": "TORCH_SDPA"}])
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vit_backend_plugin.cli", "run", str(cfg),
                           "--ray-address", "local", "--no-fail"],
                          capture_output=True, text=True, timeout=1800)
    print(f"two demo arms on Ray took {time.monotonic() - t0:.0f}s")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    run_dir = tmp_path / "ray2"
    for arm in ("TORCH_SDPA", "sdpa_again"):
        assert ArmStatus.read(run_dir / arm).phases["accuracy"] == "complete", out[-4000:]
        assert list((run_dir / arm / "lm_eval").rglob("results_*.json"))
        ran_on = json.loads((run_dir / arm / COMMAND).read_text())["accuracy"]["extra"]["ran_on"]
        assert ran_on["ray_node"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["parity"]["sdpa_again"]["verdict"] in ("PASS", "INCONCLUSIVE"), summary
    assert (run_dir / runner.PLACEMENT).is_file()
