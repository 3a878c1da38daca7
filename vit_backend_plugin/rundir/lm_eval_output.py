"""The one reader of lm-eval's output: which results file counts, and which lines of its samples
files are readable. The runner (is the accuracy phase complete?) and the report (what did it
score?) both read through here, so they never disagree about a directory.

lm-eval 0.4.13 (``loggers/evaluation_tracker.py``; the CLI saves the samples of every task in
the results' ``configs``, after the results file) writes, under ``--output_path``::

    <output_path>/<model_name_sanitized>/results_<date_id>.json
    <output_path>/<model_name_sanitized>/samples_<task>_<date_id>.jsonl   (one per task)

``date_id`` is ``datetime.now().isoformat()`` with ``:`` -> ``-``, so it sorts as text.

The rule: the results file that counts is the newest *complete* one; when none is complete,
the newest one (so the report can show what is wrong with it). Complete means: the results
file is a JSON object with a ``results`` object, and every task's samples file of the same
``date_id`` is there, every line of it readable, with as many distinct items as the results'
``n-samples`` say. A readable line is UTF-8 JSON holding an object with an integer ``doc_id``.

Beside the scores, a results file records how it was made (``simple_evaluate``'s ``config``, the
tracker's model identity, ``add_env_info``'s versions): :meth:`LmEvalOutput.recorded` reads that,
so reports can say whether two runs are comparable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def date_id(path: Path) -> str:
    """As ``lm_eval.utils.get_file_datetime``: the text after the last ``_``."""
    return path.name[path.name.rfind("_") + 1 :].removesuffix(".jsonl").removesuffix(".json")


def results_files(output_path: Path) -> list[Path]:
    """Every results file under ``output_path``, newest first."""
    files = [p for p in Path(output_path).rglob("results_*.json") if p.is_file()]
    return sorted(files, key=lambda p: (date_id(p), str(p)), reverse=True)


@dataclass
class SampleLines:
    """The readable lines of one samples file; ``bad`` counts the others."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0
    missing: bool = False
    error: str | None = None  # the file could not be read at all

    @property
    def doc_ids(self) -> set[int]:
        return {r["doc_id"] for r in self.records}


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return None
    if not isinstance(rec, dict):
        return None
    doc_id = rec.get("doc_id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, int):
        return None
    return rec


def read_sample_lines(path: Path) -> SampleLines:
    out = SampleLines(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        out.missing = True
        return out
    except OSError as e:
        out.error = str(e)
        return out
    # JSON Lines end lines with "\n" only: str.splitlines() would also split on U+2028 and
    # friends, which lm-eval writes unescaped (ensure_ascii=False) inside model responses
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        rec = _record(line)
        if rec is None:
            out.bad += 1
        else:
            out.records.append(rec)
    return out


def _object(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


@dataclass
class LmEvalOutput:
    """One results file and the samples files of its run."""

    results_path: Path
    raw: dict[str, Any] | None  # the parsed results; None when unreadable
    problem: str | None = None  # None: complete
    passed_over: list[tuple[Path, str]] = field(default_factory=list)  # newer, incomplete files
    _samples: dict[str, SampleLines] = field(default_factory=dict, repr=False)

    @property
    def date_id(self) -> str:
        return date_id(self.results_path)

    @property
    def complete(self) -> bool:
        return self.problem is None

    def sample_tasks(self) -> list[str]:
        """The tasks lm-eval logs samples for: those in ``configs`` (leaf tasks)."""
        return list(_object((self.raw or {}).get("configs")))

    def samples_path(self, task: str) -> Path:
        return self.results_path.parent / f"samples_{task}_{self.date_id}.jsonl"

    def samples(self, task: str) -> SampleLines:
        if task not in self._samples:
            self._samples[task] = read_sample_lines(self.samples_path(task))
        return self._samples[task]

    def recorded(self) -> Recorded:
        return Recorded.of(self.raw or {}, self.sample_tasks())

    def effective(self, task: str) -> int | None:
        """How many items the results say ``task`` was scored on."""
        n = _object(_object((self.raw or {}).get("n-samples")).get(task)).get("effective")
        return n if isinstance(n, int) and not isinstance(n, bool) else None


@dataclass(frozen=True)
class Recorded:
    """What lm-eval 0.4.13 wrote about a run beside its scores, copied as written (None where it
    wrote nothing): ``config`` from ``simple_evaluate``, the model identity and chat settings
    from ``GeneralConfigTracker``, the versions from ``add_env_info``."""

    model: Any = None  # config.model: lm-eval's model type, e.g. "vllm-vlm"
    model_name: Any = None  # the pretrained path or name (model_args' "pretrained")
    model_args: Any = None  # a "k=v,k=v" string or an object, as given to lm-eval
    limit: Any = None
    gen_kwargs: Any = None
    batch_size: Any = None
    tasks: list[str] = field(default_factory=list)  # the tasks scored (with samples)
    task_versions: dict[str, Any] = field(default_factory=dict)
    n_shot: dict[str, Any] = field(default_factory=dict)
    n_samples: dict[str, Any] = field(default_factory=dict)  # task -> effective item count
    chat_template_sha: Any = None
    system_instruction_sha: Any = None
    fewshot_as_multiturn: Any = None
    lm_eval_version: Any = None
    transformers_version: Any = None
    pretty_env_info: Any = None  # torch.utils.collect_env's text (Python, PyTorch, GPU, pip)

    @classmethod
    def of(cls, raw: dict[str, Any], tasks: list[str]) -> Recorded:
        config = _object(raw.get("config"))
        per_task = {k: _object(raw.get(k)) for k in ("versions", "n-shot", "n-samples")}
        return cls(
            model=config.get("model"), model_name=raw.get("model_name"),
            model_args=config.get("model_args"), limit=config.get("limit"),
            gen_kwargs=config.get("gen_kwargs"), batch_size=config.get("batch_size"),
            tasks=sorted(tasks),
            task_versions={t: per_task["versions"].get(t) for t in sorted(tasks)},
            n_shot={t: per_task["n-shot"].get(t) for t in sorted(tasks)},
            n_samples={t: _object(per_task["n-samples"].get(t)).get("effective") for t in sorted(tasks)},
            **{k: raw.get(k) for k in ("chat_template_sha", "system_instruction_sha",
                                       "fewshot_as_multiturn", "lm_eval_version",
                                       "transformers_version", "pretty_env_info")},
        )


def _read_results(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return None, f"corrupt results file {path.name}: {e}"
    if not isinstance(raw, dict) or not isinstance(raw.get("results"), dict):
        return None, f"results file {path.name} has no 'results' object"
    for key in ("configs", "groups", "group_subtasks", "n-samples", "versions", "n-shot"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            return None, f"results file {path.name}: '{key}' is not an object"
    return raw, None


def _why_incomplete(out: LmEvalOutput) -> str | None:
    for task in out.sample_tasks():
        lines = out.samples(task)
        name = lines.path.name
        if lines.missing:
            return f"no samples file for task {task} ({name})"
        if lines.error is not None:
            return f"samples file {name} unreadable: {lines.error}"
        if lines.bad:
            return f"samples file {name} has {lines.bad} unreadable line(s)"
        want, got = out.effective(task), len(lines.doc_ids)
        if want is not None and got != want:
            return f"samples file for {task} has {got} items, results say {want}"
    return None


def read_output(output_path: Path) -> LmEvalOutput | None:
    """The results file that counts under ``output_path`` (see the module docstring); None
    when there is no results file at all."""
    newest: LmEvalOutput | None = None
    passed_over: list[tuple[Path, str]] = []
    for path in results_files(output_path):
        raw, problem = _read_results(path)
        out = LmEvalOutput(path, raw, problem)
        if out.problem is None:
            out.problem = _why_incomplete(out)
        if out.complete:
            out.passed_over = passed_over
            return out
        passed_over.append((path, out.problem or ""))
        newest = newest or out
    return newest
