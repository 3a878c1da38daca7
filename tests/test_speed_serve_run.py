"""`vit-parity run` in serve mode, end to end on vLLM's CPU engine with the demo model: per arm a
real `vllm serve` on a free port, timed by `vllm bench serve --dataset-name random-mm` in
interleaved rounds; an arm whose server cannot start fails with vLLM's reason while the others
complete, and no server process or port outlives the run."""

from __future__ import annotations

import json
import socket

import psutil
import yaml

from vit_backend_plugin import cli
from vit_backend_plugin.rundir.layout import THROUGHPUT


def _serve_processes() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "vllm" in cmd and " serve " in f" {cmd} " and "bench" not in cmd:
            out.append(p)
    return out


def test_serve_mode_runs_vllm_bench_serve_per_arm_and_releases_everything(tmp_path, capsys):
    before = {p.pid for p in _serve_processes()}
    cfg = {
        "model": "demo://tiny-qwen2-vl", "include_path": "demo://mmmu", "engine": "vllm",
        "accuracy": False, "output_dir": str(tmp_path), "run_id": "serve",
        "engine_args": {"dtype": "float32", "max_model_len": 4096, "enforce_eager": True},
        "env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
        "throughput": {"mode": "serve", "image_sizes": [[56, 56], [112, 84]], "num_prompts": 4,
                       "warmup": 2, "repeats": 2, "concurrency": 2, "timeout_s": 600},
        "arms": [
            {"name": "base", "backend": "TORCH_SDPA"},
            # vLLM 0.32 runs FP8 ViT attention on ROCm's AITER or Blackwell's FlashInfer only
            {"name": "fp8", "backend": "TORCH_SDPA", "engine_args": {"mm_encoder_attn_dtype": "fp8"}},
        ],
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rc = cli.main(["run", str(path)])
    text = capsys.readouterr().err
    assert rc == 3, text[-3000:]  # an arm failed: ERROR
    run_dir = tmp_path / "serve"

    seen = {a: json.loads((run_dir / a / THROUGHPUT).read_text()) for a in ("base",)}
    for a, tp in seen.items():
        assert tp["mode"] == "serve"
        assert [x["round"] for x in tp["repeats"]] == [0, 1], a
        assert tp["metrics"]["requests_per_s"] > 0 and tp["metrics"]["ttft_mean_ms"] > 0
        assert tp["metrics"]["encoder_images_per_s"] is None  # no encoder timer behind a server
    status = json.loads((run_dir / "fp8" / "status.json").read_text())
    assert status["phases"]["throughput"] == "failed"
    assert "mm_encoder_attn_dtype='fp8' requires" in status["errors"]["throughput"]

    # nothing left behind: no server of ours, every port the servers had is free again
    assert {p.pid for p in _serve_processes()} - before == set()
    for tp in seen.values():
        port = tp.get("port") or tp.get("serve", {}).get("port")
        if port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", int(port)))
