"""`vit-parity report`: parity verdicts + report (md, html, summary.json) for a run directory
(:func:`build_report`) or for lm-eval output folders (``report.lm_eval_source``); the exit code
rule for CI is ``report.exit_codes.exit_code(summary)``.

Kept import-light: ``from vit_backend_plugin.report.parity import ParityThresholds`` (used by
config validation) must not pull matplotlib or jinja2.
"""

from __future__ import annotations

from pathlib import Path


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write report.md, report.html and summary.json for ``run_dir`` (into ``out_dir``,
    default the run dir itself); return their paths keyed ``"md"``, ``"html"``, ``"json"``."""
    from vit_backend_plugin.report.build import build_report as _build

    return _build(run_dir, out_dir)


__all__ = ["build_report"]
