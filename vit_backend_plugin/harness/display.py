"""What `vit-parity run` shows: rich progress per arm and phase, and the closing table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from vit_backend_plugin.rundir.layout import PHASES, ArmStatus

if TYPE_CHECKING:
    from vit_backend_plugin.harness.plan import Plan


class Display:
    """Rich progress (arm, phase, items done) on a terminal; plain lines otherwise."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.fields[arm]:<22}"),
            TextColumn("{task.fields[phase]:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.live,
        )

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def say(self, text: str) -> None:
        self.progress.console.print(text) if self.live else self.console.print(text, highlight=False)

    def phase(self, arm: str, phase: str):
        task = self.progress.add_task("", total=None, arm=arm, phase=phase, state="running")

        def update(done: int, total: int) -> None:
            self.progress.update(task, completed=done, total=total)

        def finish(state: str) -> None:
            t = self.progress.tasks[[x.id for x in self.progress.tasks].index(task)]
            total = t.total if t.total is not None else 1
            self.progress.update(task, state=state, total=total,
                                 completed=total if state == "complete" else t.completed)

        return update, finish


def summary_table(plan: Plan, statuses: dict[str, ArmStatus]) -> Table:
    from vit_backend_plugin.harness.children import headline

    t = Table(title=f"run {plan.run_dir}", show_lines=False)
    t.add_column("arm")
    t.add_column("backend / settings")
    for p in PHASES:
        t.add_column(p)
    t.add_column("note")
    for arm in plan.arms:
        name = arm.name + (" (baseline)" if arm.name == plan.cfg.baseline_name else "")
        st = statuses.get(arm.name)
        if st is None:
            t.add_row(name, escape(arm.label), *["-"] * len(PHASES), "not run")
            continue
        cells = []
        for p in PHASES:
            s = st.phases.get(p, "pending")
            color = {"complete": "green", "failed": "red"}.get(s, "yellow")
            cells.append(f"[{color}]{s}[/]")
        note = ""
        if st.errors:
            ph, err = next(iter(st.errors.items()))
            note = f"{ph}: {headline(err)[:120]}" if err.strip() else ph
        elif st.notes:
            ph, text = next(iter(st.notes.items()))
            note = f"{ph}: {text}"
        t.add_row(name, escape(arm.label), *cells, escape(note))
    return t
