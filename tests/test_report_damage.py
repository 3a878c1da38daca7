"""Damage the report must survive: files of the wrong shape are counted as unreadable, shown as a
problem, and a report is still written (no traceback). The runner's check agrees: incomplete."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from test_report_fixtures import Backend, baseline_answers, make_run

from vit_backend_plugin.harness.verify import verify_accuracy
from vit_backend_plugin.report import build_report
from vit_backend_plugin.report import cli as report_cli
from vit_backend_plugin.rundir.layout import ArmStatus


def run_dir(tmp_path: Path) -> Path:
    a = baseline_answers(10)
    return make_run(tmp_path, {"x": Backend(a), "y": Backend(a)})


def samples_file(run: Path) -> Path:
    return sorted((run / "y" / "lm_eval").rglob("samples_mmmu_val_math_*.jsonl"))[0]


def report(run: Path) -> tuple[dict, str]:
    paths = build_report(run)
    return json.loads(paths["json"].read_text()), paths["md"].read_text()


@pytest.mark.parametrize("line", [b"[1, 2]", b'"x"', b"42", b"null", b"\xff\xfe\x00garbage\x80\x81",
                                  b'{"no_doc_id": 1}', b'{"doc_id": "7"}'],
                         ids=["list", "string", "number", "null", "binary", "no-doc-id", "doc-id-text"])
def test_a_samples_line_that_is_not_an_item_is_unreadable(tmp_path, line):
    run = run_dir(tmp_path)
    f = samples_file(run)
    f.write_bytes(f.read_bytes() + line + b"\n")
    s, md = report(run)
    y = s["arms"]["y"]
    assert any("mmmu_val_math: 1 unreadable line(s)" in p for p in y["problems"]), y["problems"]
    assert y["samples_logged"] == 40  # every good line still read
    assert s["parity"]["y"]["verdict"] != "PASS" and "damaged" in s["parity"]["y"]["reason"]
    assert "unreadable line" in md
    assert "unreadable line" in verify_accuracy(run / "y", ["mmmu_val"])


def test_a_samples_file_of_binary_garbage(tmp_path):
    run = run_dir(tmp_path)
    samples_file(run).write_bytes(bytes(range(256)) * 40)
    s, _ = report(run)
    assert any("mmmu_val_math:" in p and "unreadable line" in p for p in s["arms"]["y"]["problems"])
    assert s["arms"]["y"]["samples_logged"] == 30  # the other three tasks


@pytest.mark.parametrize("status", [
    [1, 2],
    "complete",
    {"backend": "y", "phases": ["accuracy", "throughput"]},
    {"backend": "y", "phases": {"accuracy": "failed"}, "errors": ["boom"]},
    {"backend": "y", "phases": {"accuracy": {"state": "complete"}}},
    {"backend": ["y"]},
], ids=["list", "string", "phases-list", "errors-list", "state-object", "backend-list"])
def test_a_status_json_of_the_wrong_shape_is_unreadable(tmp_path, status):
    run = run_dir(tmp_path)
    (run / "y" / "status.json").write_text(json.dumps(status))
    assert ArmStatus.read(run / "y") is None  # the runner redoes the backend
    s, md = report(run)
    y = s["arms"]["y"]
    assert y["state"] == "incomplete"
    assert any("status.json missing or unreadable" in p for p in y["problems"])
    assert "status.json missing or unreadable" in md


def test_a_status_json_of_binary_garbage(tmp_path):
    run = run_dir(tmp_path)
    (run / "y" / "status.json").write_bytes(b"\xff\xfe{\x80")
    s, _ = report(run)
    assert s["arms"]["y"]["state"] == "incomplete"


@pytest.mark.parametrize("damage", ["list", "entries", "loop"])
def test_a_results_file_of_the_wrong_shape(tmp_path, damage):
    run = run_dir(tmp_path)
    res = next((run / "y" / "lm_eval").rglob("results_*.json"))
    raw = json.loads(res.read_text())
    if damage == "list":
        raw = [raw]
    elif damage == "entries":  # one entry not an object: the rest still read
        raw["results"]["mmmu_val_art"] = "oops"
    else:  # a group that contains itself
        raw["group_subtasks"]["mmmu_val_science"].append("mmmu_val")
    res.write_text(json.dumps(raw))
    s, _ = report(run)
    y = s["arms"]["y"]
    if damage == "list":
        assert any("corrupt or truncated" in p for p in y["problems"])
        assert s["parity"]["y"]["verdict"] == "ERROR"
    else:
        assert y["accuracy"] == s["arms"]["x"]["accuracy"]  # the root row still read


@pytest.mark.parametrize("change", [{"config": ["parity"]}, {"backends": "xy"}, {"tasks": [1]}],
                         ids=["config-list", "backends-text", "tasks-numbers"])
def test_a_run_json_of_the_wrong_shape_is_a_one_line_error(tmp_path, capsys, change):
    run = run_dir(tmp_path)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, **change}))
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    assert report_cli.main(parser.parse_args([str(run)])) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "run.json" in err and "unreadable" in err, err
