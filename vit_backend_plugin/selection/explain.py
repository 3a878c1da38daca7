"""`vit-parity explain`: which ViT attention backend a model gets on a device, and why."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass

from vit_backend_plugin.selection import speed_table
from vit_backend_plugin.selection.catalog import FEATURES, PLATFORMS, normalize_dtype
from vit_backend_plugin.selection.model_config import (
    ModelConfigError,
    load_config,
    model_dtype,
    vision_head_size,
)
from vit_backend_plugin.selection.probe import installed_features
from vit_backend_plugin.selection.resolver import (
    BackendSelectionError,
    ResolveRequest,
    ResolverInputError,
    resolve,
)


def _capability(text: str) -> tuple[int, int]:
    try:
        major, _, minor = text.partition(".")
        cap = (int(major), int(minor or 0))
    except ValueError:
        raise argparse.ArgumentTypeError(f"capability must look like 9.0, got {text!r}") from None
    if cap[0] <= 0:
        raise argparse.ArgumentTypeError(f"capability must be positive, got {text!r}")
    return cap


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head-size", type=int, help="attention head size of the vision tower")
    p.add_argument("--model", help="local HF model dir or config.json: read the vision head size from it")
    p.add_argument("--dtype", help="float16 | bfloat16 | float32 (default: the model's, else bfloat16)")
    p.add_argument("--platform", choices=PLATFORMS,
                   help="default: cuda (this machine's NVIDIA GPU if nvidia-smi finds one, else assumed)")
    p.add_argument("--capability", type=_capability,
                   help="CUDA compute capability, e.g. 9.0 (default: this machine's GPU's, if any)")
    p.add_argument("--available", help=f"comma list of importable kernels to plan for (default: what is installed here); "
                                       f"known: {', '.join(FEATURES)}")
    p.add_argument("--backend", help="an explicit choice to validate (like VIT_ATTN_BACKEND)")
    p.add_argument("--seq-len", type=int, help="typical per-image sequence length (picks the speed-table row)")
    p.add_argument("--architecture", help="model class as vLLM resolves it, e.g. Qwen2_5_VLForConditionalGeneration "
                                          "(default: the first of --model's architectures): engine runs of it "
                                          "outrank other runs of the head size")
    p.add_argument("--json", action="store_true", help='print {"chosen", "how", "why", "install_hint", '
                                                     '"candidates": [{"name","usable","reason"}], '
                                                     '"planned_for": {...}}')


def _fail(msg: str) -> int:
    print(f"vit-parity explain: error: {msg}", file=sys.stderr)
    return 2


def detect_cuda_gpu() -> tuple[str, tuple[int, int]] | None:
    """(name, compute capability) of this machine's first NVIDIA GPU, from nvidia-smi (no torch
    import, no CUDA context); None when there is none or nvidia-smi cannot tell."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        name, _, cap = out.splitlines()[0].rpartition(",")
        return name.strip(), _capability(cap.strip())
    except (OSError, subprocess.SubprocessError, IndexError, argparse.ArgumentTypeError):
        return None


@dataclass(frozen=True)
class PlannedFor:
    """The device the answer is for, and where each part came from: a GPU-less machine is
    answered for an assumed CUDA device, and the output must say so."""

    platform: str
    platform_from: str  # "--platform" | "--capability" | "detected" | "assumed"
    capability: tuple[int, int] | None
    capability_from: str  # "--capability" | "detected" | "unknown" | "not used"
    features: frozenset[str]
    features_from: str  # "--available" | "installed"
    gpu: str | None = None  # the GPU detected here, if one was looked for and found

    @property
    def capability_text(self) -> str | None:
        return None if self.capability is None else f"{self.capability[0]}.{self.capability[1]}"

    def lines(self) -> list[str]:
        platform = {
            "--platform": "--platform",
            "--capability": "implied by --capability",
            "detected": f"detected: {self.gpu}",
            "assumed": "assumed: no NVIDIA GPU found on this machine; set --platform",
        }[self.platform_from]
        capability = {
            "--capability": "--capability",
            "detected": f"detected: {self.gpu}",
            "unknown": "capability limits not checked, no measured speeds; set --capability, e.g. 9.0",
            "not used": f"not used on {self.platform}",
        }[self.capability_from]
        features = {
            "--available": "--available",
            "installed": "installed here: found, not imported; torch implies its CUDA SDPA",
        }[self.features_from]
        return [
            f"platform:   {self.platform} ({platform})",
            f"capability: {self.capability_text or 'unknown'} ({capability})",
            f"kernels:    {', '.join(sorted(self.features)) or 'none'} ({features})",
        ]

    def to_json(self) -> dict:
        return {
            "platform": self.platform, "platform_from": self.platform_from,
            "capability": self.capability_text, "capability_from": self.capability_from,
            "features": sorted(self.features), "features_from": self.features_from,
            "gpu": self.gpu,
        }


def plan_device(args) -> PlannedFor:
    """What to answer for: the command line first, then this machine's GPU, else an assumed
    CUDA device of unknown capability."""
    if args.available is not None:
        features = frozenset(f.strip() for f in args.available.split(",") if f.strip())
        unknown = features - set(FEATURES)
        if unknown:
            raise ResolverInputError(f"unknown --available entries {sorted(unknown)}; known: {', '.join(FEATURES)}")
        features_from = "--available"
    else:
        features, features_from = installed_features(), "installed"
    platform, capability, gpu = args.platform, args.capability, None
    platform_from = "--platform" if platform else "--capability" if capability else None
    capability_from = "--capability" if capability else None
    if not capability and (platform or "cuda") == "cuda":
        found = detect_cuda_gpu()
        if found:
            gpu, capability = found
            capability_from = "detected"
        else:
            capability_from = "unknown"
        platform_from = platform_from or ("detected" if found else "assumed")
    platform = platform or "cuda"
    return PlannedFor(platform=platform, platform_from=platform_from, capability=capability,
                      capability_from=capability_from or "not used", features=features,
                      features_from=features_from, gpu=gpu)


def build_request(args) -> tuple[ResolveRequest, PlannedFor]:
    """Validated inputs; raises ValueError subclasses with one-line messages."""
    head, dtype = args.head_size, args.dtype
    arch = getattr(args, "architecture", None)
    if args.model:
        cfg = load_config(args.model)
        arch = arch or next(iter(cfg.get("architectures") or []), None)
        head = head or vision_head_size(cfg)
        dtype = dtype or model_dtype(cfg)
    if head is None:
        raise ResolverInputError("give --head-size or --model")
    dtype = normalize_dtype(dtype or "bfloat16")
    device = plan_device(args)
    platform, capability = device.platform, device.capability
    measured, source, engine = ({}, "", {})
    if platform == "cuda" and capability and not args.backend and head > 0:
        measured, source = speed_table.lookup(capability, dtype, head, args.seq_len)
        engine = speed_table.engine_lookup(capability, dtype, head, architecture=arch)
    req = ResolveRequest(
        head_size=head, dtype=dtype, platform=platform, capability=capability,
        features=device.features, explicit=args.backend, explicit_source="--backend",
        measured=measured, measured_source=source, engine_measured=engine,
    )
    return req, device


def _print_table(req: ResolveRequest, res, device: PlannedFor) -> None:
    from rich.console import Console
    from rich.table import Table

    dev = req.platform + (f" {req.capability[0]}.{req.capability[1]}" if req.capability else "")
    table = Table(title=f"ViT attention candidates: head_size={req.head_size}, dtype={req.dtype}, {dev}")
    table.add_column("backend")
    table.add_column("usable")
    table.add_column("measured TFLOP/s", justify="right")
    table.add_column("reason / note")
    for c in res.candidates:
        m = req.measured.get(c.name)
        speed = "" if m is None else f"{m.tflops:.0f}" + ("" if m.numerics_ok else " (numerics FAIL)")
        mark = "[green]yes[/green]" if c.usable else "[red]no[/red]"
        name = f"[bold]{c.name}[/bold] <- chosen" if c.name == res.chosen else c.name
        table.add_row(name, mark, speed, c.reason or "-")
    console = Console()
    for line in device.lines():
        console.print(line, markup=False, highlight=False)
    console.print(table)
    console.print(f"chosen: [bold]{res.chosen}[/bold] ({res.how}: {res.why})")
    if res.install_hint:
        console.print(f"hint: {res.install_hint}")


def main(args) -> int:
    try:
        req, device = build_request(args)
        res = resolve(req)
    except (ResolverInputError, BackendSelectionError, ModelConfigError, ValueError) as e:
        return _fail(str(e))
    if args.json:
        print(json.dumps({**res.to_json(), "planned_for": device.to_json()}, indent=2))
    else:
        _print_table(req, res, device)
    return 0
