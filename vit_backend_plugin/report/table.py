"""One table of the report, as plain-text cells (escaped when written: render.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""  # markup of our own (built with render.Markup), or run-data-free text
    numeric_from: int = 1  # columns from here on are right-aligned
    collapsed: bool = False  # long detail: folded (<details>) in markdown and HTML
