"""What a backend ran on (env.json): package versions, device, the environment that matters."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

_PACKAGES = ("torch", "torchvision", "transformers", "tokenizers", "vllm", "lm_eval", "datasets",
             "triton", "flash-attn", "xformers", "flashinfer-python", "pydantic", "numpy",
             "vit-backend-plugin")


def environment_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    device: dict[str, Any] = {"machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        import torch

        device["torch_cuda"] = torch.version.cuda
        device["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            device["gpus"] = [
                {"name": torch.cuda.get_device_name(i),
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
                for i in range(torch.cuda.device_count())
            ]
    except Exception as e:  # torch missing or broken: still record what we can
        device["torch_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
    watched = {k: v for k, v in os.environ.items()
               if k.startswith(("VLLM_", "CUDA_VISIBLE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                "TRANSFORMERS_OFFLINE", "VIT_"))}
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "device": device,
        "environment": watched,
    }
