"""`vit-parity run`'s exit code, for CI gating: the arms' completion, then the verdicts of the
report the run builds at its end, by the report's own rule
(:func:`vit_backend_plugin.report.exit_codes.exit_code`: what `vit-parity report` exits with).

The first that applies:

* 3 (ERROR) - the report could not be built, an arm failed or is incomplete, or a verdict is
  ERROR (an arm without per-item results) or one the rule does not know;
* 1 (FAIL) - a verdict is FAIL;
* 0 - every verdict is PASS or INCONCLUSIVE (too few items to rule a move beyond the tolerance
  out; not evidence of a regression). A throughput-only run (``accuracy: false``), a run of one
  arm and ``--no-report`` have no verdicts: 0 once every arm completed.

``--no-fail``: 0 whenever the run itself completed (every arm tried, the report built), whatever
the arms and verdicts. 2 (config and usage errors) is decided before anything runs.
"""

from __future__ import annotations

from typing import Any

OK, FAIL, USAGE, ERROR = 0, 1, 2, 3
MEANING = {OK: "no failing verdict", FAIL: "a verdict is FAIL",
           ERROR: "an arm failed or is incomplete, or a verdict is ERROR"}


def exit_code(complete: dict[str, bool], summary: dict[str, Any] | None, *, accuracy: bool,
              report_failed: bool = False, no_fail: bool = False) -> int:
    """``complete``: arm -> every phase complete; ``summary``: the report's summary.json, None
    when no report was built."""
    if report_failed:
        return ERROR
    if no_fail:
        return OK
    if not all(complete.values()):
        return ERROR
    if summary is None or not accuracy:  # no verdicts to gate on
        return OK
    from vit_backend_plugin.report.exit_codes import exit_code as verdict_code

    return verdict_code(summary)
