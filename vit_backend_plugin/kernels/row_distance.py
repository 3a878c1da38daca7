"""How far a ViT attention call's shape is from the speed table's measured rows. Pure: no torch,
no vLLM; the limits are data (``data/vit_auto_nearness.yaml``, read once).

A row's fastest backend is evidence for shapes like the row's, not for its whole length bucket:
on the H100 a call 4x away from every row of its bucket ran VIT_AUTO at 0.84x the best single
backend. VIT_AUTO (kernels/auto.py) follows a row only when the call is near it, and
``vit-parity bench-kernels`` reports how far each timed call was from the table.

What a row measured, from its fields: ``seq_len`` (the length bucket it stands for),
``equal_lengths``, ``num_seqs``, and from its ``shape`` text the per-sequence length of an
equal-length row ("16 x 1024", "16x1024") and the number of heads ("@12"; without one, the
data file's ``default_num_heads``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from importlib import resources

import yaml

AXES = ("max_seqlen", "num_seqs", "num_heads")
_EQUAL_SHAPE = re.compile(r"(\d+)\s*x\s*(\d+)")
_HEADS = re.compile(r"@\s*(\d+)")


@functools.cache
def nearness_limits() -> dict:
    """``{"max_octaves": {axis: float}, "default_num_heads": int}`` from the data file."""
    raw = yaml.safe_load(resources.files("vit_backend_plugin").joinpath(
        "data/vit_auto_nearness.yaml").read_text())
    limits = {a: float(raw["max_octaves"][a]) for a in AXES}
    heads = int(raw["default_num_heads"])
    if any(v < 0 for v in limits.values()) or heads < 1:
        raise ValueError(f"data/vit_auto_nearness.yaml: bad limits {raw!r}")
    return {"max_octaves": limits, "default_num_heads": heads}


def row_shape(row: dict) -> dict:
    """What ``row`` measured, per axis (None where the row does not say)."""
    text = row.get("shape") or ""
    m = _EQUAL_SHAPE.search(text) if row.get("equal_lengths") is True else None
    h = _HEADS.search(text)
    return {"max_seqlen": int(m.group(2)) if m else None,
            "num_seqs": row.get("num_seqs") or None,
            "num_heads": int(h.group(1)) if h else nearness_limits()["default_num_heads"]}


def _octaves(a: int | None, b: int | None) -> float | None:
    return abs(math.log2(a / b)) if a and b else None


def _outside(value: int, lo: int, hi: int) -> float:
    """Octaves from ``value`` to the range [lo, hi] (0 inside)."""
    if value < lo:
        return math.log2(lo / value)
    return math.log2(value / hi) if value > hi else 0.0


def nearest_row_distance(rows: Sequence[dict], *, equal_lengths: bool, max_seqlen: int,
                         num_seqs: int | None, num_heads: int | None = None) -> dict | None:
    """The row of ``rows`` nearest to a call, how far it is, and whether it is near enough.

    ``rows``: speed-table entries as dicts (``SpeedEntry.model_dump()`` or the JSON file's
    ``entries``) for one device, dtype and head size. The call: ``equal_lengths`` (every sequence
    has max_seqlen tokens), ``max_seqlen`` (its longest sequence), ``num_seqs`` and ``num_heads``
    (query heads; None: unknown, not compared).

    Only rows of the call's kind (equal or mixed lengths) count. Per axis the distance is in
    octaves, |log2(call / row)|: max_seqlen against the row's sequence length (a mixed-length
    row names none: octaves outside its ``seq_len`` bucket), num_seqs, num_heads. Nearest: a row
    whose bucket holds max_seqlen first, the narrowest such bucket, then the least sum of octaves
    (the rule VIT_AUTO has always used to pick a row, refined by length and heads).

    Returns None when no row is of the call's kind (or the call is empty), else::

        {"index": i,                      # rows[i] is the nearest row
         "shape": str,                    # its shape text
         "in_bucket": bool,               # its seq_len bucket holds max_seqlen
         "measured": {axis: int | None},  # what the row measured (None: it does not say)
         "octaves": {axis: float | None}, # how far the call is, per axis (None: not compared)
         "total_octaves": float,          # their sum (None counts 0)
         "max_octaves": {axis: float},    # the limits (data/vit_auto_nearness.yaml)
         "near": bool}                    # in_bucket and every compared axis within its limit

    for axis in ("max_seqlen", "num_seqs", "num_heads").
    """
    if max_seqlen < 1 or (num_seqs is not None and num_seqs < 1):
        return None
    limits = nearness_limits()["max_octaves"]
    call = {"max_seqlen": max_seqlen, "num_seqs": num_seqs, "num_heads": num_heads}
    best, best_key = None, None
    for i, row in enumerate(rows):
        if row.get("equal_lengths") is not equal_lengths:
            continue
        lo, hi = row["seq_len"]
        measured = row_shape(row)
        octaves = {a: _octaves(call[a], measured[a]) for a in AXES}
        if measured["max_seqlen"] is None:
            octaves["max_seqlen"] = _outside(max_seqlen, lo, hi)
        total = sum(v for v in octaves.values() if v is not None)
        in_bucket = lo <= max_seqlen <= hi
        key = (not in_bucket, hi - lo if in_bucket else 0, total)
        if best_key is None or key < best_key:
            best_key = key
            best = {"index": i, "shape": row.get("shape", ""), "in_bucket": in_bucket,
                    "measured": measured, "octaves": octaves, "total_octaves": total,
                    "max_octaves": dict(limits)}
    if best is None:
        return None
    best["near"] = best["in_bucket"] and all(
        v is None or v <= limits[a] + 1e-9 for a, v in best["octaves"].items())
    return best


__all__ = ["AXES", "nearest_row_distance", "nearness_limits", "row_shape"]
