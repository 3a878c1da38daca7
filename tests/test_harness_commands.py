"""The exact lm_eval command + environment built for the vllm engine, for each seed-001 config.

The seed-001 models need a GPU and their weights, so their configs are tested up to the process
boundary: the argv and env each backend's child gets, checked against lm-eval's own argument
parser (and printed by `--dry-run`); and the throughput child's random-mm prompts, built with
vLLM's own data set. The demo runs the vllm engine for real (test_harness_e2e).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vit_backend_plugin.harness.arms import Arm, resolve_arm
from vit_backend_plugin.harness.commands import accuracy_command, throughput_command
from vit_backend_plugin.harness.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "eval_configs"

# config -> (model, backend -> expected env, limit)
SEED = {
    "qwen2_5_vl_7b.yaml": ("Qwen/Qwen2.5-VL-7B-Instruct", "250"),
    "llava_onevision_qwen2_7b.yaml": ("llava-hf/llava-onevision-qwen2-7b-ov-hf", "10"),
    "internvl3_5_4b.yaml": ("OpenGVLab/InternVL3_5-4B", "250"),
}
VLLM_PROVIDED = {"FLASH_ATTN", "TRITON_ATTN", "TORCH_SDPA", "FLASHINFER", "ROCM_AITER_FA"}
PLUGIN = {"VIT_TRITON", "VIT_AUTO", "TORCH_SDPA_CUDNN", "FLASH_ATTN_UPSTREAM", "XFORMERS"}


def arm(cfg, name: str, python: str | None = None) -> Arm:
    """The resolved arm, optionally on another interpreter (as an arm's ``python`` sets it)."""
    a = resolve_arm(cfg, name)
    return Arm(**{**a.__dict__, "python": python}) if python else a


def lm_eval_parse(args: list[str]):
    from lm_eval._cli import HarnessCLI

    return HarnessCLI()._parser.parse_args(["run", *args])


@pytest.mark.parametrize("name", sorted(SEED))
def test_vllm_lm_eval_argv_and_env(tmp_path, name):
    model, limit = SEED[name]
    cfg = load_config(CONFIGS / name)
    assert len(cfg.backends) >= 2
    for backend in cfg.backends:
        bdir = tmp_path / backend
        cmd = accuracy_command(cfg, arm(cfg, backend, python="/py"), bdir)
        margs = {"pretrained": model}
        env = {}
        if backend in VLLM_PROVIDED:
            margs["mm_encoder_attn_backend"] = backend
        else:
            assert backend in PLUGIN
            env["VIT_ATTN_BACKEND"] = backend
        margs["trust_remote_code"] = True
        expected = [
            "lm_eval",
            "--model", "vllm-vlm",
            "--model_args", json.dumps(margs),
            "--tasks", "mmmu_val",
            "--num_fewshot", "5",
            "--limit", limit,
            "--trust_remote_code",
            "--batch_size", "auto",
            "--apply_chat_template",
            "--log_samples",
            "--output_path", str(bdir / "lm_eval"),
        ]
        assert cmd.lm_eval_argv == expected
        assert cmd.env == env
        assert cmd.argv == ["/py", "-m", "vit_backend_plugin.harness.lm_eval_child", *expected[1:]]

        # lm-eval's own CLI parser reads it the way seed 001's command line reads
        ns = lm_eval_parse(expected[1:])
        assert ns.model == "vllm-vlm"
        assert ns.model_args == margs
        assert ns.tasks == ["mmmu_val"] and ns.num_fewshot == 5 and ns.limit == float(limit)
        assert ns.batch_size == "auto" and ns.apply_chat_template is True
        assert ns.log_samples is True and ns.trust_remote_code is True
        assert ns.output_path == str(bdir / "lm_eval")


def test_backend_selection_never_leaks_between_backends(tmp_path, monkeypatch):
    """A VIT_ATTN_BACKEND in the user's shell must not reach a vLLM-provided backend's child."""
    from vit_backend_plugin.harness.runner import child_env

    monkeypatch.setenv("VIT_ATTN_BACKEND", "XFORMERS")
    cfg = load_config(CONFIGS / "internvl3_5_4b.yaml")
    env = child_env(accuracy_command(cfg, arm(cfg, "FLASH_ATTN"), tmp_path))
    assert "VIT_ATTN_BACKEND" not in env
    env = child_env(accuracy_command(cfg, arm(cfg, "VIT_TRITON"), tmp_path))
    assert env["VIT_ATTN_BACKEND"] == "VIT_TRITON"


def test_engine_args_and_options_reach_lm_eval(tmp_path):
    cfg = load_config(
        CONFIGS / "qwen2_5_vl_7b.yaml",
        {"engine_args": {"max_model_len": 8192, "gpu_memory_utilization": 0.8},
         "max_images_per_prompt": 3, "seed": 7, "gen_kwargs": {"max_gen_toks": 16},
         "env": {"CUDA_VISIBLE_DEVICES": "1"}, "limit": 0.5},
    )
    cmd = accuracy_command(cfg, arm(cfg, "TORCH_SDPA"), tmp_path)
    ns = lm_eval_parse(cmd.lm_eval_argv[1:])
    assert ns.model_args == {
        "pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "mm_encoder_attn_backend": "TORCH_SDPA",
        "max_images": 3, "trust_remote_code": True, "max_model_len": 8192,
        "gpu_memory_utilization": 0.8,
    }
    assert ns.gen_kwargs == {"max_gen_toks": 16}
    assert ns.limit == 0.5
    assert ns.seed == [7, 7, 7, 7]
    assert cmd.env == {"CUDA_VISIBLE_DEVICES": "1"}


def test_hf_engine_uses_attn_implementation(tmp_path):
    cfg = load_config(CONFIGS / "demo_hf.yaml")
    cmd = accuracy_command(cfg, arm(cfg, "sdpa"), tmp_path, include_path="/tasks")
    ns = lm_eval_parse(cmd.lm_eval_argv[1:])
    assert ns.model == "hf-multimodal"
    assert ns.model_args["attn_implementation"] == "sdpa"
    assert ns.include_path == "/tasks"
    assert ns.batch_size == "4"
    assert cmd.env == {}


def test_throughput_command_carries_the_settings(tmp_path):
    cfg = load_config(CONFIGS / "llava_onevision_qwen2_7b.yaml")
    cmd = throughput_command(cfg, arm(cfg, "FLASH_ATTN_UPSTREAM"), tmp_path)
    assert cmd.argv[:4] == [sys.executable, "-m", "vit_backend_plugin.harness.speed_worker", "--spec"]
    spec = json.loads(cmd.argv[4])
    assert spec["route"] == "env" and cmd.env == {"VIT_ATTN_BACKEND": "FLASH_ATTN_UPSTREAM"}
    assert spec["settings"]["output_len"] == 1 and spec["settings"]["num_prompts"] == 100
    assert spec["settings"]["image_sizes"] == [[224, 224]]
    assert spec["out"] == str(tmp_path / "throughput.json")


def test_vllm_random_mm_prompts(tmp_path):
    """The vllm throughput child's prompts: vLLM's own random-mm data set, as chat messages."""
    pytest.importorskip("vllm.benchmarks.datasets")
    from transformers import AutoTokenizer

    from vit_backend_plugin.harness.demo_assets import DemoSpec, build_tokenizer
    from vit_backend_plugin.harness.throughput import vllm_prompts

    tok = build_tokenizer(["a tiny corpus of words for the tokenizer"] * 5, DemoSpec(bpe_vocab=300))
    tok.save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    settings = {"image_sizes": [[64, 32]], "image_mix": None, "images_per_prompt": 2,
                "input_len": 0, "output_len": 1}
    prompts = vllm_prompts(tok, settings, n=3, seed=42)
    assert len(prompts) == 3
    import base64
    import io

    from PIL import Image

    for conv in prompts:
        assert conv[0]["role"] == "user"
        images = [c for c in conv[0]["content"] if c["type"] == "image_url"]
        assert len(images) == 2
        url = images[0]["image_url"]["url"]
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert img.size == (64, 32)  # (width, height) as configured


# --------------------------------------------------------------------------- --dry-run, AUTO
@pytest.mark.parametrize("name", sorted(SEED))
def test_seed_configs_dry_run_prints_every_command_and_runs_nothing(tmp_path, capsys, monkeypatch,
                                                                   name):
    """The seed-001 configs keep working for users with the real weights: validated and every
    command printed, nothing started, no run directory written."""
    from vit_backend_plugin import cli

    # as a user with hub access runs it (offline, a hub id must already be in the local cache;
    # validation never downloads)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    rc = cli.main(["run", str(CONFIGS / name), "--dry-run", "--output-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert rc == 0
    cfg = load_config(CONFIGS / name)
    lines = printed.splitlines()
    for backend in cfg.ordered_arm_names():
        acc = lines[lines.index(f"# {backend} accuracy") + 1]
        assert "lm_eval --model vllm-vlm" in acc and "--log_samples" in acc
        assert ("VIT_ATTN_BACKEND=" + backend in acc) == (backend in PLUGIN)
        assert (f'"mm_encoder_attn_backend": "{backend}"' in acc) == (backend in VLLM_PROVIDED)
        tp = lines[lines.index(f"# {backend} throughput") + 1]
        assert "-m vit_backend_plugin.harness.speed_worker --spec" in tp
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_dry_run_still_validates(tmp_path, capsys):
    from vit_backend_plugin import cli

    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "qwen2_5_vl_7b.yaml").read_text().replace("VIT_AUTO", "VIT_AUTOO"))
    assert cli.main(["run", str(bad), "--dry-run"]) == 2
    assert "unknown backend 'VIT_AUTOO'" in capsys.readouterr().err


def test_auto_backend_sets_neither_engine_arg_nor_env(tmp_path):
    cfg = load_config(CONFIGS / "h100_demo.yaml")
    assert "AUTO" in cfg.arm_names()
    acc = accuracy_command(cfg, arm(cfg, "AUTO"), tmp_path)
    margs = lm_eval_parse(acc.lm_eval_argv[1:]).model_args
    assert "mm_encoder_attn_backend" not in margs and "VIT_ATTN_BACKEND" not in acc.env
    spec = json.loads(throughput_command(cfg, arm(cfg, "AUTO"), tmp_path).argv[4])
    assert spec["route"] == "auto"
    # the child strips an inherited VIT_ATTN_BACKEND too: AUTO really is the automatic choice
    import os

    from vit_backend_plugin.harness.runner import child_env

    os.environ["VIT_ATTN_BACKEND"] = "VIT_TRITON"
    try:
        assert "VIT_ATTN_BACKEND" not in child_env(acc)
    finally:
        del os.environ["VIT_ATTN_BACKEND"]
