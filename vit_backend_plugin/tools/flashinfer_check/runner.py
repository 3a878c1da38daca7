"""Children: one process per (phase, backend), started by the parent as ``python -m
vit_backend_plugin.tools.flashinfer_check --child SPEC``; in the child, its environment and
phase, and its JSON written atomically."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from vit_backend_plugin.tools.flashinfer_check.engine import (
    child_decode,
    child_decode_paired,
    child_parity,
)


def child_name(spec: dict) -> str:
    runner = spec.get("model_runner", "default")
    return (f"{spec['phase']}_{spec['backend']}{'_spec' if spec.get('spec') else ''}"
            f"{'_cudagraphs' if spec.get('cudagraphs') else ''}{'_r' + str(spec['round']) if spec.get('round') else ''}"
            f"{'_vllmcheck' if spec.get('vllm_check') else ''}{'' if runner == 'default' else '_' + runner}"
            f"{'' if spec.get('v2_spec_host', 'default') == 'default' else '_v2spechost_' + spec['v2_spec_host']}")


def run_child(spec: dict) -> dict:
    if spec["phase"] == "decode_paired":
        # one engine-core process per LLM (vLLM's multiprocess client, its own ZMQ context and
        # IPC paths per instance): neither engine shares a Python process with the other or with
        # the timing loop. Spawned, not forked from a process whose first client runs threads.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
        os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
        # apply_model (the backend-name check) pickles its function across the process boundary
        os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
    else:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in this process
    if spec.get("v2_spec_host", "default") != "default":
        from vit_backend_plugin.flashinfer_host.builder import V2_SPEC_ENV

        os.environ[V2_SPEC_ENV] = "1" if spec["v2_spec_host"] == "on" else "0"
    if spec.get("model_runner") in ("v1", "v2"):
        os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "1" if spec["model_runner"] == "v2" else "0"
    if spec.get("vllm_check"):
        # vLLM's own detector: torch's sync-debug "warn" plus checks of pageable
        # non_blocking copies, raising on any sync in execute_model outside gpu_sync_allowed().
        os.environ["VLLM_GPU_SYNC_CHECK"] = "error"
    model_dir = Path(spec["model_dir"])
    if spec["phase"] == "decode_paired":
        return child_decode_paired(model_dir, spec["backends"], spec["sizes"], spec["repeats"],
                                   spec["cudagraphs"], spec["gpu_memory"])
    if spec["phase"] == "decode":
        return child_decode(model_dir, spec["backend"], spec["sizes"], spec["repeats"], spec["cudagraphs"])
    return child_parity(model_dir, spec["backend"], spec["spec"], bool(spec.get("vllm_check")),
                        bool(spec.get("cudagraphs")))


def child_main(spec_json: str, out: Path) -> int:
    """In the child: its phase run, its JSON written atomically (the parent reads it after)."""
    spec = json.loads(spec_json)
    res = run_child(spec)
    name = f"{child_name(spec)}.json"
    tmp = out / (name + ".tmp")
    tmp.write_text(json.dumps(res))
    os.replace(tmp, out / name)
    return 0


def _spawn(spec: dict, out: Path, args) -> dict | None:
    """One child through the harness's runner: it kills the child's whole process group on a
    timeout and waits until it is gone, so the next engine finds the GPU memory free."""
    from vit_backend_plugin.harness.commands import PhaseCommand
    from vit_backend_plugin.harness.runner import run_child

    spec = {**spec, "model_runner": args.model_runner, "v2_spec_host": args.v2_spec_host}
    path = out / f"{child_name(spec)}.json"
    cmd = PhaseCommand(argv=[sys.executable, "-m", "vit_backend_plugin.tools.flashinfer_check",
                             "--out", str(out), "--child", json.dumps(spec)], env={})
    print(f"[check-flashinfer-host] {path.stem} ...", flush=True)
    res = run_child(cmd, path.with_suffix(".log"), timeout=args.timeout)
    if not res.ok or not path.is_file():
        print(f"[check-flashinfer-host] {path.stem} FAILED ({res.seconds:.0f} s): {res.error_text()}", flush=True)
        return None
    print(f"[check-flashinfer-host] {path.stem} done in {res.seconds:.0f} s", flush=True)
    return json.loads(path.read_text())
