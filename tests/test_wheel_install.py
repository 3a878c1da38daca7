"""The package as users get it: build the wheel from this checkout, install it without -e into a
temporary target, and run the parts that read package files from that installed copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp / "dist"), str(REPO)])
    (wheel,) = (tmp / "dist").glob("vit_backend_plugin-*.whl")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
          str(tmp / "site"), str(wheel)])
    return tmp, wheel


def test_wheel_ships_every_package_file(installed):
    _, wheel = installed
    tracked = subprocess.run(["git", "ls-files", "vit_backend_plugin"], cwd=REPO,
                             capture_output=True, text=True)
    if tracked.returncode:
        pytest.skip("not a git checkout")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in tracked.stdout.split() if f not in names]
    assert missing == [], f"files the package has but the wheel lacks: {missing}"
    assert "vit_backend_plugin/kernels/configs.json" in names


def test_installed_copy_runs_kernel_explain_and_report(installed, tmp_path):
    tmp, _ = installed
    site = tmp / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(TESTS)]),
           "TRITON_INTERPRET": "1", "VIT_TRITON_CONFIGS": str(tmp_path / "no-user-configs.json"),
           "VIT_SPEED_TABLE": str(tmp_path / "no-user-table.json")}
    code = textwrap.dedent(f"""
        import json, subprocess, sys
        from pathlib import Path
        import torch
        import vit_backend_plugin
        from vit_backend_plugin.kernels.triton_vit import vit_attention
        from vit_backend_plugin.kernels.triton_vit import load_configs
        out = {{"file": vit_backend_plugin.__file__, "rules": len(load_configs()["rules"])}}

        torch.manual_seed(0)
        cu = torch.tensor([0, 9, 30], dtype=torch.int32)
        q, k, v = torch.randn(3, 30, 2, 80).to(torch.bfloat16).unbind(0)
        o = vit_attention(q, k, v, cu, 21)  # config from the installed configs.json
        ref = torch.cat([torch.nn.functional.scaled_dot_product_attention(
            *(x[a:b].float().transpose(0, 1) for x in (q, k, v))).transpose(0, 1)
            for a, b in ((0, 9), (9, 30))])
        out["rel_err"] = float((o.float() - ref).norm() / ref.norm())

        ex = subprocess.run([sys.executable, "-m", "vit_backend_plugin.cli", "explain",
                             "--head-size", "80", "--dtype", "bfloat16", "--capability", "9.0",
                             "--available", "triton,vit_triton_kernel,vllm_flash_attn", "--json"],
                            capture_output=True, text=True)
        out["explain_rc"], out["explain"] = ex.returncode, json.loads(ex.stdout or "null")

        from test_report_fixtures import Backend, baseline_answers, make_run
        from vit_backend_plugin.report import build_report
        a = baseline_answers(10)
        paths = build_report(make_run(Path({str(tmp_path)!r}),
                                      {{"FLASH_ATTN": Backend(a), "VIT_TRITON": Backend(a)}}))
        out["html"] = paths["html"].read_text()[:20000]
        print("RESULT " + json.dumps(out))
    """)
    # cwd outside the checkout, so only the installed copy can be imported
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert Path(res["file"]).resolve().is_relative_to(site.resolve()), res["file"]
    assert res["rules"] > 0
    assert res["rel_err"] < 1e-2
    assert res["explain_rc"] == 0 and res["explain"]["chosen"]
    # the shipped speed table (package data) was read: its kernel rows made VIT_AUTO the measured
    # pick for d80 on an H100, and its engine runs (VIT_AUTO 0.98x FLASH_ATTN) overruled that
    assert res["explain"]["how"] == "static" and res["explain"]["chosen"] == "FLASH_ATTN"
    assert "kernel-table choice VIT_AUTO not taken" in res["explain"]["why"]
    assert "engine run h100_vit_qwen2_vl_7b" in res["explain"]["why"]
    names = {c["name"] for c in res["explain"]["candidates"]}
    assert {"VIT_TRITON", "FLASH_ATTN", "TORCH_SDPA"} <= names  # the shipped catalog was read
    assert "<html" in res["html"].lower() and "VIT_TRITON" in res["html"]
