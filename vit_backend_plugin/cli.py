"""`vit-parity`: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``main(args) -> int``.
Only the chosen subcommand's module is imported, so `vit-parity explain` never
pays for torch, vLLM or lm-eval imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Data, not code: adding a subcommand is one line.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "explain": ("vit_backend_plugin.selection.explain", "which ViT attention backend a model gets, and why"),
    "bench-kernels": ("vit_backend_plugin.tools.bench_kernels", "time every ViT attention kernel side by side (GPU)"),
    "tune": ("vit_backend_plugin.tools.tune", "re-measure the speed table on this GPU (user-local)"),
    "run": ("vit_backend_plugin.harness.run", "MMMU via lm-eval + throughput, once per backend"),
    "demo": ("vit_backend_plugin.harness.demo", "the embedded offline default: tiny VLM, tiny MMMU, CPU"),
    "report": ("vit_backend_plugin.report.cli", "parity verdict + report (md, html, json) for a run dir"),
    "bench-builder": ("vit_backend_plugin.tools.bench_builder", "time FlashInfer metadata build(), stock vs host-buffer"),
    "record-engine": ("vit_backend_plugin.tools.record_engine",
                      "record a vLLM-engine run's encoder images/s as engine evidence in the user speed table"),
    "check-flashinfer-host": ("vit_backend_plugin.tools.flashinfer_check",
                              "FLASHINFER vs FLASHINFER_HOST in a vLLM engine: greedy parity, syncs per build(), decode speed"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vit-parity",
        description="Change the ViT attention backend; prove accuracy did not move and speed did.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser = _top_parser()
        if not argv or argv[0] in ("-h", "--help"):
            parser.print_help()
            return 0 if argv else 2
        parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}")
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"vit-parity {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
