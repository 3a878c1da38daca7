"""`vit-parity run` with arms, end to end through the CLI with fake children (small Python
processes that write lm-eval-shaped results, as lm-eval's own writer lays them out, and a
throughput.json recording the environment they saw): the exit codes from the report's verdicts,
and reruns that never reuse results of another setting. The planner, runner, report and exit
code are real; the arms' settings reaching vLLM's own engine are in test_arms_vllm.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fake_speed_worker
import pytest
import yaml
from test_report_fixtures import baseline_answers, flip_every, write_lm_eval

from vit_backend_plugin import cli
from vit_backend_plugin.harness import runner
from vit_backend_plugin.harness.commands import PhaseCommand
from vit_backend_plugin.rundir.layout import ARM_SETTINGS, LM_EVAL_DIR, THROUGHPUT

# FAKE_CRASH=1 in an arm's env: both children fail like an engine that refuses its settings.
# accuracy: copy a prepared lm-eval output folder; throughput: record what it saw of the arm's env
CRASH = """
import os
if os.environ.get("FAKE_CRASH") == "1":
    print("ValueError: the engine refused this arm's settings", flush=True)
    raise SystemExit(1)
"""
FAKE_ACCURACY = CRASH + """
import shutil, sys
shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True)
"""
# throughput: tests/fake_speed_worker.py (FAKE_CRASH=1 too), recording the arm's env it saw


@pytest.fixture
def fake_children(monkeypatch, tmp_path):
    """arm name -> its answers (lm-eval output written once per distinct answer set)."""
    answers: dict[str, dict] = {}
    folders: dict[int, Path] = {}

    def lm_eval_dir(arm: str) -> Path:
        key = hash(tuple(sorted(answers[arm].items())))
        if key not in folders:
            folders[key] = tmp_path / "lm_eval_outputs" / str(len(folders))
            write_lm_eval(folders[key], answers[arm])
        return folders[key]

    def accuracy(cfg, arm, adir, include_path=None):
        return PhaseCommand([sys.executable, "-c", FAKE_ACCURACY, str(lm_eval_dir(arm.name)),
                             str(Path(adir) / LM_EVAL_DIR)], dict(arm.env))

    def throughput(cfg, arm, adir):
        spec = json.dumps({"engine": "vllm", "backend": arm.backend, "arm": arm.name,
                           "env_keys": sorted(arm.env)})
        return PhaseCommand([sys.executable, fake_speed_worker.PATH, "--spec", spec], dict(arm.env))

    monkeypatch.setattr(runner, "accuracy_command", accuracy)
    monkeypatch.setattr(runner, "throughput_command", throughput)
    return answers


def config(tmp_path: Path, arms: list[dict], name: str = "cfg", **extra) -> Path:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    data = {"model": str(model), "engine": "vllm", "output_dir": str(tmp_path / "out"),
            "arms": arms, "parity": {"max_abs_delta_points": 5.0}, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(capsys, path: Path, *flags: str) -> tuple[int, str]:
    rc = cli.main(["run", str(path), *flags])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def verdicts(run_dir: Path) -> dict[str, str]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {name: p["verdict"] for name, p in summary["parity"].items()}


BASE = baseline_answers(25)  # 100 items over four MMMU subjects


def test_exit_codes_follow_the_verdicts(tmp_path, capsys, fake_children):
    out = tmp_path / "out"
    fake_children.update(base=BASE, same=BASE, moved=flip_every(BASE, 5), crashes=BASE)
    same = config(tmp_path, [{"name": "base"}, {"name": "same"}], "same")
    moved = config(tmp_path, [{"name": "base"}, {"name": "same"}, {"name": "moved"}], "moved")
    crash = config(tmp_path, [{"name": "base"}, {"name": "moved"},
                              {"name": "crashes", "env": {"FAKE_CRASH": "1"}}], "crash")

    rc, text = run(capsys, same)
    assert verdicts(out / "same") == {"same": "PASS"} and rc == 0, text
    assert "exit code 0" in text

    rc, text = run(capsys, moved)
    assert verdicts(out / "moved") == {"same": "PASS", "moved": "FAIL"} and rc == 1, text
    assert "exit code 1 (a verdict is FAIL)" in text

    rc, text = run(capsys, crash)
    v = verdicts(out / "crash")
    assert v == {"moved": "FAIL", "crashes": "ERROR"} and rc == 3, text  # ERROR comes first
    status = json.loads((out / "crash" / "crashes" / "status.json").read_text())
    assert status["phases"]["accuracy"] == "failed"
    assert "engine refused this arm's settings" in status["errors"]["accuracy"]
    assert status["phases"]["throughput"] == "failed"
    assert json.loads((out / "crash" / "moved" / "status.json").read_text())["phases"] == {
        "accuracy": "complete", "throughput": "complete"}  # the arm after it... and before: done

    # --no-fail: the report without failing, whatever the verdicts, once the run completed
    assert run(capsys, moved, "--no-fail")[0] == 0
    assert run(capsys, crash, "--no-fail")[0] == 0
    # a throughput-only run has no verdicts: 0 when every arm completed, 3 when one did not
    tp_only = config(tmp_path, [{"name": "base"}, {"name": "same"}], "tp", accuracy=False)
    assert run(capsys, tp_only)[0] == 0
    tp_crash = config(tmp_path, [{"name": "base"}, {"name": "x", "env": {"FAKE_CRASH": "1"}}],
                      "tpc", accuracy=False)
    fake_children["x"] = BASE
    assert run(capsys, tp_crash)[0] == 3


def mtimes(run_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns
            for p in run_dir.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl")
            and p.parent.name != run_dir.name}


def test_rerun_redoes_an_arm_whose_settings_changed_only_with_force(tmp_path, capsys, fake_children):
    from test_arms_config import fake_vllm_python

    fake_children.update(base=BASE, cand=BASE)
    run_dir = tmp_path / "out" / "cfg"
    arms = [{"name": "base"}, {"name": "cand", "env": {"ARM_FLAG": "1"}}]
    rc, _ = run(capsys, config(tmp_path, arms))
    assert rc == 0
    seen = json.loads((run_dir / "cand" / THROUGHPUT).read_text())["arm_env"]
    assert seen == {"ARM_FLAG": "1"}  # what the child saw
    settings = json.loads((run_dir / "cand" / ARM_SETTINGS).read_text())
    assert settings["env"] == {"ARM_FLAG": "1"} and settings["backend"] == "AUTO"
    assert settings["python"] == sys.executable and settings["versions"]["vllm"]
    assert json.loads((run_dir / "run.json").read_text())["arm_settings"]["cand"]["env"] == {"ARM_FLAG": "1"}
    before = mtimes(run_dir)

    # the same settings: complete arms are skipped, nothing rewritten
    rc, text = run(capsys, config(tmp_path, arms))
    assert rc == 0 and "base accuracy: complete, skipped" in text and "cand accuracy: complete, skipped" in text
    assert "throughput: complete for every arm, skipped" in text
    assert mtimes(run_dir) == before

    # an environment change is another setting: refused, one line naming the arm and the change
    changed = [{"name": "base"}, {"name": "cand", "env": {"ARM_FLAG": "2"}}]
    rc, text = run(capsys, config(tmp_path, changed))
    assert rc == 2 and text.count("\n") == 1, text
    assert "arm 'cand'" in text and "env.ARM_FLAG '1' -> '2'" in text and "--force" in text
    assert mtimes(run_dir) == before
    # so is a config-wide env change (every arm's environment), named for the first arm
    rc, text = run(capsys, config(tmp_path, arms, env={"SHARED": "x"}))
    assert rc == 2 and "arm 'base'" in text and "env.SHARED unset -> 'x'" in text
    # and another interpreter whose vLLM differs
    other = [{"name": "base"}, {"name": "cand", "env": {"ARM_FLAG": "1"},
                                "python": fake_vllm_python(tmp_path)}]
    rc, text = run(capsys, config(tmp_path, other))
    assert rc == 2 and "arm 'cand'" in text and "versions.vllm" in text and "'9.9.9'" in text
    assert "python " in text

    # --force redoes it: the child now sees the new value
    rc, _ = run(capsys, config(tmp_path, changed), "--force")
    assert rc == 0
    assert json.loads((run_dir / "cand" / THROUGHPUT).read_text())["arm_env"] == {"ARM_FLAG": "2"}
    assert json.loads((run_dir / "cand" / ARM_SETTINGS).read_text())["env"] == {"ARM_FLAG": "2"}

    # a run dir from before settings.json: the arm's settings come from run.json's config
    for arm in ("base", "cand"):
        (run_dir / arm / ARM_SETTINGS).unlink()
    assert run(capsys, config(tmp_path, changed))[0] == 0  # unchanged: skipped
    rc, text = run(capsys, config(tmp_path, arms))
    assert rc == 2 and "arm 'cand'" in text and "env.ARM_FLAG '2' -> '1'" in text

    # an arm none of whose phases completed keeps nothing: new settings rerun it without --force
    crash = [{"name": "base"}, {"name": "cand", "env": {"ARM_FLAG": "2"}},
             {"name": "late", "env": {"FAKE_CRASH": "1"}}]
    fake_children["late"] = BASE
    assert run(capsys, config(tmp_path, crash))[0] == 3
    fixed = crash[:2] + [{"name": "late", "env": {"FAKE_CRASH": "0"}}]
    rc, text = run(capsys, config(tmp_path, fixed))
    assert rc == 0, text
    assert "late accuracy: retrying (failed in an earlier run)" in text
    assert "base accuracy: complete, skipped" in text


@pytest.mark.parametrize("complete, verdicts, kw, code", [
    ({"a": True, "b": True}, {"b": "PASS"}, {}, 0),
    ({"a": True, "b": True}, {"b": "INCONCLUSIVE"}, {}, 0),  # as `vit-parity report` counts it
    ({"a": True, "b": True, "c": True}, {"b": "PASS", "c": "FAIL"}, {}, 1),
    ({"a": True, "b": True, "c": True}, {"b": "ERROR", "c": "FAIL"}, {}, 3),
    ({"a": True, "b": True}, {"b": "SOMETHING_NEW"}, {}, 3),  # never a silent 0
    ({"a": True, "b": False}, {"b": "PASS"}, {}, 3),  # an incomplete arm, whatever its verdict
    ({"a": True, "b": True}, {"b": "FAIL"}, {"accuracy": False}, 0),  # no accuracy: no verdicts
    ({"a": True, "b": True}, None, {}, 0),  # --no-report
    ({"a": True, "b": False}, None, {}, 3),
    ({"a": True, "b": False}, {"b": "ERROR"}, {"no_fail": True}, 0),
    ({"a": True, "b": True}, None, {"report_failed": True, "no_fail": True}, 3),
])
def test_exit_code_rule(complete, verdicts, kw, code):
    from vit_backend_plugin.harness.outcome import exit_code

    summary = None if verdicts is None else {
        "parity": {arm: {"verdict": v, "reason": ""} for arm, v in verdicts.items()}}
    assert exit_code(complete, summary, **{"accuracy": True, **kw}) == code
