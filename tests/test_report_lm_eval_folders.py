"""`vit-parity report --lm-eval BASE CAND ...`: lm-eval output folders given by hand get the same
verdicts and item differences as the run-dir report of the same data; arguments are checked
before anything is read; lm-eval's recorded config is compared; bench-serve JSON fills speed."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import pytest
from test_report_fixtures import (
    Backend,
    baseline_answers,
    flip_every,
    make_run,
    tasks_of,
    write_lm_eval,
)

from vit_backend_plugin.report import build_report
from vit_backend_plugin.report import cli as report_cli
from vit_backend_plugin.report.exit_codes import exit_code
from vit_backend_plugin.report.lm_eval_source import default_names
from vit_backend_plugin.report.metrics import BENCH_SERVE_METRICS

BIG = 60


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    rc = report_cli.main(parser.parse_args([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return rc, out, err


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("cand", ["same", "fifth-flipped", "seventh-right"])
def test_lm_eval_folders_give_the_run_dirs_verdicts_and_differences(tmp_path, capsys, cand):
    a = baseline_answers(BIG)
    b = {"same": a, "fifth-flipped": flip_every(a, 5), "seventh-right": flip_every(a, 7, to="right")}[cand]
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(b), "z": Backend(flip_every(a, 3))})
    by_run = json.loads(build_report(run)["json"].read_text())

    out = tmp_path / "cmp"
    rc, stdout, err = run_cli(capsys, "--lm-eval", run / "x" / "lm_eval", run / "y" / "lm_eval",
                              run / "z" / "lm_eval", "--names", "x,y,z", "--out", out)
    by_lm = summary_of(out)
    assert err == "" and by_lm["source"] == "lm_eval" and by_run["source"] == "run_dir"
    assert by_lm["parity"] == by_run["parity"]  # verdict, statistics and every differing item
    assert {n: by_lm["arms"][n]["results"] for n in "xyz"} == {n: by_run["arms"][n]["results"] for n in "xyz"}
    assert rc == exit_code(by_run)
    assert by_lm["arm_order"] == ["x", "y", "z"] and by_lm["baseline"] == "x"
    assert by_lm["engine"] == "vllm-vlm" and by_lm["model"] == "Org/Tiny-VL-2B"
    assert by_lm["tasks"] == ["mmmu_val"]
    assert by_lm["warnings"] == []  # same model, tasks, limits, versions
    if cand == "fifth-flipped":
        assert by_lm["parity"]["y"]["verdict"] == "FAIL" and len(by_lm["parity"]["y"]["differing_items"]) == 48
    md = (out / "report.md").read_text()
    assert "arms read from lm-eval output folders" in md and f"{by_lm['parity']['y']['verdict']:<12} y:" in stdout


def test_default_names_are_the_folder_names_made_unique(tmp_path):
    assert default_names([tmp_path / "flash", tmp_path / "sdpa"]) == ["flash", "sdpa"]
    assert default_names([tmp_path / "a" / "lm_eval", tmp_path / "b" / "lm_eval"]) == ["a/lm_eval", "b/lm_eval"]
    assert default_names([tmp_path / "x", tmp_path / "x"]) == ["x", "x#2"]


def test_default_names_reach_the_summary(tmp_path, capsys):
    a = baseline_answers(3)
    run = make_run(tmp_path, {"x": Backend(a), "y": Backend(a)})
    rc, _, _ = run_cli(capsys, "--lm-eval", run / "x" / "lm_eval", run / "y" / "lm_eval",
                       "--out", tmp_path / "o")
    s = summary_of(tmp_path / "o")
    assert rc == 0 and s["arm_order"] == ["x/lm_eval", "y/lm_eval"] and list(s["parity"]) == ["y/lm_eval"]


def _bench(tmp_path: Path, name: str, **values) -> Path:
    """The keys `vllm bench serve --save-result` writes (vllm/benchmarks/serve.py)."""
    result = {"date": "20260101-000000", "backend": "openai-chat", "model_id": "Org/Tiny-VL-2B",
              "num_prompts": 100, "request_rate": "inf", "duration": 10.0, "completed": 100,
              "failed": 0, "total_input_tokens": 50000, "total_output_tokens": 100,
              "request_throughput": 10.0, "output_throughput": 10.0, "total_token_throughput": 5010.0,
              "mean_ttft_ms": 100.0, "median_ttft_ms": 95.0, "std_ttft_ms": 5.0, "p99_ttft_ms": 200.0,
              "mean_e2el_ms": 150.0, **values}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(result))
    return path


def _folders(tmp_path: Path, n: int = 2) -> list[Path]:
    a = baseline_answers(3)
    run = make_run(tmp_path, {f"a{i}": Backend(a) for i in range(n)})
    return [run / f"a{i}" / "lm_eval" for i in range(n)]


def test_bench_serve_fills_the_speed_section(tmp_path, capsys):
    folders = _folders(tmp_path)
    base = _bench(tmp_path, "base")
    fast = _bench(tmp_path, "fast", duration=8.0, request_throughput=12.5, mean_ttft_ms=80.0,
                  p99_ttft_ms=250.0, total_token_throughput=6262.5)
    out = tmp_path / "o"
    rc, _, err = run_cli(capsys, "--lm-eval", *folders, "--names", "base,fast",
                         "--bench-serve", base, fast, "--out", out)
    assert rc == 0, err
    s = summary_of(out)
    f = s["arms"]["fast"]
    assert f["throughput"]["requests_per_s"] == 12.5
    assert f["throughput"]["input_tokens_per_s"] == pytest.approx(50000 / 8.0)
    assert f["throughput"]["ttft_mean_ms"] == 80.0 and f["throughput"]["ttft_p99_ms"] == 250.0
    assert f["speedup"]["requests_per_s"] == pytest.approx(1.25)
    assert f["speedup"]["ttft_mean_ms"] == pytest.approx(100 / 80)
    assert f["speedup"]["input_tokens_per_s"] == pytest.approx(10.0 / 8.0)
    assert f["throughput_engine"] == "vllm bench serve" and f["throughput_file"] == str(fast)
    md = (out / "report.md").read_text()
    assert "12\\.5 (×1.25)" in md or "12.5 (×1.25)" in md
    assert "`vllm bench serve --save-result` files" in md


def test_bench_serve_keys_are_the_ones_vllm_writes():
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("vLLM not installed")
    src = (Path(next(iter(spec.submodule_search_locations))) / "benchmarks" / "serve.py").read_text()
    for key in [*BENCH_SERVE_METRICS, "total_input_tokens", "duration"]:
        stat = re.fullmatch(r"(mean|p99)_(\w+)_ms", key)
        if stat is None:
            assert f'"{key}"' in src, key  # written literally
            continue
        # latencies: result[f"mean_{metric}_ms"] / result[f"p{p_word}_{metric}_ms"] per metric
        assert f'process_one_metric("{stat.group(2)}"' in src, key
        written = 'f"mean_{metric_attribute_name}_ms"' if stat.group(1) == "mean" \
            else 'f"p{p_word}_{metric_attribute_name}_ms"'
        assert f"result[{written}]" in src, key


def _usage_cases(tmp_path: Path) -> dict[str, list]:
    f = _folders(tmp_path, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    bench = _bench(tmp_path, "b")
    appended = tmp_path / "appended.json"
    appended.write_text(bench.read_text() + "\n" + bench.read_text() + "\n")
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"metrics": {"x": 1}}))
    run = f[0].parent.parent
    out = ["--out", tmp_path / "o"]
    return {
        "one folder": (["--lm-eval", f[0], *out], "two or more"),
        "not a folder": (["--lm-eval", f[0], tmp_path / "nope", *out], "not a directory"),
        "no results": (["--lm-eval", f[0], empty, *out], "no lm-eval results"),
        "names count": (["--lm-eval", *f, "--names", "a,b", *out], "2 name(s) for 3"),
        "names twice": (["--lm-eval", *f[:2], "--names", "a,a", *out], "a given twice"),
        "bench count": (["--lm-eval", *f, "--bench-serve", bench, bench, *out], "2 file(s) for 3"),
        "bench missing": (["--lm-eval", *f[:2], "--bench-serve", bench, tmp_path / "no.json", *out],
                          "cannot read"),
        "bench appended": (["--lm-eval", *f[:2], "--bench-serve", bench, appended, *out], "--append-result"),
        "bench foreign": (["--lm-eval", *f[:2], "--bench-serve", bench, foreign, *out], "not a `vllm bench"),
        "no out": (["--lm-eval", *f[:2]], "needs --out"),
        "both sources": ([run, "--lm-eval", *f[:2], *out], "one of them"),
        "neither": ([*out], "one of them"),
        "names with run dir": ([run, "--names", "a,b"], "only with --lm-eval"),
        "bad threshold": (["--lm-eval", *f[:2], "--parity", "alpha=2", *out], "--parity alpha"),
        "threshold not k=v": (["--lm-eval", *f[:2], "--parity", "alpha", *out], "KEY=VALUE"),
    }


@pytest.mark.parametrize("case", [
    "one folder", "not a folder", "no results", "names count", "names twice", "bench count",
    "bench missing", "bench appended", "bench foreign", "no out", "both sources", "neither",
    "names with run dir", "bad threshold", "threshold not k=v"])
def test_bad_arguments_are_one_line_errors_before_anything_is_written(tmp_path, capsys, case):
    argv, needle = _usage_cases(tmp_path)[case]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("vit-parity report: error:"), err
    assert needle in err, err
    assert not (tmp_path / "o").exists()


def test_parity_thresholds_from_the_command_line(tmp_path, capsys):
    folders = _folders(tmp_path)  # 12 identical items: INCONCLUSIVE by default
    rc, _, _ = run_cli(capsys, "--lm-eval", *folders, "--out", tmp_path / "o")
    assert summary_of(tmp_path / "o")["parity"]["a1/lm_eval"]["verdict"] == "INCONCLUSIVE"
    rc, _, _ = run_cli(capsys, "--lm-eval", *folders, "--out", tmp_path / "o2", "--parity",
                       "min_items=10", "--parity", "max_abs_delta_points=20")
    s = summary_of(tmp_path / "o2")
    assert s["thresholds"]["min_items"] == 10 and s["parity"]["a1/lm_eval"]["verdict"] == "PASS"


def test_differing_runs_are_flagged_and_paired_on_common_items(tmp_path, capsys):
    a = baseline_answers(10)
    base_dir, cand_dir = tmp_path / "base", tmp_path / "cand"
    write_lm_eval(base_dir, a)
    # the candidate: another model, a task fewer, and fewer items of another (as with --limit)
    cand = {k: v for k, v in a.items() if k[0] != "mmmu_val_physics" and not (k[0] == "mmmu_val_math" and k[1] >= 6)}
    write_lm_eval(cand_dir, cand, model="Org/Other-VL")
    out = tmp_path / "o"
    rc, stdout, _ = run_cli(capsys, "--lm-eval", base_dir, cand_dir, "--out", out)
    s = summary_of(out)
    kinds = {(w["kind"], w["key"]) for w in s["warnings"]}
    assert {("config", "model_name"), ("config", "tasks"), ("config", "n_samples"),
            ("pairing", "items")} <= kinds, kinds
    p = s["parity"]["cand"]
    assert p["n"] == len(cand) and p["only_baseline"] == len(a) - len(cand) and p["only_candidate"] == 0
    pairing = next(w["message"] for w in s["warnings"] if w["kind"] == "pairing")
    assert f"paired on the {len(cand)} items" in pairing and "mmmu_val_physics 10" in pairing
    assert "mmmu_val_math 4" in pairing
    n_samples = next(w["message"] for w in s["warnings"] if w["key"] == "n_samples")
    assert "mmmu_val_math 6 vs 10" in n_samples
    md = (out / "report.md").read_text()
    assert "## ⚠️ Warnings" in md
    assert "model Org/Other-VL, baseline base has Org/Tiny-VL-2B" in md
    assert "| model | Org/Tiny-VL-2B | ⚠️ Org/Other-VL |" in md
    assert "warning      cand: model Org/Other-VL" in stdout
    assert rc == 0  # warnings never change the exit code
    assert set(tasks_of(10)) - {"mmmu_val_physics"} == set(s["arms"]["cand"]["lm_eval"]["tasks"])
