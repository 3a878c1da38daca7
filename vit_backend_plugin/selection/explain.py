"""`vit-parity explain`: which ViT attention backend a model gets on a device, and why."""

from __future__ import annotations

import argparse
import json
import sys

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
    p.add_argument("--platform", choices=PLATFORMS, help="default: cuda when --capability is given, else cuda")
    p.add_argument("--capability", type=_capability, help="CUDA compute capability, e.g. 9.0")
    p.add_argument("--available", help=f"comma list of importable kernels to plan for (default: what is installed here); "
                                       f"known: {', '.join(FEATURES)}")
    p.add_argument("--backend", help="an explicit choice to validate (like VIT_ATTN_BACKEND)")
    p.add_argument("--seq-len", type=int, help="typical per-image sequence length (picks the speed-table row)")
    p.add_argument("--architecture", help="model class as vLLM resolves it, e.g. Qwen2_5_VLForConditionalGeneration "
                                          "(default: the first of --model's architectures): engine runs of it "
                                          "outrank other runs of the head size")
    p.add_argument("--json", action="store_true", help='print {"chosen", "candidates": [{"name","usable","reason"}]}')


def _fail(msg: str) -> int:
    print(f"vit-parity explain: error: {msg}", file=sys.stderr)
    return 2


def build_request(args) -> ResolveRequest:
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
    if args.available is not None:
        features = frozenset(f.strip() for f in args.available.split(",") if f.strip())
        unknown = features - set(FEATURES)
        if unknown:
            raise ResolverInputError(f"unknown --available entries {sorted(unknown)}; known: {', '.join(FEATURES)}")
    else:
        features = installed_features()
    platform = args.platform or "cuda"
    measured, source, engine = ({}, "", {})
    if platform == "cuda" and args.capability and not args.backend and head > 0:
        measured, source = speed_table.lookup(args.capability, dtype, head, args.seq_len)
        engine = speed_table.engine_lookup(args.capability, dtype, head, architecture=arch)
    return ResolveRequest(
        head_size=head, dtype=dtype, platform=platform, capability=args.capability,
        features=features, explicit=args.backend, explicit_source="--backend",
        measured=measured, measured_source=source, engine_measured=engine,
    )


def _print_table(req: ResolveRequest, res) -> None:
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
    console.print(table)
    console.print(f"chosen: [bold]{res.chosen}[/bold] ({res.how}: {res.why})")
    if res.install_hint:
        console.print(f"hint: {res.install_hint}")


def main(args) -> int:
    try:
        req = build_request(args)
        res = resolve(req)
    except (ResolverInputError, BackendSelectionError, ModelConfigError, ValueError) as e:
        return _fail(str(e))
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
    else:
        _print_table(req, res)
    return 0
