"""The throughput session's own logic (which worker is asked what, and when; what a failing
worker does to the others; throughput.json), driven against small scripted workers that speak
the worker protocol. The real worker with vLLM's CPU engine is tests/test_speed_vllm.py."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import fake_speed_worker
import psutil
import pytest

from vit_backend_plugin.harness.commands import PhaseCommand
from vit_backend_plugin.harness.speed_session import Member, measure
from vit_backend_plugin.harness.speed_worker import PREFIX


def member(tmp: Path, name: str, mode: str = "ok", rate: float = 10.0) -> Member:
    spec = {"engine": "vllm", "backend": name.upper(), "arm": name}
    cmd = PhaseCommand(argv=[sys.executable, fake_speed_worker.PATH, "--spec", json.dumps(spec)],
                       env={"FAKE_MODE": mode, "FAKE_NAME": name, "FAKE_RATE": str(rate),
                            "FAKE_TRACE": str(tmp / "trace.txt")})
    return Member(name, cmd, tmp / name / "throughput.json", tmp / name / "throughput.log")


def settings(rounds: int, **kw) -> dict:
    return {"repeats": rounds, "timeout_s": 20, "visits": 2, "mode": "offline", **kw}


def trace(tmp: Path) -> list[str]:
    return (tmp / "trace.txt").read_text().split("\n")[:-1]


def test_rounds_run_interleaved_and_pair_by_round(tmp_path):
    ms = [member(tmp_path, "a", rate=10), member(tmp_path, "b", rate=20)]
    out = measure(ms, settings(4), together=True, grace=5, say=lambda s: None)
    assert all(o.error is None for o in out.values())
    assert trace(tmp_path) == ["a 0", "b 0", "b 1", "a 1", "b 2", "a 2", "a 3", "b 3"]
    doc = json.loads((tmp_path / "b" / "throughput.json").read_text())
    assert [x["round"] for x in doc["repeats"]] == [0, 1, 2, 3]
    assert [x["slot"] for x in doc["repeats"]] == [1, 2, 4, 7]
    assert doc["metrics"]["requests_per_s"] == pytest.approx(21.5)  # median of 20..23
    assert doc["interleave"]["together"] is True
    assert doc["interleave"]["order"][:3] == [[0, "a"], [0, "b"], [1, "b"]]
    assert doc["device"] == {"device": "cpu"}  # the worker's ready info is recorded


def test_a_worker_that_cannot_start_fails_its_arm_only(tmp_path):
    ms = [member(tmp_path, "a"), member(tmp_path, "bad", mode="no_start"), member(tmp_path, "c")]
    out = measure(ms, settings(3), together=True, grace=5, say=lambda s: None)
    assert out["a"].error is None and out["c"].error is None
    assert "exit code 1" in out["bad"].error
    assert "cause: ValueError: the engine refused this arm's settings" in out["bad"].error
    assert not (tmp_path / "bad" / "throughput.json").exists()
    assert sorted(trace(tmp_path)) == sorted(f"{n} {r}" for n in "ac" for r in range(3))


def test_a_worker_that_dies_or_hangs_mid_run_fails_alone(tmp_path):
    ms = [member(tmp_path, "a"), member(tmp_path, "dies", mode="die_at_2"),
          member(tmp_path, "hangs", mode="hang_at_1")]
    t0 = time.monotonic()
    out = measure(ms, settings(4, timeout_s=3), together=True, grace=5, say=lambda s: None)
    assert time.monotonic() - t0 < 60
    assert out["a"].error is None and len(out["a"].rounds) == 4
    assert "worker died in round 2" in out["dies"].error
    assert "no complete results after the time limit" in out["hangs"].error
    assert json.loads((tmp_path / "a" / "throughput.json").read_text())["repeats"][3]["round"] == 3


def test_apart_starts_one_worker_per_visit(tmp_path):
    ms = [member(tmp_path, "a"), member(tmp_path, "b")]
    out = measure(ms, settings(4, visits=2), together=False, grace=5, say=lambda s: None)
    assert all(o.error is None for o in out.values())
    assert trace(tmp_path) == ["a 0", "a 1", "b 0", "b 1", "b 2", "b 3", "a 2", "a 3"]
    log = (tmp_path / "a" / "throughput.log").read_text()
    assert log.count("$ ") == 2  # two visits, one log
    doc = json.loads((tmp_path / "a" / "throughput.json").read_text())
    assert doc["interleave"]["together"] is False


def test_no_process_outlives_the_session(tmp_path):
    ms = [member(tmp_path, "a", mode="child"), member(tmp_path, "b", mode="child")]
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    out = measure(ms, settings(2), together=True, grace=2, say=lambda s: None)
    assert all(o.error is None for o in out.values())
    time.sleep(0.5)
    left = [p for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "time.sleep(600)" in " ".join(p.info["cmdline"])
            and p.pid not in before]
    assert left == []


def test_the_fake_worker_speaks_the_real_protocol():
    assert fake_speed_worker.PREFIX == PREFIX
