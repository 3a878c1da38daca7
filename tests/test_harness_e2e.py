"""End to end, on CPU, offline: `vit-parity demo` through the real CLI on vLLM's CPU engine
(lm-eval's own `vllm-vlm` model and mmmu_val task files; TORCH_SDPA against the plugin's
VIT_TRITON in Triton's interpreter), and `vit-parity run` resume/crash/force behaviour on the
transformers engine (quicker); one fresh process per backend and phase.

Slow (the demo runs once, a few minutes) but part of the default `pytest` run: marked `slow`,
not skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MMMU_ITEMS = 180  # 30 subjects x 6 generated items
ARMS = {"TORCH_SDPA": "TORCH_SDPA", "VIT_TRITON": "VIT_TRITON", "low_res": "TORCH_SDPA"}  # arm: backend


# --------------------------------------------------------------------------- helpers
def vit(*args: str, cache: Path, extra_env: dict[str, str] | None = None, timeout: float = 900):
    """Run `vit-parity ARGS` as a user would (fresh interpreter); returns (proc, seconds)."""
    env = dict(os.environ)
    env.pop("VIT_PARITY_FAULT", None)
    env.pop("VIT_ATTN_BACKEND", None)
    env.update({"VIT_PARITY_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1"})
    env.update(extra_env or {})
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "vit_backend_plugin.cli", *args],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=str(REPO),
    )
    return proc, time.monotonic() - t0


def out(proc) -> str:
    return proc.stdout + proc.stderr


def status(run_dir: Path, backend: str) -> dict:
    return json.loads((run_dir / backend / "status.json").read_text())


def results_file(run_dir: Path, backend: str) -> Path:
    files = sorted((run_dir / backend / "lm_eval").rglob("results_*.json"))
    assert len(files) == 1, files
    return files[0]


def samples(run_dir: Path, backend: str) -> dict[tuple[str, str], dict]:
    """(task, MMMU item id) -> the logged sample, read from lm-eval's samples_*.jsonl files."""
    found = {}
    for f in sorted((run_dir / backend / "lm_eval").rglob("samples_*.jsonl")):
        task = f.name[len("samples_"):].rsplit("_", 1)[0]
        for line in f.read_text().splitlines():
            d = json.loads(line)
            found[(task, d["doc"]["id"])] = d
    return found


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """One demo-asset cache per test session (the model and data are built once)."""
    return tmp_path_factory.mktemp("vit_parity_cache")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, cache):
    run_dir = tmp_path_factory.mktemp("demo") / "demo"
    proc, seconds = vit("demo", "--out", str(run_dir), cache=cache)
    return run_dir, proc, seconds


def mini_config(tmp: Path, name: str, **overrides) -> Path:
    """The hf demo config shrunk for resume/crash tests: one item per subject, tiny throughput."""
    from vit_backend_plugin.harness.demo import demo_config_data

    data = demo_config_data("hf")
    data.update(
        name=name,
        output_dir=str(tmp),
        limit=1,
        throughput={"image_sizes": [[56, 56]], "num_prompts": 2, "warmup": 0, "repeats": 1,
                    "concurrency": 2},
    )
    data.update(overrides)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --------------------------------------------------------------------------- the demo
def test_demo_end_to_end(demo_run):
    run_dir, proc, seconds = demo_run
    print(f"demo took {seconds:.0f}s")
    assert proc.returncode == 0, out(proc)[-4000:]
    assert f"run dir: {run_dir}" in out(proc)

    info = json.loads((run_dir / "run.json").read_text())
    assert info["engine"] == "vllm" and info["arms"] == list(ARMS)
    assert info["baseline"] == "TORCH_SDPA" and info["tasks"] == ["mmmu_val"]
    assert info["config"]["parity"] == {"max_abs_delta_points": 5.0}

    # the generated model really is a Qwen2-VL with a vision head_dim that is not a multiple of 32
    from vit_backend_plugin.selection.model_config import load_config, vision_head_size

    model_dir = Path(info["config"]["_resolved"]["model"])
    mcfg = load_config(model_dir)
    assert mcfg["architectures"] == ["Qwen2VLForConditionalGeneration"]
    assert vision_head_size(mcfg) == 80

    per_backend = {}
    for arm, backend in ARMS.items():
        bdir = run_dir / arm
        st = status(run_dir, arm)
        assert st["phases"] == {"accuracy": "complete", "throughput": "complete"}, st
        assert st["errors"] == {}

        cmd = json.loads((bdir / "command.json").read_text())
        acc = cmd["accuracy"]["lm_eval_argv"]
        assert acc[:3] == ["lm_eval", "--model", "vllm-vlm"]
        margs = json.loads(acc[acc.index("--model_args") + 1])
        if backend == "TORCH_SDPA":  # vLLM's own backend: its engine argument
            assert margs["mm_encoder_attn_backend"] == "TORCH_SDPA"
            # low_res: the processor's pixel bounds, one vision token per image
            assert ("mm_processor_kwargs" in margs) == (arm == "low_res")
            assert "VIT_ATTN_BACKEND" not in cmd["accuracy"].get("env", {})
        else:  # the plugin's: VIT_ATTN_BACKEND, interpreted on CPU
            assert "mm_encoder_attn_backend" not in margs
            assert cmd["accuracy"]["env"]["VIT_ATTN_BACKEND"] == "VIT_TRITON"
        assert cmd["accuracy"]["env"]["TRITON_INTERPRET"] == "1"
        assert "--log_samples" in acc and acc[acc.index("--output_path") + 1] == str(bdir / "lm_eval")
        assert cmd["accuracy"]["argv"][1:3] == ["-m", "vit_backend_plugin.harness.lm_eval_child"]
        assert "vit_backend_plugin.harness.speed_worker" in cmd["throughput"]["argv"]

        env = json.loads((bdir / "env.json").read_text())
        for pkg in ("torch", "transformers", "lm_eval", "datasets", "vllm"):
            assert env["versions"][pkg], pkg
        assert "device" in env

        # the plugin's log line in the engine process: the resolver made (or honoured) the choice
        log = (bdir / "accuracy.log").read_text()
        assert f"ViT attention: {backend} (head_size=80, dtype=float32" in log

        tp = json.loads((bdir / "throughput.json").read_text())
        assert tp["engine"] == "vllm" and tp["backend"] == backend
        for key in ("images_per_s", "input_tokens_per_s", "requests_per_s", "ttft_mean_ms"):
            assert tp["metrics"][key] > 0, key
        assert len(tp["repeats"]) == 5
        vals = sorted(r["images_per_s"] for r in tp["repeats"])
        assert tp["metrics"]["images_per_s"] == pytest.approx(vals[2])  # median of 5
        # measured on the encoder, not on caches: both caches off, new images every repeat
        assert tp["engine_settings"]["enable_prefix_caching"] is False
        assert tp["engine_settings"]["mm_processor_cache_gb"] == 0
        assert tp["engine_settings"]["fresh_images_each_repeat"] is True
        # vLLM's encoder timer synchronises a CUDA device: off on the CPU platform, recorded
        assert tp["engine_settings"]["encoder_timer"] is False
        assert all(r["encoder_images_per_s"] is None for r in tp["repeats"])
        assert tp["metrics"]["encoder_images_per_s"] is None

        res = json.loads(results_file(run_dir, arm).read_text())
        assert 0.0 <= res["results"]["mmmu_val"]["acc,none"] <= 1.0
        assert res["config"]["model"] == "vllm-vlm"
        # all six MMMU subject groups, as lm-eval's own mmmu_val group defines them
        assert len(res["group_subtasks"]["mmmu_val"]) == 6
        per_backend[arm] = samples(run_dir, arm)

    base, ours, low = per_backend["TORCH_SDPA"], per_backend["VIT_TRITON"], per_backend["low_res"]
    assert len(base) == MMMU_ITEMS
    assert set(base) == set(ours) == set(low)  # the same items, per task
    for key in base:
        # (lm-eval's doc_hash covers in-memory image objects, so it differs between processes)
        assert base[key]["prompt_hash"] == ours[key]["prompt_hash"]
        assert base[key]["target_hash"] == ours[key]["target_hash"]
        assert base[key]["doc"]["image_1"] == ours[key]["doc"]["image_1"]  # lm-eval's image digest
        assert isinstance(base[key]["filtered_resps"][0], str)
    # the demo model was trained on exactly the prompts lm-eval's vllm-vlm gave it, item for item
    from transformers import AutoProcessor

    from vit_backend_plugin.harness import demo_train
    from vit_backend_plugin.harness.demo_assets import DemoSpec

    processor = AutoProcessor.from_pretrained(model_dir)
    docs = {d["id"]: d for d in demo_train.validation_docs(DemoSpec())}
    for s in base.values():
        prompt, _ = demo_train.lm_eval_context(docs[s["doc"]["id"]], processor)
        assert s["arguments"]["gen_args_0"]["arg_0"] == prompt
    # lm-eval's own MMMU prompt (not ours) reached the model through the chat template
    some = next(iter(base.values()))
    assert "Answer with the option's letter from the given choices directly." in json.dumps(some) or \
        "Answer the question using a single word or phrase." in json.dumps(some)

    for name in ("report.md", "report.html", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert "report:" in out(proc) and str(run_dir / "report.md") in out(proc)
    # the trained model sees: well above chance (a quarter of the letters, a quarter of the counts)
    summary = json.loads((run_dir / "summary.json").read_text())
    parity = summary["parity"]["VIT_TRITON"]
    assert parity["acc_baseline"] >= 0.8, parity
    # our kernel, interpreted inside vLLM's engine, answers like vLLM's own SDPA: PASS
    assert parity["verdict"] == "PASS", parity
    assert parity["agreement"] >= 0.97, parity
    assert "**VIT_TRITON** PASS" in (run_dir / "report.md").read_text()
    # one vision token per image: the model sees less, and the paired test says so
    low_res = summary["parity"]["low_res"]
    assert low_res["verdict"] == "FAIL" and low_res["mcnemar_p"] < 0.05, low_res
    assert low_res["acc_candidate"] < low_res["acc_baseline"] - 0.1, low_res
    assert "verdicts as expected (VIT_TRITON PASS, low_res FAIL)" in out(proc)


def test_report_from_the_demos_own_lm_eval_folders_matches_the_run_dir(demo_run, cache, tmp_path):
    # The folders lm-eval's real vllm-vlm wrote in the demo (what `lm_eval --output_path X
    # --log_samples` gives a contributor) carry the same paired verdict, item by item.
    run_dir, proc, _ = demo_run
    assert proc.returncode == 0, out(proc)[-4000:]
    out_dir = tmp_path / "from_lm_eval"
    rep, _ = vit("report", "--lm-eval", str(run_dir / "TORCH_SDPA" / "lm_eval"),
                 str(run_dir / "VIT_TRITON" / "lm_eval"), "--names", "TORCH_SDPA,VIT_TRITON",
                 "--parity", "max_abs_delta_points=5.0", "--out", str(out_dir), cache=cache)
    assert rep.returncode == 0, out(rep)[-4000:]
    by_dir = json.loads((run_dir / "summary.json").read_text())["parity"]["VIT_TRITON"]
    by_folders = json.loads((out_dir / "summary.json").read_text())["parity"]["VIT_TRITON"]
    assert by_folders["verdict"] == by_dir["verdict"] == "PASS"
    for key in ("n", "b", "c", "agreement", "mcnemar_p", "delta_acc", "differing_items"):
        assert by_folders[key] == by_dir[key], key


def test_demo_rerun_skips_complete_and_redoes_a_truncated_results_file(demo_run, cache):
    run_dir, first, _ = demo_run
    assert first.returncode == 0
    base_res = results_file(run_dir, "TORCH_SDPA")
    base_mtime = base_res.stat().st_mtime_ns
    ours_tp_mtime = (run_dir / "VIT_TRITON" / "throughput.json").stat().st_mtime_ns
    ours_res = results_file(run_dir, "VIT_TRITON")
    data = ours_res.read_bytes()
    ours_res.write_bytes(data[: len(data) // 2])  # a half-written results file

    proc, seconds = vit("demo", "--out", str(run_dir), cache=cache)
    assert proc.returncode == 0, out(proc)[-4000:]
    text = out(proc)
    assert "TORCH_SDPA accuracy: complete, skipped" in text
    assert "VIT_TRITON accuracy: redoing (corrupt results file" in text
    # the baseline untouched; VIT_TRITON accuracy redone with a valid file; its throughput kept
    assert results_file(run_dir, "TORCH_SDPA") == base_res
    assert base_res.stat().st_mtime_ns == base_mtime
    new = results_file(run_dir, "VIT_TRITON")
    json.loads(new.read_text())
    assert status(run_dir, "VIT_TRITON")["phases"]["accuracy"] == "complete"
    assert (run_dir / "VIT_TRITON" / "throughput.json").stat().st_mtime_ns == ours_tp_mtime
    assert len(samples(run_dir, "VIT_TRITON")) == MMMU_ITEMS


# --------------------------------------------------------------------------- run: crash, resume, force
def test_crashing_backend_is_recorded_and_the_others_still_run(tmp_path, cache):
    cfg = mini_config(tmp_path, "crash")
    run_dir = tmp_path / "crash"
    proc, _ = vit("run", str(cfg), cache=cache, extra_env={"VIT_PARITY_FAULT": "eager:accuracy"})
    assert proc.returncode == 3, out(proc)[-4000:]  # an arm failed: ERROR
    st = status(run_dir, "eager")
    assert st["phases"] == {"accuracy": "failed", "throughput": "complete"}
    assert "injected fault for backend eager" in st["errors"]["accuracy"]
    assert "RuntimeError" in st["errors"]["accuracy"]  # the tail of the child's traceback
    assert "eager accuracy: FAILED" in out(proc)
    assert status(run_dir, "sdpa")["phases"] == {"accuracy": "complete", "throughput": "complete"}
    assert len(samples(run_dir, "sdpa")) == 30  # limit 1 per subject
    # the crashed phase left nothing that could be half-read
    assert not list((run_dir / "eager" / "lm_eval").rglob("results_*.json"))

    sdpa_mtime = results_file(run_dir, "sdpa").stat().st_mtime_ns
    proc, _ = vit("run", str(cfg), cache=cache)  # the fault is gone: eager is retried, sdpa kept
    assert proc.returncode == 0, out(proc)[-4000:]
    assert "eager accuracy: retrying (failed in an earlier run)" in out(proc)
    assert "sdpa accuracy: complete, skipped" in out(proc)
    assert status(run_dir, "eager")["phases"]["accuracy"] == "complete"
    assert status(run_dir, "eager")["errors"] == {}
    assert results_file(run_dir, "sdpa").stat().st_mtime_ns == sdpa_mtime
    assert set(samples(run_dir, "eager")) == set(samples(run_dir, "sdpa"))


def test_force_interrupted_and_config_change(tmp_path, cache):
    cfg = mini_config(tmp_path, "force", backends=["sdpa"], throughput={"enabled": False})
    run_dir = tmp_path / "force"
    proc, _ = vit("run", str(cfg), cache=cache)
    assert proc.returncode == 0, out(proc)[-4000:]
    first = results_file(run_dir, "sdpa")
    tp = json.loads((run_dir / "sdpa" / "throughput.json").read_text())
    assert tp["skipped"] and tp["metrics"] == {}

    # --force redoes a complete backend
    proc, _ = vit("run", str(cfg), "--force", cache=cache)
    assert proc.returncode == 0, out(proc)[-4000:]
    assert "skipped (use --force" not in out(proc)
    second = results_file(run_dir, "sdpa")
    assert second != first and not first.exists()

    # a process killed mid-phase leaves "running" and partial files: redone, never half-read
    st = status(run_dir, "sdpa")
    st["phases"]["accuracy"] = "running"
    (run_dir / "sdpa" / "status.json").write_text(json.dumps(st))
    next(second.parent.glob("samples_mmmu_val_math_*.jsonl")).unlink()
    proc, _ = vit("run", str(cfg), cache=cache)
    assert proc.returncode == 0, out(proc)[-4000:]
    assert "sdpa accuracy: redoing (interrupted in an earlier run)" in out(proc)
    third = results_file(run_dir, "sdpa")
    assert third != second
    assert list(third.parent.glob("samples_mmmu_val_math_*.jsonl"))
    assert status(run_dir, "sdpa")["phases"]["accuracy"] == "complete"

    # the same run dir with a config that changes what results mean: refused, one line
    changed = mini_config(tmp_path, "force", backends=["sdpa"], throughput={"enabled": False}, limit=2)
    proc, _ = vit("run", str(changed), cache=cache)
    assert proc.returncode == 2
    assert "holds a run made with a different config (differs in: limit)" in proc.stderr
    assert "Traceback" not in proc.stderr
