"""`vit-parity explain` as a user runs it: table, --json, --model, --available, bad input."""

import json
import subprocess
import sys

import pytest


def explain(*args):
    return subprocess.run([sys.executable, "-m", "vit_backend_plugin.cli", "explain", *args],
                          capture_output=True, text=True, timeout=120)


def test_json_schema_and_choice():
    # 8.0: no shipped speed-table rows, so the static order decides
    p = explain("--head-size", "72", "--dtype", "bfloat16", "--capability", "8.0",
                "--platform", "cuda", "--available", "flash_attn,triton", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["chosen"] == "FLASH_ATTN_UPSTREAM"
    names = [c["name"] for c in out["candidates"]]
    assert "FLASH_ATTN" in names and "TORCH_SDPA" in names
    assert all(set(c) == {"name", "usable", "reason"} for c in out["candidates"])
    fa = next(c for c in out["candidates"] if c["name"] == "FLASH_ATTN")
    assert fa["usable"] is False and "vllm_flash_attn" in fa["reason"]


def test_table_output_names_choice_and_hint():
    p = explain("--head-size", "72", "--capability", "8.0", "--available", "triton")
    assert p.returncode == 0, p.stderr
    assert "chosen: TORCH_SDPA" in p.stdout
    assert "pip install flash-attn" in p.stdout


def test_shipped_h100_table_drives_the_choice_at_9_0():
    p = explain("--head-size", "80", "--capability", "9.0", "--json",
                "--available", "triton,vit_triton_kernel,torch_cudnn_sdpa")
    out = json.loads(p.stdout)
    assert out["how"] == "measured" and "shipped table" in out["why"]
    # with a known sequence length, the row for that length decides
    p = explain("--head-size", "80", "--capability", "9.0", "--json", "--seq-len", "64",
                "--available", "triton,vit_triton_kernel,torch_cudnn_sdpa")
    assert "window" in json.loads(p.stdout)["why"]


def test_model_config_head_size(tmp_path):
    cfg = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "torch_dtype": "bfloat16",
           "vision_config": {"hidden_size": 1280, "num_heads": 16}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    p = explain("--model", str(tmp_path), "--capability", "8.0",
                "--available", "vllm_flash_attn", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["chosen"] == "FLASH_ATTN"
    p = explain("--model", str(tmp_path / "config.json"), "--capability", "8.0", "--available", "")
    assert "head_size=80" in p.stdout and "bfloat16" in p.stdout


@pytest.mark.parametrize("args,msg", [
    (["--head-size", "0"], "head size must be a positive integer"),
    (["--head-size", "-3"], "head size must be a positive integer"),
    (["--head-size", "72", "--dtype", "int4"], "unknown dtype 'int4'"),
    (["--model", "/no/such/dir"], "no config.json at /no/such/dir"),
    (["--head-size", "72", "--available", "warp_drive"], "unknown --available entries"),
    (["--head-size", "72", "--backend", "FLASHINFER", "--capability", "9.0",
      "--available", "flashinfer"], "FLASHINFER (--backend) cannot run here: head size 72"),
    ([], "give --head-size or --model"),
])
def test_bad_input_is_one_line_and_nonzero(args, msg):
    p = explain(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], p.stderr


def test_unreadable_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    p = explain("--model", str(tmp_path))
    assert p.returncode == 2 and "cannot read" in p.stderr
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {}}))
    p = explain("--model", str(tmp_path))
    assert p.returncode == 2 and "no vision_config" in p.stderr
