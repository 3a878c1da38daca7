"""Children that hang: a phase whose results are complete but whose process does not exit is
terminated after a grace period and counted complete (and recorded so); a phase with no results
past its time limit is killed and recorded as crashed; the run goes on with the next backend.

The runner is real; only the children are fakes (small Python processes that write lm-eval-shaped
results / throughput.json and then sleep, or write nothing and sleep)."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import fake_speed_worker
import pytest

from vit_backend_plugin.harness import runner
from vit_backend_plugin.harness.arms import resolve_arms
from vit_backend_plugin.harness.commands import PhaseCommand
from vit_backend_plugin.harness.config import parse_config
from vit_backend_plugin.rundir.layout import LM_EVAL_DIR, THROUGHPUT, ArmStatus

SLEEP = 600  # a hung child would sleep this long: the test finishing in seconds proves it was ended

WRITE_RESULTS = """
import json, sys, time, pathlib
out = pathlib.Path(sys.argv[1]) / "model"
out.mkdir(parents=True, exist_ok=True)
stamp = "2026-01-01T00-00-00.000000"
(out / f"samples_mmmu_val_art_{stamp}.jsonl").write_text(json.dumps({"doc_id": 0, "doc": {"id": "a"}}) + "\\n")
(out / f"results_{stamp}.json").write_text(json.dumps({
    "results": {"mmmu_val": {"acc,none": 1.0}}, "configs": {"mmmu_val_art": {}},
    "n-samples": {"mmmu_val_art": {"effective": 1}}}))
print("results written", flush=True)
time.sleep(float(sys.argv[2]))
"""
HANG_SILENTLY = "import sys, time; print('loading...', flush=True); time.sleep(float(sys.argv[1]))"


def fake_commands(monkeypatch, hung: set[str], silent: set[str], sleep: float = SLEEP):
    def accuracy(cfg, arm, bdir, include_path=None):
        backend = arm.name
        if backend in silent:
            return PhaseCommand([sys.executable, "-c", HANG_SILENTLY, str(sleep)], {})
        pause = sleep if backend in hung else 0
        return PhaseCommand([sys.executable, "-c", textwrap.dedent(WRITE_RESULTS),
                             str(Path(bdir) / LM_EVAL_DIR), str(pause)], {})

    def throughput(cfg, arm, bdir):
        spec = json.dumps({"engine": "hf", "backend": arm.backend, "arm": arm.name})
        return PhaseCommand([sys.executable, fake_speed_worker.PATH, "--spec", spec], {})

    monkeypatch.setattr(runner, "accuracy_command", accuracy)
    monkeypatch.setattr(runner, "throughput_command", throughput)


def plan(tmp_path: Path, backends: list[str], **extra) -> runner.Plan:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    cfg = parse_config({"model": str(model), "engine": "hf", "backends": backends,
                        "output_dir": str(tmp_path), "run_id": "run", **extra})
    return runner.Plan(cfg=cfg, run_dir=tmp_path / "run", model=str(model), include_path=None,
                       arms=resolve_arms(cfg))


def test_hung_after_results_is_terminated_and_counted_complete_timeout_without_results_crashes(
        tmp_path, monkeypatch):
    fake_commands(monkeypatch, hung={"eager"}, silent={"sdpa"})
    p = plan(tmp_path, ["eager", "sdpa", "flash_attention_2"], exit_grace_s=2, timeout_s=4)
    t0 = time.monotonic()
    rc = runner.execute(p, report=False)
    took = time.monotonic() - t0
    assert took < 60, took  # neither sleeping child was waited for
    assert rc == 3  # one backend crashed: ERROR

    eager = ArmStatus.read(p.run_dir / "eager")
    assert eager.phases == {"accuracy": "complete", "throughput": "complete"}
    assert "terminated" in eager.notes["accuracy"] and eager.errors == {}
    assert "terminated" in (p.run_dir / "eager" / "accuracy.log").read_text()

    sdpa = ArmStatus.read(p.run_dir / "sdpa")
    assert sdpa.phases["accuracy"] == "failed"
    assert sdpa.errors["accuracy"].startswith("crashed: no complete results after the time limit")
    assert sdpa.phases["throughput"] == "complete"  # its other phase still ran

    # the run went on with the next backend, which exits normally: no note
    fa2 = ArmStatus.read(p.run_dir / "flash_attention_2")
    assert fa2.complete and fa2.notes == {}

    # a rerun keeps the terminated-but-complete backend (its files verify)
    fake_commands(monkeypatch, hung=set(), silent=set())
    before = next((p.run_dir / "eager" / LM_EVAL_DIR).rglob("results_*.json")).stat().st_mtime_ns
    assert runner.execute(p, report=False) == 0
    after = next((p.run_dir / "eager" / LM_EVAL_DIR).rglob("results_*.json")).stat().st_mtime_ns
    assert before == after


def test_run_child_grace_starts_when_results_are_complete(tmp_path):
    """The grace period counts from complete results, not from the start: a child that writes
    results only after the time limit would have passed is not killed as crashed."""
    marker = tmp_path / "done"
    code = (f"import time, pathlib; time.sleep(3); pathlib.Path({str(marker)!r}).write_text('x'); "
            f"time.sleep({SLEEP})")
    res = runner.run_child(PhaseCommand([sys.executable, "-c", code], {}), tmp_path / "c.log",
                           timeout=60, results_ready=marker.is_file, grace=1, poll=0.2)
    assert res.terminated_after_results and res.ok and not res.timed_out
    assert 3 <= res.seconds < 30


@pytest.mark.parametrize("code,rc", [("raise SystemExit(3)", 3), ("pass", 0)])
def test_children_that_exit_are_not_terminated(tmp_path, code, rc):
    res = runner.run_child(PhaseCommand([sys.executable, "-c", code], {}), tmp_path / "c.log",
                           timeout=30, results_ready=lambda: True, grace=5, poll=0.2)
    assert res.returncode == rc and not res.terminated_after_results
    assert res.ok == (rc == 0)


def test_accuracy_false_runs_throughput_only(tmp_path, monkeypatch):
    fake_commands(monkeypatch, hung=set(), silent=set())
    p = plan(tmp_path, ["sdpa"], accuracy=False)
    assert runner.execute(p, report=False) == 0
    st = ArmStatus.read(p.run_dir / "sdpa")
    assert st.complete
    assert not list((p.run_dir / "sdpa" / LM_EVAL_DIR).rglob("results_*.json"))  # nothing ran
    assert json.loads((p.run_dir / "sdpa" / THROUGHPUT).read_text())["metrics"]["images_per_s"] == 10.0


def test_termination_ends_the_whole_process_group(tmp_path):
    """lm-eval's vLLM engine core is a process of its own, slow to leave on SIGTERM: it must be
    gone too (its GPU memory otherwise stops the next backend's engine from starting)."""
    marker, pidfile = tmp_path / "done", tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time, pathlib; "
            "g = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            f"signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep({SLEEP})']); "
            f"pathlib.Path({str(pidfile)!r}).write_text(str(g.pid)); "
            f"pathlib.Path({str(marker)!r}).write_text('x'); time.sleep({SLEEP})")
    res = runner.run_child(PhaseCommand([sys.executable, "-c", code], {}), tmp_path / "c.log",
                           timeout=60, results_ready=marker.is_file, grace=0.5, poll=0.2)
    assert res.terminated_after_results
    grandchild = int(pidfile.read_text())
    status = Path(f"/proc/{grandchild}/status")
    # gone, or at most a zombie waiting for init to reap it (it holds no memory then)
    assert not status.exists() or "zombie" in status.read_text()


def test_error_text_names_the_root_cause_above_the_last_lines():
    """A vLLM engine that refuses its settings logs the reason in its worker; the parent's last
    lines only say "See root cause above". The error keeps the cause (first exception line)."""
    worker = ("(Worker pid=19995) ERROR 12-06 20:14:51 [multiproc_executor.py:953] ValueError: "
              "mm_encoder_attn_dtype='fp8' requires either the ROCM_AITER_FA backend on ROCm")
    tail = ["(EngineCore pid=1) INFO loading", worker,
            *[f'  File "x.py", line {i}, in f' for i in range(40)],
            "Exception: WorkerProc initialization failed due to an exception in a background process.",
            "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"]
    text = runner.ChildResult(1, 2.0, tail).error_text()
    assert text.splitlines()[:2] == [
        "exit code 1", "cause: ValueError: mm_encoder_attn_dtype='fp8' requires either the "
                       "ROCM_AITER_FA backend on ROCm"]
    assert text.splitlines()[-1].startswith("RuntimeError: Engine core initialization failed")
    assert runner.headline(text).startswith("ValueError: mm_encoder_attn_dtype='fp8'")
    # no exception line: the last line is the headline
    plain = runner.ChildResult(137, 2.0, ["loading...", "Killed"]).error_text()
    assert "cause:" not in plain and runner.headline(plain) == "Killed"


def test_aa_control_is_timed_with_the_arms_and_a_rerun_redoes_all_throughput(tmp_path, monkeypatch):
    """throughput.aa_control: a second engine of the baseline, in the same interleaved rounds;
    a throughput.json missing for one arm redoes every arm's rounds (one session's drift)."""
    fake_commands(monkeypatch, hung=set(), silent=set())
    p = plan(tmp_path, ["eager", "sdpa"], accuracy=False,
             throughput={"repeats": 2, "aa_control": True})
    assert runner.execute(p, report=False) == 0
    aa = json.loads((p.run_dir / "aa_control" / THROUGHPUT).read_text())
    assert aa["control_of"] == "eager" and aa["backend"] == "eager"
    assert aa["interleave"]["order"] == [[0, "eager"], [0, "sdpa"], [0, "aa_control"],
                                         [1, "aa_control"], [1, "sdpa"], [1, "eager"]]
    eager_before = (p.run_dir / "eager" / THROUGHPUT).stat().st_mtime_ns
    (p.run_dir / "sdpa" / THROUGHPUT).unlink()
    assert runner.execute(p, report=False) == 0
    assert (p.run_dir / "eager" / THROUGHPUT).stat().st_mtime_ns != eager_before
    assert (p.run_dir / "aa_control" / THROUGHPUT).is_file()
