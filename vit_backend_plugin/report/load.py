"""Read a run directory (see :mod:`vit_backend_plugin.rundir.layout`) exactly as `run` and lm-eval wrote it.

lm-eval 0.4.13 (``loggers/evaluation_tracker.py``) writes, under ``--output_path``::

    <output_path>/<model_name_sanitized>/results_<date_id>.json
    <output_path>/<model_name_sanitized>/samples_<task>_<date_id>.jsonl   (one per task)

``date_id`` is ``datetime.now().isoformat()`` with ``:`` -> ``-``, so it sorts as text; the
newest results file wins and its samples are the files with the same ``date_id``.

Nothing is skipped silently: every backend gets a ``state`` and a list of ``problems`` (missing
directory, failed phase with its error, unreadable or truncated files), which the report shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from vit_backend_plugin.report.answers import parsed_answer, response_text
from vit_backend_plugin.report.parity import Item, ParityThresholds
from vit_backend_plugin.rundir.layout import (
    LM_EVAL_DIR,
    RUN_INFO,
    THROUGHPUT,
    BackendStatus,
    RunInfo,
)

BackendState = Literal["complete", "failed", "incomplete", "missing"]
_NOT_METRIC = {"name", "alias", "sample_len", "sample_count", "samples"}


class NotARunDir(Exception):
    """The directory has no readable run.json."""


# --------------------------------------------------------------------------- lm-eval results
@dataclass
class Row:
    """One task or group line of lm-eval's results (numbers copied, never recomputed)."""

    name: str
    alias: str
    depth: int  # 0: a requested task/group; 1: its subgroups (MMMU subject groups); 2: subjects
    is_group: bool
    metric: str | None  # "acc,none"
    value: float | None
    stderr: float | None  # None where lm-eval wrote "N/A"
    n: int | None
    version: Any = None
    n_shot: Any = None


@dataclass
class LmEvalResults:
    path: Path
    date_id: str
    raw: dict[str, Any]
    rows: list[Row]  # tree order: root, its subgroups, their tasks (like lm-eval's tables)

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    @property
    def tasks(self) -> list[Row]:
        return [r for r in self.rows if not r.is_group]


def _number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def primary_metric(entry: dict[str, Any]) -> str | None:
    """The first "metric,filter" key that is not a stderr ("acc,none" for MMMU)."""
    keys = [k for k in entry if k not in _NOT_METRIC and "," in k and "_stderr," not in k]
    return "acc,none" if "acc,none" in keys else (keys[0] if keys else None)


def _make_row(name: str, entry: dict[str, Any], depth: int, is_group: bool, raw: dict) -> Row:
    metric = primary_metric(entry)
    stderr_key = metric.replace(",", "_stderr,", 1) if metric else None
    n = entry.get("sample_len")
    if n is None:
        n = (raw.get("n-samples", {}).get(name) or {}).get("effective")
    alias = str(entry.get("alias", name)).strip().lstrip("- ").strip() or name
    return Row(
        name=name, alias=alias, depth=depth, is_group=is_group, metric=metric,
        value=_number(entry.get(metric)) if metric else None,
        stderr=_number(entry.get(stderr_key)) if stderr_key else None,
        n=int(n) if isinstance(n, int | float) else None,
        version=raw.get("versions", {}).get(name), n_shot=raw.get("n-shot", {}).get(name),
    )


def parse_results(raw: dict[str, Any], path: Path, date_id: str) -> LmEvalResults:
    """Lay lm-eval's ``results``/``groups``/``group_subtasks`` out as a tree of rows."""
    if not isinstance(raw.get("results"), dict):
        raise ValueError("no 'results' object")
    entries: dict[str, dict] = {**raw["results"], **(raw.get("groups") or {})}
    subtasks: dict[str, list[str]] = raw.get("group_subtasks") or {}
    children = {c for kids in subtasks.values() for c in kids}
    roots = [g for g in subtasks if g not in children]
    roots += [t for t in raw["results"] if t not in children and t not in roots]
    rows: list[Row] = []

    def walk(name: str, depth: int) -> None:
        if name in entries:
            rows.append(_make_row(name, entries[name], depth, name in subtasks, raw))
        for child in subtasks.get(name, []):
            walk(child, depth + 1)

    for r in roots:
        walk(r, 0)
    return LmEvalResults(path=path, date_id=date_id, raw=raw, rows=rows)


def _date_id(path: Path) -> str:
    # as lm_eval.loggers.utils.get_file_datetime: the text after the last "_"
    return path.name[path.name.rfind("_") + 1 :].removesuffix(".jsonl").removesuffix(".json")


def newest_results_file(lm_eval_dir: Path) -> Path | None:
    files = [p for p in lm_eval_dir.rglob("results_*.json") if p.is_file()]
    return max(files, key=lambda p: (_date_id(p), str(p))) if files else None


# --------------------------------------------------------------------------- lm-eval samples
@dataclass
class ItemRecord:
    task: str
    doc_id: int
    subject: str  # the task's alias, e.g. "Art Theory"
    answer: str  # parsed answer (see answers.py)
    correct: bool
    target: str
    response: str

    def as_item(self) -> Item:
        return Item(answer=self.answer, correct=self.correct)


@dataclass
class Samples:
    items: dict[Hashable, ItemRecord] = field(default_factory=dict)  # (task, doc_id) -> record
    problems: list[str] = field(default_factory=list)

    def as_items(self) -> dict[Hashable, Item]:
        return {k: r.as_item() for k, r in self.items.items()}


def load_samples(results: LmEvalResults) -> Samples:
    """Per-item outcomes of every task in the results, from the samples files of the same run."""
    out = Samples()
    folder = results.path.parent
    for row in results.tasks:
        path = folder / f"samples_{row.name}_{results.date_id}.jsonl"
        if not path.is_file():
            out.problems.append(f"{row.name}: samples file missing ({path.name}); was --log_samples on?")
            continue
        metric, _, filt = (row.metric or "acc,none").partition(",")
        bad = 0
        with path.open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    s = json.loads(line)
                    if s.get("filter", filt) != filt:
                        continue  # one line per filter: keep the one the results' metric used
                    score = _number(s[metric])
                    if score is None:
                        raise ValueError(metric)
                    out.items[(row.name, int(s["doc_id"]))] = ItemRecord(
                        task=row.name, doc_id=int(s["doc_id"]), subject=row.alias,
                        answer=parsed_answer(s), correct=score >= 0.5, target=str(s.get("target", "")),
                        response=response_text(s),
                    )
                except (ValueError, KeyError, TypeError):
                    bad += 1
        if bad:
            out.problems.append(f"{row.name}: {bad} unreadable line(s) in {path.name} (truncated or corrupt)")
        if row.n is not None and sum(k[0] == row.name for k in out.items) != row.n:
            got = sum(k[0] == row.name for k in out.items)
            out.problems.append(f"{row.name}: {got} samples logged but results say {row.n}")
    return out


# --------------------------------------------------------------------------- one backend
@dataclass
class BackendData:
    name: str
    state: BackendState
    status: BackendStatus | None = None
    results: LmEvalResults | None = None
    samples: Samples | None = None
    throughput: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)  # everything that is wrong, in words

    @property
    def errors(self) -> dict[str, str]:
        return dict(self.status.errors) if self.status else {}


def _last_line(text: str) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def load_backend(run_dir: Path, name: str) -> BackendData:
    bdir = run_dir / name
    if not bdir.is_dir():
        return BackendData(name, "missing", problems=["not run: no backend directory"])
    status = BackendStatus.read(bdir)
    problems: list[str] = []
    if status is None:
        state: BackendState = "incomplete"
        problems.append("status.json missing or unreadable: the run was interrupted")
    elif any(s == "failed" for s in status.phases.values()):
        state = "failed"
        for phase, s in status.phases.items():
            if s == "failed":
                err = _last_line(status.errors.get(phase, "")) or "no error text recorded"
                problems.append(f"{phase} phase failed: {err}")
    elif status.complete:
        state = "complete"
    else:
        state = "incomplete"
        pending = [f"{p}={s}" for p, s in status.phases.items() if s != "complete"]
        problems.append("not finished (" + ", ".join(pending) + "): interrupted or still running")
    data = BackendData(name, state, status=status, problems=problems)

    accuracy_done = status is None or status.phases.get("accuracy") == "complete"
    res_file = newest_results_file(bdir / LM_EVAL_DIR) if (bdir / LM_EVAL_DIR).is_dir() else None
    if res_file is None:
        if accuracy_done:
            problems.append("no lm-eval results file (results_*.json) under lm_eval/")
    else:
        try:
            raw = json.loads(res_file.read_text(encoding="utf-8"))
            data.results = parse_results(raw, res_file, _date_id(res_file))
        except (OSError, ValueError) as e:  # json errors are ValueErrors
            problems.append(f"lm-eval results unreadable ({res_file.name}: {e}): corrupt or truncated")
        if data.results is not None:
            if not accuracy_done:
                problems.append(f"accuracy phase not complete: {res_file.name} may be from an older attempt")
            data.samples = load_samples(data.results)
            problems.extend(data.samples.problems)

    tp = bdir / THROUGHPUT
    if tp.is_file():
        try:
            data.throughput = json.loads(tp.read_text(encoding="utf-8"))
            if not isinstance(data.throughput.get("metrics"), dict):
                raise ValueError("no 'metrics' object")
        except (OSError, ValueError, AttributeError) as e:
            data.throughput = None
            problems.append(f"throughput.json unreadable ({e}): corrupt or truncated")
    elif status is None or status.phases.get("throughput") == "complete":
        problems.append("no throughput.json")
    return data


# --------------------------------------------------------------------------- the run
@dataclass
class RunData:
    run_dir: Path
    info: RunInfo
    backends: dict[str, BackendData]  # run.json's order
    thresholds: ParityThresholds
    problems: list[str] = field(default_factory=list)


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NotARunDir(f"{run_dir} is not a directory")
    if not (run_dir / RUN_INFO).is_file():
        raise NotARunDir(f"{run_dir} is not a run directory (no {RUN_INFO}; create one with `vit-parity run`)")
    try:
        info = RunInfo.read(run_dir)
    except (OSError, ValueError, TypeError) as e:
        raise NotARunDir(f"{run_dir / RUN_INFO} is unreadable: {e}") from None
    problems: list[str] = []
    try:
        thresholds = ParityThresholds.model_validate((info.config or {}).get("parity") or {})
    except ValidationError as e:
        thresholds = ParityThresholds()
        first = e.errors()[0]
        problems.append(f"config parity thresholds invalid ({'.'.join(map(str, first['loc']))}: "
                        f"{first['msg']}); defaults used")
    names = list(dict.fromkeys(info.backends))
    if info.baseline not in names:
        problems.append(f"baseline {info.baseline!r} is not among the backends {names}")
        names.insert(0, info.baseline)
    backends = {n: load_backend(run_dir, n) for n in names}
    return RunData(run_dir, info, backends, thresholds, problems)
