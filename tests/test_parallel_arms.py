"""`vit-parity run --gpus`: arms' accuracy phases side by side on fake device lists, with fake
children (small Python processes) that report the CUDA_VISIBLE_DEVICES they saw and when they
ran. The planner, placement, runner and throughput session are real (issue 25)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import fake_speed_worker
import pytest
import yaml

from vit_backend_plugin import cli
from vit_backend_plugin.harness import runner
from vit_backend_plugin.harness.arms import resolve_arms
from vit_backend_plugin.harness.commands import PhaseCommand
from vit_backend_plugin.harness.config import parse_config
from vit_backend_plugin.harness.placement import FAKE_GPUS_ENV, Scheduler
from vit_backend_plugin.rundir.layout import COMMAND, LM_EVAL_DIR, THROUGHPUT, ArmStatus

# accuracy: record what it saw (devices, start/end, pid), then lm-eval-shaped results
ACCURACY = """
import json, os, sys, time, pathlib
out, seconds = pathlib.Path(sys.argv[1]), float(sys.argv[2])
seen = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time(),
        "pid": os.getpid()}
(out.parent / "seen_start.json").write_text(json.dumps(seen))
if os.environ.get("FAKE_CRASH") == "1":
    print("ValueError: the engine refused this arm's settings", flush=True)
    raise SystemExit(1)
time.sleep(seconds)
model = out / "model"
model.mkdir(parents=True, exist_ok=True)
stamp = "2026-01-01T00-00-00.000000"
(model / f"samples_mmmu_val_art_{stamp}.jsonl").write_text(json.dumps({"doc_id": 0, "doc": {"id": "a"}}) + "\\n")
(model / f"results_{stamp}.json").write_text(json.dumps({
    "results": {"mmmu_val": {"acc,none": 1.0}}, "configs": {"mmmu_val_art": {}},
    "n-samples": {"mmmu_val_art": {"effective": 1}}}))
(out.parent / "seen.json").write_text(json.dumps({**seen, "end": time.time()}))
"""


def fake_commands(monkeypatch, seconds: dict[str, float], broken: set[str] = frozenset()):
    broken = set(broken)

    def accuracy(cfg, arm, adir, include_path=None):
        if arm.name in broken:  # once: a bug in the arm's thread of the accuracy phase
            broken.discard(arm.name)
            raise RuntimeError(f"cannot build {arm.name}'s command")
        return PhaseCommand([sys.executable, "-c", ACCURACY, str(Path(adir) / LM_EVAL_DIR),
                             str(seconds.get(arm.name, 0))], dict(arm.env))

    def throughput(cfg, arm, adir):
        spec = json.dumps({"engine": "vllm", "backend": arm.backend, "arm": arm.name,
                           "env_keys": ["CUDA_VISIBLE_DEVICES"]})
        return PhaseCommand([sys.executable, fake_speed_worker.PATH, "--spec", spec], dict(arm.env))

    monkeypatch.setattr(runner, "accuracy_command", accuracy)
    monkeypatch.setattr(runner, "throughput_command", throughput)


def make_plan(tmp_path: Path, arms: list[dict], devices: list[str] | None, **extra) -> runner.Plan:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    cfg = parse_config({"model": str(model), "engine": "vllm", "arms": arms,
                        "output_dir": str(tmp_path), "run_id": "run",
                        "throughput": {"repeats": 1}, **extra})
    return runner.Plan(cfg=cfg, run_dir=tmp_path / "run", model=str(model), include_path=None,
                       arms=resolve_arms(cfg), devices=devices)


def seen(p: runner.Plan, arm: str) -> dict:
    return json.loads((p.run_dir / arm / "seen.json").read_text())


def test_arms_run_side_by_side_each_on_its_devices_and_wait_for_free_ones(tmp_path, monkeypatch):
    """Three fake GPUs: base (1 device) and tp2 (2) start at once; late (1) waits for a free
    device; each child sees exactly its devices; throughput is then timed alone, every arm on
    the first device(s)."""
    fake_commands(monkeypatch, {"base": 3, "tp2": 6, "late": 0.5})
    arms = [{"name": "base"}, {"name": "tp2", "engine_args": {"tensor_parallel_size": 2}},
            {"name": "late"}]
    p = make_plan(tmp_path, arms, ["0", "1", "2"])
    t0 = time.monotonic()
    assert runner.execute(p, report=False) == 0
    took = time.monotonic() - t0

    base, tp2, late = seen(p, "base"), seen(p, "tp2"), seen(p, "late")
    assert (base["CUDA_VISIBLE_DEVICES"], tp2["CUDA_VISIBLE_DEVICES"],
            late["CUDA_VISIBLE_DEVICES"]) == ("0", "1,2", "0")
    assert tp2["start"] < base["end"]  # side by side
    assert late["start"] >= base["end"] - 0.05  # it waited for base's device
    assert late["end"] < tp2["end"]  # ... and ran while tp2 still did
    assert took < 3 + 6 + 0.5 + 30  # not one after another plus slack

    for arm, devices in [("base", "0"), ("tp2", "1,2"), ("late", "0")]:
        cmd = json.loads((p.run_dir / arm / COMMAND).read_text())
        assert cmd["accuracy"]["env"]["CUDA_VISIBLE_DEVICES"] == devices  # recorded as run
        assert ArmStatus.read(p.run_dir / arm).complete
    # throughput: one device set for the whole session (tp2's engine: two devices)
    for arm, devices in [("base", "0"), ("tp2", "0,1"), ("late", "0")]:
        tp = json.loads((p.run_dir / arm / THROUGHPUT).read_text())
        assert tp["arm_env"]["CUDA_VISIBLE_DEVICES"] == devices, tp
        assert tp["interleave"]["order"]  # rounds timed after every accuracy phase
    placement = json.loads((p.run_dir / runner.PLACEMENT).read_text())
    assert placement["mode"] == "devices" and placement["devices"] == ["0", "1", "2"]
    assert "devices 0,1, with no other arm running" in placement["throughput"]


def test_default_is_todays_one_arm_at_a_time_without_device_overrides(tmp_path, monkeypatch):
    fake_commands(monkeypatch, {"a": 1, "b": 1})
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    p = make_plan(tmp_path, [{"name": "a"}, {"name": "b"}], None)
    assert runner.execute(p, report=False) == 0
    a, b = seen(p, "a"), seen(p, "b")
    assert a["CUDA_VISIBLE_DEVICES"] is None and b["start"] >= a["end"]
    cmd = json.loads((p.run_dir / "a" / COMMAND).read_text())
    assert "CUDA_VISIBLE_DEVICES" not in cmd["accuracy"].get("env", {})
    assert "CUDA_VISIBLE_DEVICES" not in cmd["throughput"].get("env", {})
    assert json.loads((p.run_dir / runner.PLACEMENT).read_text())["mode"] == "one device"


def test_a_crashed_arm_does_not_stop_the_others(tmp_path, monkeypatch):
    """One child fails, one arm's thread raises before its child starts: both are recorded,
    the others complete, their throughput still runs, and the exit code says ERROR."""
    fake_commands(monkeypatch, {"a": 2, "c": 2}, broken={"bug"})
    arms = [{"name": "a"}, {"name": "crash", "env": {"FAKE_CRASH": "1"}}, {"name": "bug"},
            {"name": "c"}]
    p = make_plan(tmp_path, arms, ["0", "1"])
    assert runner.execute(p, report=False) == 3
    st = {a: ArmStatus.read(p.run_dir / a) for a in ("a", "crash", "bug", "c")}
    assert st["a"].complete and st["c"].complete
    assert st["crash"].phases["accuracy"] == "failed"
    assert "engine refused this arm's settings" in st["crash"].errors["accuracy"]
    assert st["bug"].phases["accuracy"] == "failed"
    assert "cannot build bug's command" in st["bug"].errors["accuracy"]
    assert seen(p, "c")["CUDA_VISIBLE_DEVICES"] in ("0", "1")  # it got a device afterwards


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler, whatever an earlier test in this process installed."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_ends_every_running_child(tmp_path, monkeypatch, python_sigint):
    """Ctrl-C lands in the main thread: every arm's child (each in its own thread) is ended,
    each arm is recorded as interrupted, and a rerun redoes them."""
    fake_commands(monkeypatch, {"a": 600, "b": 600, "c": 600})
    p = make_plan(tmp_path, [{"name": "a"}, {"name": "b"}, {"name": "c"}], ["0", "1"])
    started = [p.run_dir / a / "seen_start.json" for a in ("a", "b")]

    def interrupt_once_running():
        deadline = time.monotonic() + 60
        while not all(f.is_file() for f in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does (a real signal wakes any wait)

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        runner.execute(p, report=False)
    assert time.monotonic() - t0 < 60
    for arm in ("a", "b"):
        pid = json.loads((p.run_dir / arm / "seen_start.json").read_text())["pid"]
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "zombie" in status.read_text()
        st = ArmStatus.read(p.run_dir / arm)
        assert st.phases["accuracy"] == "failed" and st.errors["accuracy"] == "interrupted"
    assert not (p.run_dir / "c" / "seen_start.json").exists()  # it never got devices

    fake_commands(monkeypatch, {})
    assert runner.execute(p, report=False) == 0  # the rerun redoes them


def test_scheduler_is_consulted_in_order(tmp_path):
    """What waits and what starts, as the runner drives it (one device, two arms)."""
    s = Scheduler({"x": 1, "y": 1}, ["0"])
    assert s.start() == [("x", ["0"])] and s.waiting == ["y"]
    s.finish("x")
    assert s.start() == [("y", ["0"])]


# --------------------------------------------------------------------------- the CLI
def write_config(tmp_path: Path, arms: list[dict]) -> Path:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"model": str(model), "engine": "vllm", "arms": arms,
                                    "output_dir": str(tmp_path / "out"),
                                    "throughput": {"repeats": 1}}))
    return path


@pytest.mark.parametrize("flags, env, message", [
    (["--gpus", "2"], {}, "--gpus 2: only 0 GPU(s) visible (nvidia-smi lists none; "
                          "VIT_PARITY_FAKE_GPUS gives device ids for tests/CPU)"),
    (["--gpus", "1"], {FAKE_GPUS_ENV: "0,1"},
     "arm 'tp2' needs 2 devices (tensor x pipeline x data parallel) and --gpus 1 gives 1"),
    (["--gpus", "all", "--ray-address", "local"], {FAKE_GPUS_ENV: "0,1"},
     "--gpus and --ray-address: choose one"),
])
def test_cli_errors_are_one_line_before_anything_runs(tmp_path, capsys, monkeypatch, flags, env,
                                                      message):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("vit_backend_plugin.harness.plan.gpu_info", lambda: None)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = write_config(tmp_path, [{"name": "base"},
                                  {"name": "tp2", "engine_args": {"tensor_parallel_size": 2}}])
    rc = cli.main(["run", str(cfg), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_cli_gpus_all_with_fake_devices(tmp_path, capsys, monkeypatch):
    fake_commands(monkeypatch, {"base": 1, "cand": 1})
    monkeypatch.setenv(FAKE_GPUS_ENV, "3,5")
    cfg = write_config(tmp_path, [{"name": "base"}, {"name": "cand"}])
    rc = cli.main(["run", str(cfg), "--gpus", "all", "--no-report"])
    text = capsys.readouterr()
    assert rc == 0, text
    out = text.out + text.err
    assert "arms side by side on devices 3,5" in out
    assert "base accuracy: running on devices 3" in out and "cand accuracy: running on devices 5" in out
    assert "no other arm running" in out
    run_dir = tmp_path / "out" / "cfg"
    assert {json.loads((run_dir / a / "seen.json").read_text())["CUDA_VISIBLE_DEVICES"]
            for a in ("base", "cand")} == {"3", "5"}
    assert os.environ[FAKE_GPUS_ENV] == "3,5"
