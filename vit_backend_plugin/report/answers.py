"""The parsed answer behind one lm-eval sample, for the agreement rate and the list of differing items.

lm-eval logs the raw generation (``filtered_resps``) and the per-item metric (``acc``), not
the answer its MMMU scorer parsed out of the generation. To compare answers we run
lm-eval's own MMMU parser (``lm_eval/tasks/mmmu/utils.py``) on the logged response, loaded
from the installed file in isolation, so nothing MMMU-specific is re-implemented here.

One change: where lm-eval's parser finds no option in the response it guesses one at random.
That guess is not an answer, so here it is reported as ``unparsed: <response>`` (two
backends "agree" on such an item only if they generated the same text).
Without lm-eval installed (core install), the stripped response text is the answer.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any


class _NoGuess:
    """Stands in for the ``random`` module inside the parser: a guess becomes "no answer"."""

    class Guessed(Exception):
        pass

    def choice(self, seq):  # noqa: ARG002 - signature of random.choice
        raise self.Guessed

    def seed(self, *a, **k):
        pass


@lru_cache(maxsize=1)
def _mmmu_utils() -> ModuleType | None:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "mmmu" / "utils.py"
    if not path.is_file():
        return None
    mod_spec = importlib.util.spec_from_file_location("_vit_parity_lm_eval_mmmu_utils", path)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)  # imports ast, random, re, numpy only
    except Exception:
        return None
    module.random = _NoGuess()  # this private copy only; the global `random` is untouched
    return module


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def response_text(sample: dict[str, Any]) -> str:
    """The (first) filtered response of a generation sample, as text."""
    fr = sample.get("filtered_resps")
    while isinstance(fr, list | tuple) and fr:
        fr = fr[0]
    return "" if fr is None or isinstance(fr, list | tuple) else str(fr)


def _loglikelihood_choice(fr: list) -> str | None:
    """multiple_choice tasks log [[logprob, is_greedy], ...] per choice: the answer is the argmax."""
    try:
        scores = [float(x[0]) for x in fr]
    except (TypeError, ValueError, IndexError):
        return None
    return str(max(range(len(scores)), key=scores.__getitem__)) if scores else None


def parsed_answer(sample: dict[str, Any]) -> str:
    fr = sample.get("filtered_resps")
    if isinstance(fr, list) and fr and isinstance(fr[0], list | tuple) and len(fr[0]) == 2:
        choice = _loglikelihood_choice(fr)
        if choice is not None:
            return f"choice {choice}"
    text = response_text(sample)
    doc = sample.get("doc")
    mmmu = _mmmu_utils()
    if mmmu is not None and isinstance(doc, dict) and "question_type" in doc and "options" in doc:
        try:
            if doc["question_type"] == "multiple-choice":
                options = ast.literal_eval(doc["options"])
                letters = [chr(ord("A") + i) for i in range(len(options))]
                return mmmu.parse_multi_choice_response(text, letters, dict(zip(letters, options, strict=True)))
            preds = mmmu.parse_open_response(text)
            return "open: " + (", ".join(sorted(str(p).strip() for p in preds if str(p).strip())) or "(nothing)")
        except _NoGuess.Guessed:
            return f"unparsed: {_short(text)!r}"
        except Exception:  # an odd doc: fall back to the text itself
            pass
    return _short(text.strip(), 80)
