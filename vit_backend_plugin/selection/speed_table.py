"""Measured ViT attention speeds (data), and the lookup the resolver uses.

Two tables: the one shipped in the package (``data/speed_table.json``, measured on an H100 by
``vit-parity bench-kernels``) and a user-local one written by ``vit-parity tune`` on the user's
GPU (``$VIT_SPEED_TABLE``, else ``speed_table.json`` under the plugin's cache directory,
``$XDG_CACHE_HOME/vit_backend_plugin``: common/paths.py's one rule). For a given
(capability, dtype, head size), rows of the user table take precedence: if it has any matching
row, the shipped rows are ignored.

Engine runs (``engine``): encoder images/s per backend measured through vLLM's engine by
`vit-parity run`; the resolver lets them overrule the kernel rows (resolver rule 2).

Matching: same compute capability, dtype and head size; if a sequence length is known, the
narrowest rows whose ``seq_len`` range contains it; otherwise (vLLM picks once per process, before
it sees an image) all of them, combined by geometric mean over the backends measured in every row,
so one lucky shape cannot win.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from vit_backend_plugin.common.paths import user_speed_table_path
from vit_backend_plugin.selection.resolver import Measurement


class SpeedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str
    capability: tuple[int, int]
    dtype: str
    head_size: int = Field(gt=0)
    seq_len: tuple[int, int]  # inclusive per-sequence length range this row stands for
    shape: str = ""
    equal_lengths: bool | None = None  # all sequences of the measured shape had one length
    num_seqs: int | None = None  # sequences in the measured call (VIT_AUTO's nearest-row key)
    how: str = ""  # "vllm layer" (engine-faithful) or "raw kernel"
    tflops: dict[str, float]
    numerics_ok: dict[str, bool] = Field(default_factory=dict)
    # Host microseconds to issue one call (GPU busy meanwhile), per backend: what an eager call
    # costs when its GPU time is shorter (VIT_AUTO's eager cost model). Absent in older tables.
    host_us: dict[str, float] = Field(default_factory=dict)


class EngineEntry(BaseModel):
    """One `vit-parity run` through vLLM's engine: encoder images/s per backend (vLLM's own
    encoder-forward timer, median of repeats), every backend in its own process."""

    model_config = ConfigDict(extra="forbid")

    run: str  # the config's name, e.g. "h100_vit_siglip_d72"
    device: str
    capability: tuple[int, int]
    dtype: str
    head_size: int = Field(gt=0)
    encoder_images_per_s: dict[str, float]  # backend as it ran (AUTO recorded as what it chose)
    command: str = ""
    architecture: str = ""  # the model class vLLM resolved (e.g. Qwen2_5_VLForConditionalGeneration)


class SpeedTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: int = Field(1, alias="schema")
    entries: list[SpeedEntry] = Field(default_factory=list)
    engine: list[EngineEntry] = Field(default_factory=list)
    source: str = ""  # where it was loaded from (not serialised meaningfully)

    def matching(self, capability: tuple[int, int], dtype: str, head_size: int,
                 seq_len: int | None = None) -> list[SpeedEntry]:
        rows = [
            e for e in self.entries
            if tuple(e.capability) == tuple(capability) and e.dtype == dtype
            and e.head_size == head_size
        ]
        if seq_len is not None:
            rows = [e for e in rows if e.seq_len[0] <= seq_len <= e.seq_len[1]]
            if rows:  # the most specific rows only: a mixed-length row spans many buckets
                narrowest = min(e.seq_len[1] - e.seq_len[0] for e in rows)
                rows = [e for e in rows if e.seq_len[1] - e.seq_len[0] == narrowest]
        return rows


def user_table_path() -> Path:
    return user_speed_table_path()


@functools.cache
def load_shipped() -> SpeedTable:
    """Parsed once per process (vLLM resolves once per ViT layer; the data cannot change)."""
    ref = resources.files("vit_backend_plugin").joinpath("data/speed_table.json")
    if not ref.is_file():
        return SpeedTable(source="(no shipped table)")
    table = SpeedTable.model_validate_json(ref.read_text())
    table.source = "shipped table"
    return table


@functools.cache
def _load_user_at(path: Path, mtime_ns: int) -> SpeedTable:
    table = SpeedTable.model_validate_json(path.read_text())
    table.source = f"user table {path}"
    return table


def load_user(path: Path | None = None) -> SpeedTable | None:
    path = path or user_table_path()
    if not path.is_file():
        return None
    return _load_user_at(path, path.stat().st_mtime_ns)  # re-read only when `tune` rewrote it


def save_user(table: SpeedTable, path: Path | None = None) -> Path:
    from vit_backend_plugin.common.files import atomic_write_text

    path = path or user_table_path()
    atomic_write_text(path, table.model_dump_json(by_alias=True, indent=2, exclude={"source"}) + "\n")
    return path


def combine(rows: list[SpeedEntry]) -> dict[str, Measurement]:
    """One Measurement per backend measured in every row: geometric-mean TFLOP/s, and numerics
    OK only if OK in every row."""
    if not rows:
        return {}
    common = set.intersection(*(set(r.tflops) for r in rows))
    out = {}
    for name in sorted(common):
        vals = [r.tflops[name] for r in rows]
        if any(v <= 0 for v in vals):
            continue
        gm = math.exp(sum(math.log(v) for v in vals) / len(vals))
        ok = all(r.numerics_ok.get(name, False) for r in rows)
        out[name] = Measurement(tflops=gm, numerics_ok=ok, per_shape=tuple(vals))
    return out


def engine_lookup(capability: tuple[int, int] | None, dtype: str, head_size: int,
                  tables: list[SpeedTable] | None = None,
                  architecture: str | None = None) -> dict[str, dict[str, float]]:
    """Engine runs for this device/dtype/head size (run -> backend -> encoder images/s), from
    the first table that has any (user before shipped). Runs of the same model architecture,
    where there are some, are the evidence for it (a windowed tower and a full-attention tower
    of one head size gain differently); otherwise every run of the head size counts."""
    if capability is None:
        return {}
    if tables is None:
        tables = [t for t in (load_user(), load_shipped()) if t is not None]
    for table in tables:
        rows = [e for e in table.engine
                if tuple(e.capability) == tuple(capability) and e.dtype == dtype and e.head_size == head_size]
        same = [e for e in rows if architecture and e.architecture == architecture]
        if rows:
            return {e.run: dict(e.encoder_images_per_s) for e in (same or rows)}
    return {}


def lookup(capability: tuple[int, int] | None, dtype: str, head_size: int,
           seq_len: int | None = None,
           tables: list[SpeedTable] | None = None) -> tuple[dict[str, Measurement], str]:
    """Measurements for this device/dtype/head size, and a description of where they came from."""
    if capability is None:
        return {}, ""
    if tables is None:
        tables = [t for t in (load_user(), load_shipped()) if t is not None]
    for table in tables:  # first table with a match wins: user before shipped
        rows = table.matching(capability, dtype, head_size, seq_len)
        if rows:
            shapes = ", ".join(r.shape or f"S{r.seq_len}" for r in rows)
            return combine(rows), f"{table.source} ({rows[0].device}: {shapes})"
    return {}, ""
