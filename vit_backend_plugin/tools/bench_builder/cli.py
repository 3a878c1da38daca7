"""`vit-parity bench-builder`: options, and which mode runs."""

from __future__ import annotations

import argparse
import json
import platform
import sys

import numpy as np

from vit_backend_plugin.tools.bench_builder.common import MODES, _require_cuda
from vit_backend_plugin.tools.bench_builder.full import run_full
from vit_backend_plugin.tools.bench_builder.planner_only import run_planner_only

DEFAULT_BATCH_SIZES = "1,2,4,8,16,32,64,128,256"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--planner-only", action="store_true",
                        help="time the pure planner + its H2D copies + the device page-index gather")
    parser.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES, help="comma-separated (default %(default)s)")
    parser.add_argument("--modes", "--mode", dest="modes", default="spec", type=parse_modes,
                        help="comma-separated, run in one process: decode: 1 token/row; mixed: 1/4 "
                             "prefill rows; spec: decode rows with --spec-tokens drafts + 1/8 "
                             "prefills (default %(default)s)")
    parser.add_argument("--spec-tokens", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=16)
    parser.add_argument("--max-context", type=int, default=4096)
    parser.add_argument("--no-trtllm", action="store_true",
                        help="full mode: --attention-config.use_trtllm_attention=0 (native FlashInfer "
                             "decode even where XQA/trtllm-gen is available)")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the JSON result here")


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"modes must be among {', '.join(MODES)}; got {text!r}")
    return list(dict.fromkeys(modes))


def main(args) -> int:
    torch, err = _require_cuda()
    if err:
        print(f"vit-parity bench-builder: {err}. Run it on a machine with an NVIDIA GPU "
              f"(--planner-only needs torch+numpy only; the default mode also needs vLLM and flashinfer).",
              file=sys.stderr)
        return 2
    if not args.planner_only:
        try:
            import flashinfer  # noqa: F401
            import vllm  # noqa: F401
        except ImportError as e:
            print(f"vit-parity bench-builder: {e}; install vLLM with flashinfer, or use --planner-only",
                  file=sys.stderr)
            return 2
    result = run_planner_only(args, torch) if args.planner_only else run_full(args, torch)
    result.update({
        "args": vars(args), "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(), "python": platform.python_version(), "numpy": np.__version__,
    })
    if not args.planner_only:
        import vllm
        result["vllm"] = vllm.__version__
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    key = "host_planner_syncs" if args.planner_only else "host_syncs"
    ok = result["detector_armed"] and all(r[key] == 0 for r in result["rows"])
    if args.planner_only:
        ok = ok and all(r["device_arrays_match_planner"] for r in result["rows"])
    return 0 if ok else 1
