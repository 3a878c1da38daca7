"""The one rule from verdicts to a process exit code (`vit-parity report`, and `vit-parity run`
after its report), so CI can gate on parity.

Verdicts (report/parity.py's ``ReportVerdict``): PASS, INCONCLUSIVE, FAIL, ERROR.

* 0 - every verdict is PASS or INCONCLUSIVE (INCONCLUSIVE: no significant difference, but too
  few items to rule a move beyond the tolerance out; not evidence of a regression). With
  ``inconclusive_fails`` (``--strict``) an INCONCLUSIVE counts as a FAIL.
* 1 - at least one FAIL, and no ERROR.
* 3 - at least one ERROR (an arm or the baseline has no per-item results: crashed, missing,
  unreadable): the comparison itself is broken, which comes before any verdict it did reach.
* 2 - usage errors (bad arguments, not a run directory): decided by the command line, not here.

Warnings (versions or lm-eval config differing from the baseline) never change the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OK, FAILED, USAGE, ERROR = 0, 1, 2, 3
NOT_FAILURES = frozenset({"PASS", "INCONCLUSIVE"})
DECIDED = NOT_FAILURES | {"FAIL", "ERROR"}  # a test checks this is every ReportVerdict


def exit_code(summary: Mapping[str, Any], *, inconclusive_fails: bool = False) -> int:
    """0 / 1 / 3 for a summary.json (as a dict), by the rule above. A verdict this rule does not
    know (a damaged or foreign summary) counts as ERROR: never a silent 0."""
    parity = summary.get("parity") or {}
    if not isinstance(parity, Mapping):
        return ERROR
    verdicts = {str(p.get("verdict")) if isinstance(p, Mapping) else "?" for p in parity.values()}
    if verdicts - NOT_FAILURES - {"FAIL"}:
        return ERROR
    if "FAIL" in verdicts or (inconclusive_fails and "INCONCLUSIVE" in verdicts):
        return FAILED
    return OK
