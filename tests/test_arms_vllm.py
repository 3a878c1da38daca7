"""Arms through vLLM's real engine (CPU platform, the demo model, throughput phase only: the
smallest run that reaches the engine). The assertions are on what each child SAW, recorded by
the throughput child in throughput.json (the engine configuration as vLLM parsed it, the arm's
environment variables as the process had them, the prompt tokens the processor made), not on
the commands that were built. One arm's engine refuses its settings: that arm ends failed with
vLLM's own reason, the others complete, and the run exits 3 (ERROR)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from vit_backend_plugin import cli
from vit_backend_plugin.rundir.layout import ARM_SETTINGS, THROUGHPUT

SMALL = 3136  # 56 x 56: the processor's minimum; the demo's default maximum is 112 x 112


def test_arms_settings_reach_the_engine_and_a_refused_arm_is_an_error(tmp_path, capsys):
    calls = tmp_path / "python-calls.log"
    wrapper = tmp_path / "other-python"  # another interpreter, as an arm's python names one
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    cfg = {
        "model": "demo://tiny-qwen2-vl", "include_path": "demo://mmmu", "engine": "vllm",
        "accuracy": False, "output_dir": str(tmp_path), "run_id": "arms",
        # one process per child (engine core and worker in it): a third of the start-up time
        "engine_args": {"dtype": "float32", "max_model_len": 4096, "enforce_eager": True,
                        "distributed_executor_backend": "uni",
                        "compilation_config": {"encoder_cudagraph_token_budgets": [64, 128]}},
        "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
        "throughput": {"image_sizes": [[112, 112]], "num_prompts": 2, "warmup": 0, "repeats": 2,
                       "concurrency": 2},
        "arms": [
            {"name": "base"},
            {"name": "tuned", "python": str(wrapper),
             "engine_args": {"mm_processor_kwargs": {"max_pixels": SMALL},
                             "compilation_config": {"compile_mm_encoder": True}},
             "env": {"VIT_PARITY_TEST_ARM": "tuned"}},
            # vLLM 0.32 runs FP8 ViT attention on ROCm's AITER or Blackwell's FlashInfer only
            {"name": "fp8", "backend": "TORCH_SDPA", "engine_args": {"mm_encoder_attn_dtype": "fp8"}},
        ],
    }
    path = tmp_path / "arms.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rc = cli.main(["run", str(path)])
    text = capsys.readouterr().err
    run_dir = tmp_path / "arms"
    assert rc == 3, text[-3000:]  # an arm failed: ERROR

    seen = {a: json.loads((run_dir / a / THROUGHPUT).read_text()) for a in ("base", "tuned")}
    base, tuned = (seen[a]["engine_config"] for a in ("base", "tuned"))
    # the config's compilation_config and the arm's, merged key by key, as vLLM parsed them
    assert base["engine_args_parsed"]["compilation_config"] == {"encoder_cudagraph_token_budgets": [64, 128]}
    assert tuned["engine_args_parsed"]["compilation_config"] == {
        "encoder_cudagraph_token_budgets": [64, 128], "compile_mm_encoder": True}
    assert base["compilation_config"]["compile_mm_encoder"] is False
    assert tuned["compilation_config"]["compile_mm_encoder"] is True
    assert tuned["multimodal_config"]["mm_processor_kwargs"] == {"max_pixels": SMALL}
    assert not base["multimodal_config"]["mm_processor_kwargs"]
    assert base["model_config"]["enforce_eager"] is True and base["model_config"]["dtype"] == "torch.float32"
    # ... and the processor used it: 4 image tokens per prompt instead of 16, in every round
    for r in (0, 1):
        tokens = {a: seen[a]["repeats"][r]["input_tokens"] for a in seen}
        assert tokens["base"] - tokens["tuned"] == 2 * (16 - 4), tokens
    # both engines alive at once, rounds interleaved (the refused arm's slots skipped)
    for a in seen:
        assert seen[a]["interleave"]["together"] is True
        assert [x["round"] for x in seen[a]["repeats"]] == [0, 1]
    assert [x["slot"] for x in seen["base"]["repeats"]] == [0, 3]
    assert [x["slot"] for x in seen["tuned"]["repeats"]] == [1, 2]
    # the environment each child had
    assert seen["tuned"]["arm_env"] == {"VLLM_CPU_KVCACHE_SPACE": "1",
                                        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                                        "VIT_PARITY_TEST_ARM": "tuned"}
    assert seen["base"]["arm_env"] == {"VLLM_CPU_KVCACHE_SPACE": "1",
                                       "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    # the arm's interpreter answered the version probe and ran its child; the others did not
    ran = calls.read_text()
    assert "interpreter_probe.py" in ran and ran.count("-m vit_backend_plugin.harness.speed_worker") == 1

    # the refused arm: failed, with vLLM's reason in its status; the others complete
    status = {a: json.loads((run_dir / a / "status.json").read_text()) for a in ("base", "tuned", "fp8")}
    assert status["base"]["phases"]["throughput"] == status["tuned"]["phases"]["throughput"] == "complete"
    assert status["fp8"]["phases"]["throughput"] == "failed"
    assert "cause: ValueError: mm_encoder_attn_dtype='fp8' requires" in status["fp8"]["errors"]["throughput"]
    assert "fp8 throughput: FAILED (ValueError: mm_encoder_attn_dtype='fp8'" in text

    # each arm's settings and the versions its interpreter runs, recorded beside its results
    settings = {a: json.loads((run_dir / a / ARM_SETTINGS).read_text()) for a in ("base", "tuned", "fp8")}
    assert settings["tuned"]["python"] == str(wrapper) and settings["base"]["python"] == sys.executable
    assert settings["tuned"]["env"]["VIT_PARITY_TEST_ARM"] == "tuned"
    assert settings["fp8"]["engine_args"]["mm_encoder_attn_dtype"] == "fp8"
    assert settings["fp8"]["backend"] == "TORCH_SDPA" and settings["base"]["backend"] == "AUTO"
    for s in settings.values():
        assert s["versions"]["vllm"] and s["versions"]["torch"] and s["versions"]["python"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["arms"] == ["base", "tuned", "fp8"]
    assert info["arm_settings"]["tuned"]["engine_args"]["mm_processor_kwargs"] == {"max_pixels": SMALL}
    env = json.loads((run_dir / "tuned" / "env.json").read_text())
    assert env["environment"]["VIT_PARITY_TEST_ARM"] == "tuned" and "device" in env
    assert Path(env["executable"]).name.startswith("python")
