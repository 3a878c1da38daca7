"""How much of a ViT's encoder time any attention backend can save (Amdahl bound), on the GPU.

Runs the throughput phase of a `vit-parity run` config for one backend, in one process
(VLLM_ENABLE_V1_MULTIPROCESSING=0), one backend per invocation:

    python scripts/gpu_attention_share.py eval_configs/<config>.yaml FLASH_ATTN       # as vLLM runs it
    python scripts/gpu_attention_share.py eval_configs/<config>.yaml VIT_TRITON null  # attention ~0
    python scripts/gpu_attention_share.py eval_configs/<config>.yaml STOCK            # plugin not loaded

`STOCK` runs vLLM without the plugin (``VLLM_PLUGINS`` names no plugin, no backend named): stock
vLLM's own choice, the baseline of "never slower with the plugin installed" (against `AUTO`).

`null` makes the plugin's kernel return an uninitialised output (no attention FLOPs, no reads),
so vLLM's encoder timer measures everything but attention: stock / null is the most any backend
can gain on this ViT. A diagnostic, not a backend: outputs are garbage (dummy weights anyway).
Prints one `ATTENTION_SHARE {json}` line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


def main() -> int:
    config, backend = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "as_run"
    if backend == "STOCK":  # vLLM loads only the general plugins VLLM_PLUGINS names: none here
        os.environ["VLLM_PLUGINS"] = "no-plugin"
        backend, mode = "AUTO", "stock_without_plugin"
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the patch below must reach the worker
    from vit_backend_plugin.harness.commands import backend_env, throughput_spec
    from vit_backend_plugin.harness.config import load_config
    from vit_backend_plugin.harness.runner import resolve_demo_refs

    cfg = load_config(config)
    model, include = resolve_demo_refs(cfg)  # builds the demo:// model folder once
    cfg = cfg.model_copy(update={"model": model, "include_path": include})
    spec = throughput_spec(cfg, backend, Path(tempfile.mkdtemp()))
    os.environ.update(backend_env(cfg, backend))
    if mode == "null":
        import torch

        from vit_backend_plugin.vllm_glue import mm_encoder

        assert backend in ("VIT_TRITON", "VIT_AUTO"), "null mode runs through a plugin backend's op"
        mm_encoder.get_kernel = lambda name: (lambda q, k, v, cu, max_len, scale: torch.empty_like(q))
    from vit_backend_plugin.harness.throughput import OfflineRunner, device_info, median_metrics

    runner = OfflineRunner(spec)
    runner.start()
    runner.warmup()
    result = {"repeats": [runner.round(r) for r in range(spec["settings"]["repeats"])]}
    med = median_metrics(result["repeats"])
    from vit_backend_plugin.plugin import status

    loaded = bool(status()["attempted"])
    assert loaded == (mode != "stock_without_plugin"), f"plugin loaded={loaded} in mode {mode}"
    print("ATTENTION_SHARE " + json.dumps({"mode": mode, "backend": spec["backend"], "plugin_loaded": loaded,
                                           "encoder_images_per_s": med.get("encoder_images_per_s"),
                                           "device": device_info(),
                                           "repeats": [r.get("encoder_images_per_s") for r in result["repeats"]]}),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
