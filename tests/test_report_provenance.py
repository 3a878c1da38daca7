"""Each arm's versions and settings in the report, and a warning (never a verdict change) where a
version differs from the baseline's without the arm's settings choosing another interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report_fixtures import Backend, baseline_answers, make_run

from vit_backend_plugin.report import build_report
from vit_backend_plugin.report.provenance import parse_pretty_env_info
from vit_backend_plugin.rundir.layout import RunInfo

H100 = [{"name": "NVIDIA H100 80GB HBM3", "capability": "9.0"}]


def env(torch: str = "2.11.0", python: str = "3.12.3", gpus=H100, driver: str = "580.1") -> dict:
    """env.json as harness/env_capture.py writes it (interpreter_probe + nvidia-smi)."""
    return {
        "python": python, "executable": "/usr/bin/python3", "platform": "Linux-6.8-x86_64",
        "versions": {"torch": torch, "vllm": "0.32.0", "lm_eval": "0.4.13", "flash-attn": None,
                     "vit-backend-plugin": "0.1.0"},
        "modules": {"vllm": "/x/vllm/__init__.py"}, "vllm_plugins": ["vit_backend_plugin"],
        "device": {"machine": "x86_64", "cpu_count": 16, "torch_cuda": "13.0", "cuda_available": True,
                   "gpus": gpus, "nvidia_smi": [{"name": g["name"], "driver": driver, "capability": "9.0"}
                                                for g in gpus]},
        "environment": {"HF_HUB_OFFLINE": "1"},
    }


def run_with(tmp_path: Path, envs: dict[str, dict | None], settings: dict[str, dict] | None = None,
             run_id: str = "r1") -> Path:
    a = baseline_answers(60)
    run = make_run(tmp_path, {n: Backend(a) for n in envs}, run_id=run_id)
    if settings is not None:
        info = RunInfo.read(run)
        info.arm_settings = settings
        info.write(run)
    for name, e in envs.items():
        if e is not None:
            (run / name / "env.json").write_text(json.dumps(e))
    return run


def report(run: Path) -> tuple[dict, str, str]:
    p = build_report(run)
    return json.loads(p["json"].read_text()), p["md"].read_text(), p["html"].read_text()


def test_a_version_nobody_asked_for_is_a_visible_warning_not_a_verdict(tmp_path):
    same, _, _ = report(run_with(tmp_path, {"base": env(), "cand": env()}, run_id="same"))
    assert same["warnings"] == []
    s, md, html = report(run_with(tmp_path, {"base": env(), "cand": env(torch="2.10.0")}, run_id="diff"))
    assert [(w["arm"], w["kind"], w["key"]) for w in s["warnings"]] == [("cand", "version", "torch")]
    assert s["parity"]["cand"]["verdict"] == same["parity"]["cand"]["verdict"] == "PASS"
    msg = s["warnings"][0]["message"]
    assert "torch 2.10.0" in msg and "baseline base has 2.11.0" in msg and "interpreter" in msg
    # on top of the report, right after the verdicts
    lines = md.splitlines()
    w = lines.index("## ⚠️ Warnings: differences from the baseline the arms did not ask for")
    assert w < next(i for i, ln in enumerate(lines) if ln.startswith("## Accuracy"))
    assert lines[w + 2].startswith("- ⚠️ cand: torch 2.10.0")
    assert "| torch | 2.11.0 | ⚠️ 2.10.0 |" in md and "| vllm | 0.32.0 | 0.32.0 |" in md
    assert "| flash-attn | not installed | not installed |" in md
    assert 'class="warnings"' in html and "cand: torch 2.10.0" in html
    assert s["arms"]["cand"]["environment"]["versions"]["torch"] == "2.10.0"
    assert s["arms"]["base"]["environment"]["gpu"] == "NVIDIA H100 80GB HBM3"


def test_an_arm_on_another_interpreter_may_differ_but_not_on_another_gpu(tmp_path):
    settings = {"base": {"backend": "FLASH_ATTN", "engine_args": {}, "env": {}, "python": None},
                "cand": {"backend": "FLASH_ATTN", "engine_args": {"enforce_eager": True},
                         "env": {"VLLM_X": "1"}, "python": "/opt/venv2/bin/python"}}
    a100 = [{"name": "NVIDIA A100-SXM4-80GB", "capability": "8.0"}]
    s, md, _ = report(run_with(tmp_path, {"base": env(), "cand": env(torch="2.10.0", python="3.11.9",
                                                                    gpus=a100, driver="570.2")},
                               settings))
    assert {(w["arm"], w["key"]) for w in s["warnings"]} == {("cand", "gpu"), ("cand", "driver")}
    assert s["arms"]["cand"]["settings"] == settings["cand"]
    assert "| python | — | /opt/venv2/bin/python |" in md  # settings table
    assert "| engine_args | — | enforce_eager=true |" in md
    assert "| env | — | VLLM_X=1 |" in md
    assert "| GPU | NVIDIA H100 80GB HBM3 | ⚠️ NVIDIA A100-SXM4-80GB |" in md
    assert "| torch | 2.11.0 | 2.10.0 |" in md  # shown, not flagged


def test_versions_not_recorded_are_said(tmp_path):
    s, md, _ = report(run_with(tmp_path, {"base": env(), "cand": None}))
    # the fixture's results file records lm-eval's version only: that is what cand has
    cand = s["arms"]["cand"]["environment"]
    assert cand["source"] == "lm-eval results" and cand["versions"]["lm_eval"] == "0.4.13"
    assert s["warnings"] == []  # lm_eval 0.4.13 on both: nothing else both recorded
    s, _, _ = report(run_with(tmp_path, {"base": None, "cand": env()}, run_id="r2"))
    assert s["arms"]["base"]["environment"]["source"] == "lm-eval results"


def test_pretty_env_info_as_torch_writes_it():
    collect_env = pytest.importorskip("torch.utils.collect_env")
    fields = dict.fromkeys(collect_env.SystemEnv._fields, "N/A")
    fields.update(
        torch_version="2.11.0+cu130", python_version="3.12.3 (main, Jan 1 2026) [GCC 13] (64-bit runtime)",
        python_platform="Linux-6.8-x86_64-with-glibc2.39", is_cuda_available="True",
        nvidia_gpu_models="GPU 0: NVIDIA H100 80GB HBM3\nGPU 1: NVIDIA H100 80GB HBM3",
        nvidia_driver_version="580.1", pip_version="pip3",
        pip_packages="torch==2.11.0\ntriton==3.6.0\nnumpy==2.3.5", conda_packages="",
        cpu_info="x86_64",
    )
    text = collect_env.pretty_str(collect_env.SystemEnv(**fields))
    got = parse_pretty_env_info(text)
    assert got["versions"]["python"] == "3.12.3" and got["versions"]["torch"] == "2.11.0"
    assert got["versions"]["triton"] == "3.6.0" and got["versions"]["numpy"] == "2.3.5"
    assert got["gpu"] == "NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3"
    assert got["driver"] == "580.1" and got["platform"] == "Linux-6.8-x86_64-with-glibc2.39"


def test_hostile_versions_and_settings_are_text_in_report_md(tmp_path):
    from test_report_markdown import ATTACK, MD

    e = env(torch=ATTACK)
    e["versions"][ATTACK] = "1.0"
    s, md, html = report(run_with(tmp_path, {"base": env(), "cand": e},
                                  {"base": {}, "cand": {"backend": ATTACK, "env": {ATTACK: ATTACK}}}))
    rendered = MD.render(md)
    for tag in ("<script", "<a ", "href="):
        assert tag not in rendered, tag
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "<script>alert" not in html
    assert any(w["key"] == "torch" for w in s["warnings"])
