"""`vit-parity`: one entry point, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``main(args) -> int``.
Only the chosen subcommand's module is imported, so `vit-parity explain` never
pays for torch, vLLM or lm-eval imports.

The core install has none of torch, vLLM or lm-eval (they come with the extras). A subcommand
that needs one of them and does not find it gets one line naming the module and the extra to
install, and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import NamedTuple


class Subcommand(NamedTuple):
    module: str
    help: str
    extras: tuple[str, ...] = ()  # what a full run of it needs (the install hint names these)


# Data, not code: adding a subcommand is one entry.
SUBCOMMANDS: dict[str, Subcommand] = {
    "explain": Subcommand("vit_backend_plugin.selection.explain",
                          "which ViT attention backend a model gets, and why"),
    "bench-kernels": Subcommand("vit_backend_plugin.tools.bench_kernels",
                                "time every ViT attention kernel side by side (GPU)", ("vllm",)),
    "tune": Subcommand("vit_backend_plugin.tools.tune",
                       "re-measure the speed table on this GPU (user-local)", ("vllm",)),
    "run": Subcommand("vit_backend_plugin.harness.run",
                      "MMMU via lm-eval + throughput, once per arm (a backend or any engine setting)", ("vllm", "eval")),
    "demo": Subcommand("vit_backend_plugin.harness.demo",
                       "the embedded offline default: tiny VLM, tiny MMMU, CPU", ("vllm", "eval")),
    "report": Subcommand("vit_backend_plugin.report.cli",
                         "parity verdict + report (md, html, json) for a run dir"),
    "bench-builder": Subcommand("vit_backend_plugin.tools.bench_builder",
                                "time FlashInfer metadata build(), stock vs host-buffer", ("vllm",)),
    "record-engine": Subcommand("vit_backend_plugin.tools.record_engine",
                                "record a vLLM-engine run's encoder images/s as engine evidence in "
                                "the user speed table"),
    "check-flashinfer-host": Subcommand("vit_backend_plugin.tools.flashinfer_check",
                                        "FLASHINFER vs FLASHINFER_HOST in a vLLM engine: greedy "
                                        "parity, syncs per build(), decode speed", ("vllm", "eval")),
}

# Top-level module -> the extra of pyproject.toml that installs it.
EXTRA_FOR_MODULE: dict[str, str] = {
    "torch": "vllm",
    "vllm": "vllm",
    "triton": "vllm",
    "lm_eval": "eval",
    "datasets": "eval",
    "transformers": "eval",
    "tokenizers": "eval",
    "ray": "eval",
    "PIL": "eval",
    "torchvision": "eval",
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vit-parity",
        description="Change the ViT attention backend; prove accuracy did not move and speed did.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in SUBCOMMANDS.items():
        sub.add_parser(name, help=cmd.help, add_help=False)
    return parser


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra_hint(command: str, err: ImportError) -> str | None:
    """The one-line message for a missing optional dependency, or None if ``err`` is not one
    (a module of ours that fails to import, or a submodule missing from an installed package,
    is a bug or a version mismatch: its traceback is the useful answer)."""
    top = (err.name or "").split(".")[0]
    extra = EXTRA_FOR_MODULE.get(top)
    if extra is None or _installed(top):
        return None
    extras = list(SUBCOMMANDS[command].extras)
    extras += [extra] if extra not in extras else []
    return (f"vit-parity {command}: error: needs {top!r} (from the {extra!r} extra), which is not "
            f"installed: pip install 'vit-backend-plugin[{','.join(extras)}]'")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser = _top_parser()
        if not argv or argv[0] in ("-h", "--help"):
            parser.print_help()
            return 0 if argv else 2
        parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}")
    name, rest = argv[0], argv[1:]
    cmd = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(cmd.module)
        parser = argparse.ArgumentParser(prog=f"vit-parity {name}", description=cmd.help)
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        return int(module.main(args) or 0)
    except ImportError as e:
        hint = missing_extra_hint(name, e)
        if hint is None:
            raise
        if "-h" in rest or "--help" in rest:
            # the options need the module's import; what the command does needs nothing
            print(f"vit-parity {name}: {cmd.help}")
        print(hint, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
