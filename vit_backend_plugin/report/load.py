"""Read a run directory (see :mod:`vit_backend_plugin.rundir.layout`) exactly as `run` and lm-eval wrote it.

lm-eval output folders given by hand become the same :class:`RunData` in
:mod:`vit_backend_plugin.report.lm_eval_source`.

Which lm-eval results file counts, and which samples lines are readable, is decided by
:mod:`vit_backend_plugin.rundir.lm_eval_output` (the rule the runner's completeness check uses).

Nothing is skipped silently: every arm gets a ``state`` and a list of ``problems`` (missing
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
    AA_CONTROL,
    ENV,
    LM_EVAL_DIR,
    RUN_INFO,
    THROUGHPUT,
    ArmStatus,
    RunInfo,
)
from vit_backend_plugin.rundir.lm_eval_output import LmEvalOutput, read_output

ArmState = Literal["complete", "failed", "incomplete", "missing"]
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
    output: LmEvalOutput  # the results file that counts, and its samples files
    rows: list[Row]  # tree order: root, its subgroups, their tasks (like lm-eval's tables)

    @property
    def path(self) -> Path:
        return self.output.results_path

    @property
    def raw(self) -> dict[str, Any]:
        return self.output.raw or {}

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
    n = _number(entry.get("sample_len"))
    if n is None:
        n = _number(_object(_object(raw.get("n-samples")).get(name)).get("effective"))
    alias = str(entry.get("alias", name)).strip().lstrip("- ").strip() or name
    return Row(
        name=name, alias=alias, depth=depth, is_group=is_group, metric=metric,
        value=_number(entry.get(metric)) if metric else None,
        stderr=_number(entry.get(stderr_key)) if stderr_key else None,
        n=int(n) if n is not None else None,
        version=_object(raw.get("versions")).get(name), n_shot=_object(raw.get("n-shot")).get(name),
    )


def _object(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def parse_results(output: LmEvalOutput) -> LmEvalResults:
    """Lay lm-eval's ``results``/``groups``/``group_subtasks`` out as a tree of rows (entries
    that are not objects are left out; the shape of the file itself the reader checked)."""
    raw = output.raw or {}
    entries = {k: v for k, v in {**_object(raw.get("results")), **_object(raw.get("groups"))}.items()
               if isinstance(v, dict)}
    subtasks = {g: [c for c in kids if isinstance(c, str)]
                for g, kids in _object(raw.get("group_subtasks")).items() if isinstance(kids, list)}
    children = {c for kids in subtasks.values() for c in kids}
    roots = [g for g in subtasks if g not in children] or list(subtasks)  # no root: a loop
    roots += [t for t in _object(raw.get("results")) if t not in children and t not in roots]
    rows: list[Row] = []
    seen: set[str] = set()

    def walk(name: str, depth: int) -> None:
        if name in seen:  # a damaged tree that loops
            return
        seen.add(name)
        if name in entries:
            rows.append(_make_row(name, entries[name], depth, name in subtasks, raw))
        for child in subtasks.get(name, []):
            walk(child, depth + 1)

    for r in roots:
        walk(r, 0)
    return LmEvalResults(output=output, rows=rows)


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
    for row in results.tasks:
        lines = results.output.samples(row.name)
        name = lines.path.name
        if lines.missing:
            out.problems.append(f"{row.name}: samples file missing ({name}); was --log_samples on?")
            continue
        if lines.error is not None:
            out.problems.append(f"{row.name}: samples file {name} unreadable: {lines.error}")
            continue
        metric, _, filt = (row.metric or "acc,none").partition(",")
        bad = lines.bad
        for s in lines.records:
            if s.get("filter", filt) != filt:
                continue  # one line per filter: keep the one the results' metric used
            score = _number(s.get(metric))
            if score is None:
                bad += 1
                continue
            out.items[(row.name, s["doc_id"])] = ItemRecord(
                task=row.name, doc_id=s["doc_id"], subject=row.alias, answer=parsed_answer(s),
                correct=score >= 0.5, target=str(s.get("target", "")), response=response_text(s),
            )
        if bad:
            out.problems.append(f"{row.name}: {bad} unreadable line(s) in {name} (truncated or corrupt)")
        got = sum(k[0] == row.name for k in out.items)
        if row.n is not None and got != row.n:
            out.problems.append(f"{row.name}: {got} samples logged but results say {row.n}")
    return out


# --------------------------------------------------------------------------- one arm
@dataclass
class ArmData:
    name: str
    state: ArmState
    status: ArmStatus | None = None  # None for an lm-eval folder (no status.json)
    results: LmEvalResults | None = None
    results_file: str | None = None  # relative to the run dir, or as given on the command line
    samples: Samples | None = None
    # throughput.json as written ("engine", "metrics", "repeats": objects only, "interleave", ...)
    throughput: dict[str, Any] | None = None
    throughput_file: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # run.json's arm_settings
    env: dict[str, Any] | None = None  # env.json as written (versions, device)
    problems: list[str] = field(default_factory=list)  # everything that is wrong, in words

    @property
    def errors(self) -> dict[str, str]:
        return dict(self.status.errors) if self.status else {}


def _last_line(text: str) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ValueError (with the reason) for anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(str(e)) from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def read_lm_eval(arm: ArmData, output_path: Path, *, expected: bool, stale: bool,
                 relative_to: Path | None = None) -> None:
    """Fill ``arm`` from an lm-eval ``--output_path`` folder. ``expected``: a missing results file
    is a problem; ``stale``: the accuracy phase did not complete, so the file may be older."""
    output = read_output(output_path)
    if output is None:
        if expected:
            arm.problems.append(f"no lm-eval results file (results_*.json) under {output_path.name}/")
        return
    for path, why in output.passed_over:
        arm.problems.append(f"newer {path.name} is incomplete ({why}); {output.results_path.name} read instead")
    if output.raw is None:
        arm.problems.append(f"lm-eval results unreadable ({output.problem}): corrupt or truncated")
        return
    arm.results = parse_results(output)
    path = output.results_path
    arm.results_file = str(path.relative_to(relative_to) if relative_to else path)
    if stale:
        arm.problems.append(f"accuracy phase not complete: {path.name} may be from an older attempt")
    arm.samples = load_samples(arm.results)
    arm.problems.extend(arm.samples.problems)


def read_throughput(arm: ArmData, path: Path, run_dir: Path) -> None:
    """Fill ``arm.throughput`` from a throughput.json; a damaged one is a problem. Repeats that
    are not objects are dropped (the report's statistics read only objects)."""
    try:
        tp = read_json_object(path)
        if not isinstance(tp.get("metrics"), dict):
            raise ValueError("no 'metrics' object")
    except ValueError as e:
        arm.problems.append(f"throughput.json unreadable ({e}): corrupt or truncated")
        return
    repeats = tp.get("repeats")
    tp["repeats"] = [r for r in repeats if isinstance(r, dict)] if isinstance(repeats, list) else []
    arm.throughput = tp
    arm.throughput_file = str(path.relative_to(run_dir))


def load_control(run_dir: Path, asked: bool) -> ArmData | None:
    """The A/A control (the baseline's settings timed by a second engine): throughput only.
    None when the run did not ask for one and has none."""
    path = run_dir / AA_CONTROL / THROUGHPUT
    if not path.is_file():
        return ArmData(AA_CONTROL, "missing", problems=[
            f"A/A control asked for (throughput.aa_control) but there is no {AA_CONTROL}/{THROUGHPUT}"
        ]) if asked else None
    data = ArmData(AA_CONTROL, "complete")
    read_throughput(data, path, run_dir)
    if data.throughput is None:
        data.state = "failed"
    return data


def load_arm(run_dir: Path, name: str, settings: dict[str, Any] | None = None, *,
             accuracy: bool = True) -> ArmData:
    """One arm of a run directory, as `vit-parity run` wrote it. ``accuracy`` False: a
    throughput-only run (config ``accuracy: false``), whose arms have no lm-eval output to read."""
    bdir = run_dir / name
    if not bdir.is_dir():
        return ArmData(name, "missing", settings=dict(settings or {}),
                       problems=["not run: no arm directory"])
    status = ArmStatus.read(bdir)
    problems: list[str] = []
    if status is None:
        state: ArmState = "incomplete"
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
    data = ArmData(name, state, status=status, settings=dict(settings or {}), problems=problems)

    if accuracy:
        accuracy_done = status is None or status.phases.get("accuracy") == "complete"
        read_lm_eval(data, bdir / LM_EVAL_DIR, expected=accuracy_done, stale=not accuracy_done,
                     relative_to=run_dir)

    tp = bdir / THROUGHPUT
    if tp.is_file():
        read_throughput(data, tp, run_dir)
    elif status is None or status.phases.get("throughput") == "complete":
        problems.append("no throughput.json")

    if (bdir / ENV).is_file():
        try:
            data.env = read_json_object(bdir / ENV)
        except ValueError as e:
            problems.append(f"env.json unreadable ({e}): versions not known")
    return data


load_backend = load_arm  # tools/record_engine reads an arm's throughput through this name


# --------------------------------------------------------------------------- the run
@dataclass
class RunData:
    """What a report is made of: arms (baseline first or named), from a run directory or from
    lm-eval output folders (:mod:`vit_backend_plugin.report.lm_eval_source`)."""

    source: Literal["run_dir", "lm_eval"]
    root: Path  # the run dir (default output folder), or the report's output folder
    run_id: str
    model: str
    engine: str
    tasks: list[str]  # the tasks asked for (their root rows are the headline accuracy)
    baseline: str
    arms: dict[str, ArmData]  # in order
    thresholds: ParityThresholds
    problems: list[str] = field(default_factory=list)
    control: ArmData | None = None  # the A/A control (AA_CONTROL/throughput.json): speed only
    accuracy: bool = True  # False: a throughput-only run (config accuracy: false), no parity


def thresholds_from(parity: Any) -> tuple[ParityThresholds, str | None]:
    """The config's ``parity:`` thresholds; defaults and the reason when they are invalid."""
    try:
        return ParityThresholds.model_validate(parity or {}), None
    except ValidationError as e:
        first = e.errors()[0]
        return ParityThresholds(), (f"config parity thresholds invalid "
                                    f"({'.'.join(map(str, first['loc']))}: {first['msg']}); defaults used")


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
    thresholds, why = thresholds_from((info.config or {}).get("parity"))
    problems = [why] if why else []
    names = list(dict.fromkeys(info.arms))
    if info.baseline not in names:
        problems.append(f"baseline {info.baseline!r} is not among the arms {names}")
        names.insert(0, info.baseline)
    accuracy = (info.config or {}).get("accuracy") is not False
    arms = {n: load_arm(run_dir, n, info.arm_settings.get(n), accuracy=accuracy) for n in names}
    throughput_config = (info.config or {}).get("throughput")
    asked = isinstance(throughput_config, dict) and throughput_config.get("aa_control") is True
    return RunData("run_dir", run_dir, info.run_id, info.model, info.engine, list(info.tasks),
                   info.baseline, arms, thresholds, problems, load_control(run_dir, asked),
                   accuracy)
