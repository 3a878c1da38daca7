"""One reader of lm-eval's output: the runner's completeness check and the report pick the same
results file and read the same samples lines (directories written by lm-eval's own tracker)."""

from __future__ import annotations

import json
from pathlib import Path

from test_report_fixtures import Backend, baseline_answers, flip_every, make_run, write_lm_eval

from vit_backend_plugin.harness.verify import verify_accuracy
from vit_backend_plugin.report import build_report
from vit_backend_plugin.rundir.lm_eval_output import read_output


def samples_files(results: Path) -> list[Path]:
    stamp = results.stem.removeprefix("results_")
    return sorted(results.parent.glob(f"samples_*_{stamp}.jsonl"))


def interrupt(results: Path) -> None:
    """As a kill while lm-eval writes samples: the last task's file half written, none after it."""
    files = samples_files(results)
    files[1].write_text(files[1].read_text()[:-300])
    for f in files[2:]:
        f.unlink()


def two_runs(tmp_path: Path, *, interrupted: str) -> tuple[Path, Path, Path]:
    a = baseline_answers(5)
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(a)})
    old = next((run / "y" / "lm_eval").rglob("results_*.json"))
    new = write_lm_eval(run / "y" / "lm_eval", flip_every(a, 2, to="right"))  # a rerun, later stamp
    assert new != old and sorted([old.name, new.name]) == [old.name, new.name]
    interrupt(old if interrupted == "old" else new)
    return run, old, new


def report_of(run: Path) -> dict:
    return json.loads(build_report(run)["json"].read_text())


def test_old_interrupted_and_new_complete_read_the_same_way_by_runner_and_report(tmp_path):
    run, _old, new = two_runs(tmp_path, interrupted="old")
    assert verify_accuracy(run / "y", ["mmmu_val"]) is None  # complete: the new one counts
    assert read_output(run / "y" / "lm_eval").results_path == new
    s = report_of(run)
    y = s["arms"]["y"]
    assert y["results_file"] == str(new.relative_to(run))
    assert y["problems"] == [] and y["samples_logged"] == 20
    assert s["parity"]["y"]["c"] > 0  # the new run's answers (half flipped to right), not the old


def test_new_interrupted_the_older_complete_one_counts_for_both(tmp_path):
    run, old, new = two_runs(tmp_path, interrupted="new")
    assert verify_accuracy(run / "y", ["mmmu_val"]) is None
    out = read_output(run / "y" / "lm_eval")
    assert out.results_path == old and [p for p, _ in out.passed_over] == [new]
    s = report_of(run)
    y = s["arms"]["y"]
    assert y["results_file"] == str(old.relative_to(run))
    assert s["parity"]["y"]["b"] == s["parity"]["y"]["c"] == 0  # the old run: same answers as x
    assert any(new.name in p and "incomplete" in p for p in y["problems"])  # and it says so


def test_only_an_interrupted_run_is_incomplete_for_the_runner_and_damaged_for_the_report(tmp_path):
    a = baseline_answers(5)
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(a)})
    interrupt(next((run / "y" / "lm_eval").rglob("results_*.json")))
    why = verify_accuracy(run / "y", ["mmmu_val"])
    assert why is not None and "unreadable line" in why
    s = report_of(run)
    assert s["parity"]["y"]["verdict"] in ("INCONCLUSIVE", "FAIL")
    assert any("unreadable line" in p for p in s["arms"]["y"]["problems"])
    assert any("samples file missing" in p for p in s["arms"]["y"]["problems"])


def test_a_line_separator_inside_a_response_is_one_line(tmp_path):
    """lm-eval writes JSON with ensure_ascii=False: U+2028 in a model's answer stays raw, and
    str.splitlines() would cut the line there."""
    a = baseline_answers(5)
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(a)})
    f = samples_files(next((run / "y" / "lm_eval").rglob("results_*.json")))[0]
    lines = [json.loads(x) for x in f.read_text(encoding="utf-8").split("\n") if x.strip()]
    lines[0]["filtered_resps"] = [lines[0]["filtered_resps"][0] + "\u2028\u0085 done"]
    f.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    assert verify_accuracy(run / "y", ["mmmu_val"]) is None
    s = report_of(run)
    assert s["arms"]["y"]["problems"] == [] and s["arms"]["y"]["samples_logged"] == 20
