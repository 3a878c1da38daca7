"""summary.json's versioned schema: the shipped JSON Schema is the pydantic model's export, and
every summary the report writes (run dir or lm-eval folders, damaged arms included) validates."""

from __future__ import annotations

import argparse
import copy
import json

import pytest
from pydantic import ValidationError
from test_report_fixtures import Backend, baseline_answers, flip_every, make_run, write_control

from vit_backend_plugin.report import build_report
from vit_backend_plugin.report import cli as report_cli
from vit_backend_plugin.report.summary_schema import (
    SCHEMA_FILE,
    SCHEMA_VERSION,
    Summary,
    schema_text,
)

TOP_LEVEL = {"schema_version", "source", "run_id", "model", "engine", "tasks", "baseline", "arm_order",
             "thresholds", "problems", "accuracy_measured", "warnings", "arms", "parity", "speed",
             "speed_control", "speed_timing"}


def test_shipped_schema_is_the_models_export():
    assert SCHEMA_FILE.is_file(), "run python -m vit_backend_plugin.report.summary_schema"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "data/summary.schema.json is stale: run python -m vit_backend_plugin.report.summary_schema")
    schema = json.loads(SCHEMA_FILE.read_text())
    assert set(schema["required"]) == TOP_LEVEL and schema["additionalProperties"] is False
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION == 3


def summaries(tmp_path) -> list[dict]:
    a = baseline_answers(10)
    crashed = Backend(None, speed=None, phases={"accuracy": "failed", "throughput": "pending"},
                      errors={"accuracy": "RuntimeError: boom"})
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(flip_every(a, 3)), "gone": Backend(exists=False),
                              "crashed": crashed})
    write_control(run, "x")
    by_run = json.loads(build_report(run)["json"].read_text())
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    out = tmp_path / "o"
    report_cli.main(parser.parse_args(["--lm-eval", str(run / "x" / "lm_eval"), str(run / "y" / "lm_eval"),
                                       "--out", str(out)]))
    return [by_run, json.loads((out / "summary.json").read_text())]


def test_written_summaries_validate_against_the_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for s in summaries(tmp_path):
        assert set(s) == TOP_LEVEL and s["schema_version"] == 3
        validator.validate(s)
        assert Summary.model_validate(s).model_dump(mode="json") == s  # round trip: nothing lost
    by_run = summaries(tmp_path / "again")[0]
    assert by_run["parity"]["gone"]["verdict"] == "ERROR" and by_run["parity"]["gone"]["n"] is None
    assert by_run["arms"]["gone"]["state"] == "missing"
    assert by_run["speed_control"]["control_of"] == "x" and by_run["speed"]["gone"]["verdict"] == "not measured"


def test_a_summary_of_another_shape_is_rejected(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    good = summaries(tmp_path)[0]
    bad = []
    v1 = copy.deepcopy(good)  # version 1's names
    v1["backends"], v1["backend_order"] = v1.pop("arms"), v1.pop("arm_order")
    del v1["schema_version"]
    bad.append(v1)
    verdict = copy.deepcopy(good)
    verdict["parity"]["y"]["verdict"] = "MAYBE"
    bad.append(verdict)
    extra = copy.deepcopy(good)
    extra["arms"]["x"]["surprise"] = 1
    bad.append(extra)
    for s in bad:
        assert not validator.is_valid(s)
        with pytest.raises(ValidationError):
            Summary.model_validate(s)
