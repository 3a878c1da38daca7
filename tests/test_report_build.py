"""`vit-parity report` on synthetic run directories written the way `run` + lm-eval write them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from test_report_fixtures import (
    VLLM_SPEED,
    Backend,
    baseline_answers,
    flip_every,
    make_run,
    write_lm_eval,
)

from vit_backend_plugin.report import build_report
from vit_backend_plugin.report import cli as report_cli

BIG = 60  # per task; 4 tasks -> 240 items: identical answers give a CI of about +-0.8 pts


def report(run_dir: Path) -> tuple[dict, str, str]:
    paths = build_report(run_dir)
    assert set(paths) == {"md", "html", "json"}
    return (json.loads(paths["json"].read_text()), paths["md"].read_text(), paths["html"].read_text())


def test_identical_backends_pass(tmp_path):
    a = baseline_answers(BIG)
    run = make_run(tmp_path, {"FLASH_ATTN": Backend(a), "TORCH_SDPA": Backend(a)})
    s, md, html = report(run)
    p = s["parity"]["TORCH_SDPA"]
    assert s["baseline"] == "FLASH_ATTN" and list(s["parity"]) == ["TORCH_SDPA"]
    assert p["verdict"] == "PASS" and p["agreement"] == 1.0 and p["b"] == p["c"] == 0
    assert p["mcnemar_p"] == 1.0 and p["n"] == 4 * BIG and p["differing_items"] == []
    first_lines = md.splitlines()[:6]
    assert any("**TORCH_SDPA** PASS" in line for line in first_lines)
    assert "| Groups | Version | Filter | n-shot | Metric | FLASH_ATTN | TORCH_SDPA |" in md
    assert " - Art and Design" in md and "PASS" in html and "data:image/png;base64," in html


def test_flipped_fifth_fails_and_lists_the_items(tmp_path):
    a = baseline_answers(BIG)
    b = flip_every(a, 5)
    run = make_run(tmp_path, {"FLASH_ATTN": Backend(a), "XFORMERS": Backend(b)})
    s, md, _ = report(run)
    p = s["parity"]["XFORMERS"]
    assert p["verdict"] == "FAIL" and p["mcnemar_p"] < 0.05
    assert p["agreement"] == pytest.approx(0.8) and p["c"] == 0 and p["b"] > 0
    changed = sorted(k for k in a if a[k] != b[k])
    assert [(d["task"], d["doc_id"]) for d in p["differing_items"]] == changed
    d0 = p["differing_items"][0]
    assert d0["baseline_answer"] == a[changed[0]] and d0["answer"] == b[changed[0]]
    assert d0["subject"] in {"Art", "Design", "Math", "Physics"}
    assert "XFORMERS vs FLASH_ATTN: 48 item(s) differ" in md
    assert p["delta_acc"] == pytest.approx(-p["b"] / p["n"])


def test_tiny_sample_is_inconclusive(tmp_path):
    a = baseline_answers(3)
    s, md, _ = report(make_run(tmp_path, {"eager": Backend(a), "sdpa": Backend(a)}))
    assert s["parity"]["sdpa"]["verdict"] == "INCONCLUSIVE"
    assert "**sdpa** INCONCLUSIVE" in md.splitlines()[5]


def test_parity_thresholds_come_from_the_config(tmp_path):
    a = baseline_answers(10)  # 40 identical items: CI about +-4.7 pts
    s, _, _ = report(make_run(tmp_path, {"eager": Backend(a), "sdpa": Backend(a)},
                              parity={"max_abs_delta_points": 5.0}))
    assert s["parity"]["sdpa"]["verdict"] == "PASS" and s["thresholds"]["max_abs_delta_points"] == 5.0
    s, _, _ = report(make_run(tmp_path, {"eager": Backend(a), "sdpa": Backend(a)},
                              parity={"tolerance": 5.0}, run_id="r2"))
    assert s["thresholds"]["max_abs_delta_points"] == 1.0
    assert any("parity thresholds invalid" in p for p in s["problems"])


def test_crashed_missing_and_corrupt_backends_are_shown(tmp_path):
    a = baseline_answers(BIG)
    err = "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA error: an illegal memory access"
    run = make_run(tmp_path, {
        "FLASH_ATTN": Backend(a),
        "CRASHED": Backend(None, speed=None, phases={"accuracy": "failed", "throughput": "pending"},
                           errors={"accuracy": err}),
        "MISSING": Backend(exists=False),
        "CORRUPT": Backend(a),
        "HALF": Backend(a),
    })
    res = next((run / "CORRUPT" / "lm_eval").rglob("results_*.json"))
    res.write_text(res.read_text()[:200])  # truncated mid-write by a crash
    samples = sorted((run / "HALF" / "lm_eval").rglob("samples_mmmu_val_math_*.jsonl"))[0]
    samples.write_text(samples.read_text()[:-300])  # last line cut off
    s, md, html = report(run)
    v = {n: p["verdict"] for n, p in s["parity"].items()}
    assert v == {"CRASHED": "ERROR", "MISSING": "ERROR", "CORRUPT": "ERROR", "HALF": "INCONCLUSIVE"}
    assert s["arms"]["CRASHED"]["state"] == "failed"
    assert s["arms"]["MISSING"]["state"] == "missing"
    assert "illegal memory access" in s["parity"]["CRASHED"]["reason"]
    assert any("corrupt or truncated" in p for p in s["arms"]["CORRUPT"]["problems"])
    assert any("mmmu_val_math: 1 unreadable line" in p for p in s["arms"]["HALF"]["problems"])
    assert "damaged" in s["parity"]["HALF"]["reason"]
    for text in (md, html):
        for needle in ("CRASHED", "illegal memory access", "MISSING", "not run", "CORRUPT", "unreadable"):
            assert needle in text
    assert "| CRASHED |" in md  # a row in every table, not dropped


def test_speedups(tmp_path):
    a = baseline_answers(3)
    fast = {"requests_per_s": 12.0, "input_tokens_per_s": 6000.0, "ttft_mean_ms": 80.0, "ttft_p99_ms": 250.0}
    s, md, _ = report(make_run(tmp_path, {"base": Backend(a), "fast": Backend(a, speed=fast),
                                          "nospeed": Backend(a, speed=None)}))
    sp = s["arms"]["fast"]["speedup"]
    assert sp["requests_per_s"] == pytest.approx(1.2) and sp["input_tokens_per_s"] == pytest.approx(1.2)
    assert sp["ttft_mean_ms"] == pytest.approx(100 / 80) and sp["ttft_p99_ms"] == pytest.approx(0.8)
    assert s["arms"]["base"]["speedup"]["requests_per_s"] == 1.0
    assert s["arms"]["fast"]["throughput"] == fast
    assert s["arms"]["nospeed"]["throughput"] == {}
    assert any("no throughput.json" in p for p in s["arms"]["nospeed"]["problems"])
    assert "12 (×1.20)" in md and "80 (×1.25)" in md


def test_summary_numbers_are_lm_evals(tmp_path):
    a = baseline_answers(BIG)
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(flip_every(a, 7, to="right"))})
    s, md, _ = report(run)
    for name in ("x", "y"):
        res_file = next((run / name / "lm_eval").rglob("results_*.json"))
        raw = json.loads(res_file.read_text())
        entries = {**raw["results"], **raw["groups"]}
        b = s["arms"][name]
        assert b["accuracy"] == raw["groups"]["mmmu_val"]["acc,none"]
        assert b["stderr"] == raw["groups"]["mmmu_val"]["acc_stderr,none"]
        assert b["results_file"] == str(res_file.relative_to(run))
        assert {r["name"]: (r["value"], r["stderr"]) for r in b["results"]} == {
            k: (e["acc,none"], e["acc_stderr,none"]) for k, e in entries.items()}
        assert f"{raw['groups']['mmmu_val']['acc,none']:.4f} ± {raw['groups']['mmmu_val']['acc_stderr,none']:.4f}" in md
    # paired accuracies from samples agree with lm-eval's own aggregate
    p = s["parity"]["y"]
    assert p["acc_baseline"] == pytest.approx(s["arms"]["x"]["accuracy"])
    assert p["acc_candidate"] == pytest.approx(s["arms"]["y"]["accuracy"])


def test_newest_lm_eval_results_win(tmp_path):
    a = baseline_answers(5)
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(a)})
    newer = flip_every(a, 2, to="right")
    write_lm_eval(run / "y" / "lm_eval", newer)  # a rerun: a second results_<date>.json
    s, _, _ = report(run)
    assert s["parity"]["y"]["n"] == 20 and s["parity"]["y"]["c"] > 0


def test_atomic_writes_leave_no_temp_files(tmp_path, monkeypatch):
    a = baseline_answers(3)
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(a)})
    report(run)
    before = (run / "summary.json").read_text()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    from vit_backend_plugin.report import plots

    def boom(*_a, **_k):
        raise RuntimeError("plotting crashed")

    monkeypatch.setattr(plots, "accuracy_png", boom)
    with pytest.raises(RuntimeError):
        build_report(run)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert (run / "summary.json").read_text() == before  # untouched when the report failed


def test_out_dir_and_cli(tmp_path, capsys):
    a = baseline_answers(3)
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(a)})
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    assert report_cli.main(parser.parse_args([str(run), "--out", str(tmp_path / "out")])) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report.md", "report.html", "summary.json"}
    assert "INCONCLUSIVE" in capsys.readouterr().out
    assert report_cli.main(parser.parse_args([str(tmp_path)])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run directory" in err


def test_through_the_top_level_cli(tmp_path, capsys):
    from vit_backend_plugin.cli import main

    a = baseline_answers(3)
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(a, speed=dict(VLLM_SPEED))})
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()
