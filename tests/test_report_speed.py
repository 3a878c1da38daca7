"""Speed verdicts in the report (markdown, HTML, summary.json) next to the accuracy verdicts: the
A/A control, older run dirs without rounds, medians over the rounds, the power figure; and the
exit code never moves with speed."""

from __future__ import annotations

import json
from pathlib import Path

from test_report_fixtures import Backend, baseline_answers, make_run, write_control

from vit_backend_plugin.cli import main as vit_parity
from vit_backend_plugin.common.files import atomic_write_json
from vit_backend_plugin.report import build_report
from vit_backend_plugin.report.exit_codes import exit_code
from vit_backend_plugin.rundir.layout import AA_CONTROL, RUN_INFO

BIG = 60
# requests/s per round as the interleaved harness recorded it (round r: the same images in
# every arm, so the rounds move together)
BASE = [30.1, 28.4, 30.9, 29.2, 29.8]
SLOWER = [27.2, 25.4, 27.6, 26.4, 26.9]  # ~10% slower every round
CONTROL = [30.3, 28.2, 31.0, 29.1, 29.9]  # the baseline again, in a second engine


def write_rounds(arm_dir: Path, values: list[float], *, paired: bool = True, **extra) -> None:
    repeats = [{"requests_per_s": v, "ttft_mean_ms": 12000 / v, **({"round": r, "slot": 3 * r} if paired else {})}
               for r, v in enumerate(values)]
    doc = {"engine": "vllm", "metrics": {"requests_per_s": 999.0, "ttft_mean_ms": 1.0},  # not medians
           "repeats": repeats, **extra}
    if paired:
        doc["interleave"] = {"together": False, "rounds": len(values), "order": []}
    atomic_write_json(arm_dir / "throughput.json", doc)


def ask_for_control(run: Path) -> None:
    info = json.loads((run / RUN_INFO).read_text())
    info["config"]["throughput"] = {"aa_control": True}
    atomic_write_json(run / RUN_INFO, info)


def slower_with_control(tmp_path: Path, control: list[float]) -> Path:
    """A run: ``slow`` ~10% behind ``base`` every round, and an A/A control of ``base``."""
    a = baseline_answers(BIG)
    run = make_run(tmp_path, {"base": Backend(a), "slow": Backend(a)})
    write_rounds(run / "base", BASE)
    write_rounds(run / "slow", SLOWER)
    ask_for_control(run)
    (run / AA_CONTROL).mkdir()
    write_rounds(run / AA_CONTROL, control, control_of="base")
    return run


def test_speed_verdicts_control_and_exit_code(tmp_path, capsys):
    run = slower_with_control(tmp_path, CONTROL)
    paths = build_report(run)
    s = json.loads(paths["json"].read_text())
    md, html = paths["md"].read_text(), paths["html"].read_text()

    sp = s["speed"]["slow"]
    assert sp["verdict"] == "slower" and sp["primary_metric"] == "requests_per_s"
    r = sp["metrics"]["requests_per_s"]
    assert r["method"] == "paired" and r["rounds"] == 5 and r["ci_high"] < 1
    assert sp["metrics"]["ttft_mean_ms"]["verdict"] == "slower" and sp["metrics"]["ttft_mean_ms"]["ratio"] > 1
    ctl = s["speed_control"]
    assert ctl["control_of"] == "base" and ctl["verdict"] == "no detectable difference"
    assert ctl["problems"] == [] and ctl["state"] == "complete"
    assert s["speed_timing"] == {"confidence": 0.95, "interleaved": True, "together": False, "rounds": 5}
    # the medians shown are over the rounds (throughput.json's "metrics" said 999)
    assert s["arms"]["base"]["throughput"]["requests_per_s"] == 29.8
    assert ctl["throughput"]["requests_per_s"] == 29.9

    # next to the accuracy verdict, in both files; the table, the resolution and how it was timed
    verdict_line = md.splitlines().index(next(x for x in md.splitlines() if "**slow** PASS" in x))
    assert md.splitlines()[verdict_line + 1].startswith("  - ⏱️ speed: slower (requests/s ×0.9")
    assert "## Speed verdicts vs baseline base" in md and "smallest ratio this run resolves" in md
    assert f"{AA_CONTROL} (A/A control of base)" in md
    assert "Rounds were interleaved across arms" in md and "paired with the baseline's round" in md
    assert "Medians over each arm's timed rounds" in md
    assert "speed: slower" in html and "Speed verdicts vs baseline base" in html
    assert "80% power to detect a change of" in md and s["parity"]["slow"]["min_detectable_delta"] > 0

    # a speed verdict never changes the exit code: accuracy PASS, speed slower -> 0
    assert s["parity"]["slow"]["verdict"] == "PASS" and exit_code(s) == 0
    assert vit_parity(["report", str(run), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "speed        slow: slower" in out
    assert f"speed        {AA_CONTROL} (A/A control of base): no detectable difference" in out


def test_repeats_without_rounds_are_said_to_be_unpaired(tmp_path):
    a = baseline_answers(5)
    run = make_run(tmp_path, {"base": Backend(a), "slow": Backend(a)})
    write_rounds(run / "base", BASE, paired=False)
    write_rounds(run / "slow", SLOWER, paired=False)
    paths = build_report(run)
    s, md = json.loads(paths["json"].read_text()), paths["md"].read_text()
    r = s["speed"]["slow"]["metrics"]["requests_per_s"]
    assert r["method"] == "unpaired" and s["speed_timing"]["interleaved"] is False
    assert "Rounds were not interleaved" in md and "compared unpaired" in md
    assert s["speed_control"] is None and AA_CONTROL not in md


def test_control_asked_for_but_missing_or_of_another_arm(tmp_path):
    a = baseline_answers(5)
    run = make_run(tmp_path, {"base": Backend(a), "other": Backend(a)})
    ask_for_control(run)
    s = json.loads(build_report(run)["json"].read_text())
    assert s["speed_control"]["state"] == "missing" and s["speed_control"]["verdict"] == "not measured"
    assert "aa_control" in s["speed_control"]["problems"][0]
    write_control(run, "other")
    s = json.loads(build_report(run)["json"].read_text())
    assert s["speed_control"]["control_of"] == "other"
    assert any("not the baseline" in p for p in s["speed_control"]["problems"])
    assert exit_code(s) == 0  # the control never decides the code


def test_one_measurement_per_arm_gives_no_interval(tmp_path):
    a = baseline_answers(5)
    run = make_run(tmp_path, {"base": Backend(a), "x": Backend(a)})
    for arm in ("base", "x"):
        atomic_write_json(run / arm / "throughput.json",
                          {"engine": "vllm", "metrics": {"requests_per_s": 10.0}})
    paths = build_report(run)
    s = json.loads(paths["json"].read_text())
    assert s["speed"]["x"]["verdict"] == "not enough rounds" and s["speed_timing"]["interleaved"] is None
    assert "one measurement per arm gives no interval" in paths["md"].read_text()


def test_throughput_only_run_has_speed_verdicts_and_no_accuracy_error(tmp_path, capsys):
    # config accuracy: false (the full-size ViT configs): the arms have no lm-eval output by
    # design; that is no ERROR, no problem and no failing exit code, only speed verdicts
    run = make_run(tmp_path, {"base": Backend(None), "slow": Backend(None)})
    info = json.loads((run / RUN_INFO).read_text())
    info["config"]["accuracy"] = False
    atomic_write_json(run / RUN_INFO, info)
    write_rounds(run / "base", BASE)
    write_rounds(run / "slow", SLOWER)
    paths = build_report(run)
    s, md, html = (json.loads(paths["json"].read_text()), paths["md"].read_text(),
                   paths["html"].read_text())
    assert s["accuracy_measured"] is False and s["parity"] == {}
    assert s["speed"]["slow"]["verdict"] == "slower"
    assert all(a["problems"] == [] for a in s["arms"].values())
    assert "💥" not in md and "ERROR</b>" not in html and "## Problems" not in md
    assert "throughput only (the config's accuracy: false)" in md and "Parity vs baseline" not in md
    assert exit_code(s) == 0 and vit_parity(["report", str(run), "--strict"]) == 0
    assert "speed        slow: slower" in capsys.readouterr().out

    # the same files with accuracy on (the default): the missing lm-eval output is an ERROR
    info["config"].pop("accuracy")
    atomic_write_json(run / RUN_INFO, info)
    s = json.loads(build_report(run)["json"].read_text())
    assert s["accuracy_measured"] is True and s["parity"]["slow"]["verdict"] == "ERROR"
    assert exit_code(s) == 3


def test_a_difference_inside_the_a_a_spread_is_said_so(tmp_path):
    from vit_backend_plugin.report.speed_stats import control_spread, within_spread

    # the control's interval and its mirror image about 1
    lo, hi = control_spread(0.8, 1.0)
    assert (round(lo, 3), round(hi, 3)) == (0.8, 1.25)
    assert control_spread(None, 1.1) is None and within_spread(1.1, None) is None
    assert within_spread(1.2, (0.8, 1.25)) and not within_spread(1.3, (0.8, 1.25))

    # a second engine of the baseline's settings that reads ~15% apart, unsteadily
    run = slower_with_control(tmp_path, [25.1, 27.0, 24.2, 26.9, 23.8])
    s = json.loads(build_report(run)["json"].read_text())
    sp = s["speed"]["slow"]
    assert sp["verdict"] == "slower" and sp["within_control"] is True
    assert "within the A/A control's spread" in sp["reason"]
    assert "within the A/A control's spread" in build_report(run)["md"].read_text()

    # the steady control of the first test: the 10% is beyond it
    write_rounds(run / AA_CONTROL, CONTROL, control_of="base")
    sp = json.loads(build_report(run)["json"].read_text())["speed"]["slow"]
    assert sp["within_control"] is False and "A/A" not in sp["reason"]
