"""How much of a ViT's encoder time any attention backend can save (Amdahl bound), on the GPU.

Re-runs one backend's throughput phase of a finished `vit-parity run` (its recorded spec in
command.json), in one process (VLLM_ENABLE_V1_MULTIPROCESSING=0), twice in separate invocations:

    python scripts/gpu_attention_share.py reports/<run>/<BACKEND> stock     # the spec as recorded
    python scripts/gpu_attention_share.py reports/<run>/VIT_TRITON null     # attention costs ~0

`null` makes the plugin's kernel return an uninitialised output (no attention FLOPs, no reads),
so the encoder timer measures everything but attention: stock / null is the most any backend
can gain on this ViT. A diagnostic, not a backend: outputs are garbage (dummy weights anyway).
Prints one JSON line; the device driver collects them.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    backend_dir, mode = sys.argv[1], sys.argv[2]
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the patch below must reach the worker
    cmd = json.load(open(os.path.join(backend_dir, "command.json")))["throughput"]
    spec = json.loads(cmd["argv"][cmd["argv"].index("--spec") + 1])
    os.environ.update(cmd.get("env") or {})
    if mode == "null":
        import torch

        from vit_backend_plugin.vllm_glue import mm_encoder

        assert spec["backend"] in ("VIT_TRITON", "VIT_AUTO"), "null mode needs a plugin backend's spec"
        mm_encoder.get_kernel = lambda name: (lambda q, k, v, cu, max_len, scale: torch.empty_like(q))
    from vit_backend_plugin.harness.throughput import median_metrics, run_vllm

    result = run_vllm(spec)
    med = median_metrics(result["repeats"])
    print("ATTENTION_SHARE " + json.dumps({"mode": mode, "backend": spec["backend"],
                                           "encoder_images_per_s": med.get("encoder_images_per_s"),
                                           "repeats": [r.get("encoder_images_per_s") for r in result["repeats"]]}),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
