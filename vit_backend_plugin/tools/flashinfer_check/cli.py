"""`vit-parity check-flashinfer-host`: its options, the phases asked for, ``summary.json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vit_backend_plugin.tools.flashinfer_check.model import DECODERS, SPEC_CONFIG, make_model_dir
from vit_backend_plugin.tools.flashinfer_check.phases import (
    BACKENDS,
    PHASES,
    run_decode,
    run_decode_paired,
    run_parity,
)
from vit_backend_plugin.tools.flashinfer_check.runner import child_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for the per-child JSON and summary.json")
    parser.add_argument("--phases", default="parity,decode",
                        help="comma-separated: parity, decode, decode_paired")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="stock first, ours second; decode_paired takes exactly two (any two "
                             "backends the platform runs, e.g. CPU_ATTN,CPU_ATTN for its mechanics)")
    parser.add_argument("--parity-modes", default="no_spec,spec_ngram",
                        help="comma-separated: no_spec, spec_ngram (n-gram speculative decoding)")
    parser.add_argument("--decode-batch-sizes", default="1,2,4,8,16,32,64,128,256")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per decode batch size")
    parser.add_argument("--rounds", type=int, default=1,
                        help="decode phase: engines per backend, started in ABBA order (stock, ours, "
                             "ours, stock, ...); each batch size's medians pool every round's repeats")
    parser.add_argument("--paired-gpu-memory", type=float, default=0.35,
                        help="decode_paired: gpu_memory_utilization of each of the two engines (both "
                             "share one GPU; vLLM's CPU platform sizes its cache from VLLM_CPU_KVCACHE_SPACE)")
    parser.add_argument("--cudagraphs", action="store_true",
                        help="both phases with vLLM's default compilation and CUDA graphs "
                             "(default: enforce_eager)")
    parser.add_argument("--model-runner", choices=["default", "v1", "v2"], default="default",
                        help="vLLM's model runner (0.32 uses V2 on CUDA by default)")
    parser.add_argument("--v2-spec-host", choices=["default", "on", "off"], default="default",
                        help="VIT_FLASHINFER_HOST_V2_SPEC for the children: FLASHINFER_HOST plans V2-runner "
                             "spec-decode steps on the host (on by default since the H100 check)")
    parser.add_argument("--decoder", choices=sorted(DECODERS), default="qwen2.5-0.5b",
                        help="the decoder's shape (weightless): Qwen2.5-0.5B's (seed 003's), or a tiny "
                             "one of the same architecture for the phases' mechanics on a CPU")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per child")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)


def main(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        return child_main(args.child, out)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    phases = [p.strip() for p in args.phases.split(",")]
    if set(phases) - set(PHASES):
        print(f"[check-flashinfer-host] unknown phases {sorted(set(phases) - set(PHASES))}; "
              f"choices: {', '.join(PHASES)}", flush=True)
        return 2
    if "decode_paired" in phases and len(backends) != 2:
        print("[check-flashinfer-host] decode_paired takes two backends: stock,ours", flush=True)
        return 2
    model_dir = make_model_dir(out, args.decoder)
    prev = out / "summary.json"  # phases run by separate invocations accumulate in one summary
    summary: dict = json.loads(prev.read_text()) if prev.is_file() else {}
    summary.update({"model": DECODERS[args.decoder], "spec_config": SPEC_CONFIG, "backends": backends,
                    "model_runner": args.model_runner, "v2_spec_host": args.v2_spec_host})
    ok = True
    for phase, run in (("parity", run_parity), ("decode", run_decode), ("decode_paired", run_decode_paired)):
        if phase in phases:
            ok &= run(args, backends, model_dir, out, summary)
    summary["ok"] = bool(ok) and summary.get("ok", True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0 if ok else 1
