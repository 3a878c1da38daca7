"""What an arm's interpreter would run: ``PYTHON interpreter_probe.py [--device]`` prints one JSON
object. Run by file path with the arm's own interpreter (another virtualenv has other versions,
and may lack this package), so it imports nothing but the standard library (and torch, for
``--device``). The children start as ``python -m vit_backend_plugin...`` from the same working
directory, which puts that directory first on ``sys.path``: so does this probe, so the plugin it
finds is the one the children import.
"""

from __future__ import annotations

import json
import os
import platform
import sys

PACKAGES = ("torch", "torchvision", "transformers", "tokenizers", "vllm", "lm_eval", "datasets",
            "triton", "flash-attn", "xformers", "flashinfer-python", "pydantic", "numpy",
            "vit-backend-plugin")
MODULES = ("vit_backend_plugin", "vllm", "lm_eval", "transformers", "torch")


def probe(with_device: bool) -> dict:
    from importlib.metadata import PackageNotFoundError, entry_points, version
    from importlib.util import find_spec

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    modules = {}
    for name in MODULES:
        try:
            spec = find_spec(name)
        except (ImportError, ValueError):
            spec = None
        modules[name] = None if spec is None else (spec.origin or "namespace")
    plugins = [e.name for e in entry_points(group="vllm.general_plugins")]
    out = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "versions": versions,
        "modules": modules,  # where each would be imported from (None: not importable)
        "vllm_plugins": plugins,  # entry points vLLM loads in every process
    }
    if with_device:
        out["device"] = device()
    return out


def device() -> dict:
    info: dict = {"machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpus"] = [
                {"name": torch.cuda.get_device_name(i),
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
                for i in range(torch.cuda.device_count())
            ]
    except Exception as e:  # torch missing or broken: still record what we can
        info["torch_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
    return info


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # as `python -m` does for the children
    print(json.dumps(probe("--device" in sys.argv[1:])))
