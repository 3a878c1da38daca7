"""`vit-parity explain` as a user runs it: table, --json, --model, --available, bad input."""

import json
import os
import subprocess
import sys

import pytest


def explain(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vit_backend_plugin.cli", "explain", *args],
                          capture_output=True, text=True, timeout=120, env=env)


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


# --------------------------------------------------------------------------- planned for what
def fake_nvidia_smi(tmp_path, output: str | None):
    """PATH with an nvidia-smi that reports ``output`` (a GPU) or fails as it does without a
    driver; it shadows any real one, so these run the same on GPU machines."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    body = f"echo '{output}'" if output else "echo 'NVIDIA-SMI has failed' >&2; exit 9"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_no_gpu_says_cuda_is_assumed(tmp_path):
    env = fake_nvidia_smi(tmp_path, None)
    # --available: the installed-package probe imports vLLM (slow); test_cli_extras covers it
    p = explain("--head-size", "80", "--available", "triton", "--json", env=env)
    assert p.returncode == 0, p.stderr
    planned = json.loads(p.stdout)["planned_for"]
    assert planned["platform"] == "cuda" and planned["platform_from"] == "assumed"
    assert planned["capability"] is None and planned["capability_from"] == "unknown"
    assert planned["features"] == ["triton"] and planned["features_from"] == "--available"
    assert planned["gpu"] is None
    p = explain("--head-size", "80", "--available", "triton", env=env)
    assert "platform:   cuda (assumed: no NVIDIA GPU found on this machine" in p.stdout
    assert "capability: unknown (" in p.stdout


def test_detected_gpu_is_planned_for_and_named(tmp_path):
    env = fake_nvidia_smi(tmp_path, "NVIDIA H100 80GB HBM3, 9.0")
    feats = "triton,vit_triton_kernel,torch_cudnn_sdpa"
    p = explain("--head-size", "80", "--available", feats, "--json", env=env)
    out = json.loads(p.stdout)
    assert out["planned_for"] == {
        "platform": "cuda", "platform_from": "detected", "capability": "9.0",
        "capability_from": "detected", "features": sorted(feats.split(",")),
        "features_from": "--available", "gpu": "NVIDIA H100 80GB HBM3",
    }
    # the detected capability reaches the shipped H100 speed table
    assert out["how"] == "measured"
    p = explain("--head-size", "80", "--available", feats, env=env)
    assert "capability: 9.0 (detected: NVIDIA H100 80GB HBM3)" in p.stdout


def test_command_line_outranks_the_machine(tmp_path):
    env = fake_nvidia_smi(tmp_path, "NVIDIA H100 80GB HBM3, 9.0")
    p = explain("--head-size", "80", "--capability", "8.0", "--available", "", "--json", env=env)
    planned = json.loads(p.stdout)["planned_for"]
    assert (planned["platform"], planned["platform_from"]) == ("cuda", "--capability")
    assert (planned["capability"], planned["capability_from"]) == ("8.0", "--capability")
    assert planned["features"] == [] and planned["gpu"] is None
    # another platform: no CUDA capability is looked for or used
    cpu = ("--head-size", "80", "--platform", "cpu", "--available", "")
    planned = json.loads(explain(*cpu, "--json", env=env).stdout)["planned_for"]
    assert planned["platform_from"] == "--platform"
    assert (planned["capability"], planned["capability_from"]) == (None, "not used")
    p = explain(*cpu, env=env)
    assert "platform:   cpu (--platform)" in p.stdout
    assert "capability: unknown (not used on cpu)" in p.stdout


def test_planning_features_import_no_heavy_package():
    # `explain` plans from what is installed without importing it: looking for vLLM's bundled
    # FlashAttention must not import vLLM (or torch), which takes seconds (find_spec of a
    # submodule imports its parent package).
    import subprocess
    import sys

    code = ("import sys; from vit_backend_plugin.selection.probe import installed_features; "
            "f = installed_features(); "
            "print(sorted(f)); print([m for m in ('vllm', 'torch', 'triton') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    feats, heavy = out.stdout.strip().splitlines()[-2:]
    assert heavy == "[]", out.stdout + out.stderr
    assert "'vllm_flash_attn'" in feats and "'vit_triton_kernel'" in feats and "'triton'" in feats
