"""Data-parallel accuracy (issue 25.2): an arm's ``engine_args.data_parallel_size`` reaches
lm-eval's ``vllm-vlm`` model_args (its Ray replicas), never the throughput phase's single engine;
and on the demo (CPU, slow) a data-parallel arm answers item for item as a single engine does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vit_backend_plugin.harness.arms import resolve_arms
from vit_backend_plugin.harness.commands import accuracy_command, throughput_spec
from vit_backend_plugin.harness.config import parse_config


def test_data_parallel_size_reaches_lm_eval_and_not_the_throughput_engine(tmp_path):
    cfg = parse_config({"model": "m", "engine": "vllm", "engine_args": {"dtype": "float32"},
                        "arms": [{"name": "one"}, {"name": "dp2", "engine_args": {
                            "data_parallel_size": 2, "tensor_parallel_size": 2}}]})
    one, dp2 = resolve_arms(cfg)
    argv = accuracy_command(cfg, dp2, tmp_path).argv
    margs = json.loads(argv[argv.index("--model_args") + 1])
    assert margs["data_parallel_size"] == 2 and margs["tensor_parallel_size"] == 2
    assert argv[argv.index("--model") + 1] == "vllm-vlm"
    spec = throughput_spec(cfg, dp2, tmp_path)
    assert spec["engine_args"] == {"dtype": "float32", "tensor_parallel_size": 2}


def test_replica_gpu_reservation_wraps_lm_eval_vlm_remote():
    """On GPUs each vllm-vlm replica must reserve its engine's GPUs (lm-eval's text-only class
    does; its VLM class does not): the shim turns the bare decorator into num_gpus=N."""
    pytest.importorskip("lm_eval.models.vllm_vlms")
    import lm_eval.models.vllm_vlms as vlms

    from vit_backend_plugin.harness.lm_eval_child import reserve_replica_gpus

    real = vlms.ray
    calls = []

    class FakeRay:
        def remote(self, *args, **kwargs):
            calls.append((args, kwargs))
            return (lambda fn: fn) if kwargs else args[0]

        def get(self, refs):
            return refs

    vlms.ray = FakeRay()
    try:
        reserve_replica_gpus(2)

        def replica():
            return "ok"

        assert vlms.ray.remote(replica) is replica
        assert calls == [((), {"num_gpus": 2})]
        assert vlms.ray.get([1]) == [1]  # everything else passes through
    finally:
        vlms.ray = real


def samples(run_dir: Path, arm: str) -> dict[tuple[str, int], object]:
    out = {}
    for f in (run_dir / arm / "lm_eval").rglob("samples_*.jsonl"):
        task = f.name[len("samples_"):].rsplit("_", 1)[0]
        for line in f.read_text().splitlines():
            s = json.loads(line)
            out[(task, s["doc_id"])] = s["filtered_resps"]
    return out


@pytest.mark.slow
def test_demo_data_parallel_arm_answers_item_for_item_as_one_engine(tmp_path):
    """data_parallel_size 2 through lm-eval's own Ray path (two vLLM CPU engines, each a Ray
    task of a local instance the child starts) against a single engine: the same items, the
    same answers."""
    from test_ray_arms import demo_config

    cfg = demo_config(tmp_path, "dp", [
        {"name": "single", "backend": "TORCH_SDPA"},
        {"name": "dp2", "backend": "TORCH_SDPA", "engine_args": {"data_parallel_size": 2}}])
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vit_backend_plugin.cli", "run", str(cfg),
                           "--no-fail"], capture_output=True, text=True, timeout=2400)
    print(f"single + data-parallel demo arms took {time.monotonic() - t0:.0f}s")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    run_dir = tmp_path / "dp"
    log = (run_dir / "dp2" / "accuracy.log").read_text()
    # lm-eval's Ray path ran, in a Ray instance of the child's own (RAY_ADDRESS=local)
    assert "Using address local set in the environment variable RAY_ADDRESS" in log, log[-3000:]
    assert len(set(re.findall(r"run_inference_one_model pid=(\d+)", log))) == 2  # two replicas
    one, dp = samples(run_dir, "single"), samples(run_dir, "dp2")
    assert one and one.keys() == dp.keys()
    assert one == dp
