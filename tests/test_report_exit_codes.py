"""CI gating: `vit-parity report` exits 0 when every verdict is PASS or INCONCLUSIVE, 1 on a FAIL,
3 on an ERROR (before a FAIL), 2 on usage errors; --no-fail always 0, --strict makes an
INCONCLUSIVE a FAIL. One rule: report.exit_codes.exit_code(summary)."""

from __future__ import annotations

from typing import get_args

import pytest
from test_report_fixtures import Backend, baseline_answers, flip_every, make_run

from vit_backend_plugin.cli import main as vit_parity
from vit_backend_plugin.report.exit_codes import DECIDED, exit_code
from vit_backend_plugin.report.parity import ReportVerdict

BIG = 60


def summary(*verdicts: str) -> dict:
    return {"parity": {f"arm{i}": {"verdict": v} for i, v in enumerate(verdicts)}}


def test_every_verdict_has_a_rule():
    assert DECIDED == set(get_args(ReportVerdict)) == {"PASS", "FAIL", "INCONCLUSIVE", "ERROR"}


@pytest.mark.parametrize("verdicts, code, strict_code", [
    ((), 0, 0),
    (("PASS",), 0, 0),
    (("PASS", "INCONCLUSIVE"), 0, 1),
    (("PASS", "FAIL"), 1, 1),
    (("INCONCLUSIVE", "FAIL"), 1, 1),
    (("ERROR",), 3, 3),
    (("FAIL", "ERROR", "PASS"), 3, 3),
    (("PASS", "MAYBE"), 3, 3),  # a verdict nobody knows is never a silent 0
])
def test_exit_code_rule(verdicts, code, strict_code):
    assert exit_code(summary(*verdicts)) == code
    assert exit_code(summary(*verdicts), inconclusive_fails=True) == strict_code


def test_a_damaged_summary_is_an_error():
    assert exit_code({"parity": ["PASS"]}) == 3
    assert exit_code({"parity": {"x": "PASS"}}) == 3


def runs(tmp_path):
    a = baseline_answers(BIG)
    crashed = Backend(None, speed=None, phases={"accuracy": "failed", "throughput": "pending"},
                      errors={"accuracy": "RuntimeError: boom"})
    return {
        "pass": make_run(tmp_path, {"x": Backend(a), "y": Backend(a)}, run_id="pass"),
        "inconclusive": make_run(tmp_path, {"x": Backend(a), "y": Backend(flip_every(a, 40))},
                                 run_id="inconclusive"),
        "fail": make_run(tmp_path, {"x": Backend(a), "y": Backend(flip_every(a, 5))}, run_id="fail"),
        "error": make_run(tmp_path, {"x": Backend(a), "y": Backend(a), "z": crashed}, run_id="error"),
        "fail+error": make_run(tmp_path, {"x": Backend(a), "y": Backend(flip_every(a, 5)), "z": crashed},
                               run_id="fail-error"),
    }


@pytest.mark.parametrize("case, code", [("pass", 0), ("inconclusive", 0), ("fail", 1), ("error", 3),
                                        ("fail+error", 3)])
def test_the_command_exits_by_the_verdicts(tmp_path, capsys, case, code):
    run = runs(tmp_path)[case]
    assert vit_parity(["report", str(run)]) == code
    out = capsys.readouterr().out
    assert {"pass": "PASS", "inconclusive": "INCONCLUSIVE", "fail": "FAIL", "error": "ERROR",
            "fail+error": "ERROR"}[case] in out
    assert (run / "summary.json").is_file()  # the report is written whatever the code
    assert vit_parity(["report", str(run), "--no-fail"]) == 0
    strict = vit_parity(["report", str(run), "--strict"])
    assert strict == (1 if case == "inconclusive" else code)


def test_usage_error_is_2(tmp_path, capsys):
    assert vit_parity(["report", str(tmp_path)]) == 2
    assert vit_parity(["report", str(tmp_path), "--no-fail"]) == 2  # --no-fail is about verdicts
    assert "exit codes:" in vit_parity_help(capsys)


def vit_parity_help(capsys) -> str:
    with pytest.raises(SystemExit) as e:
        vit_parity(["report", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for line in ("0  every verdict PASS or INCONCLUSIVE", "1  at least one FAIL", "3  at least one ERROR",
                 "2  usage error", "--no-fail", "--strict"):
        assert line in text, line
    return text
