"""One candidate's result on one shape, and the small helpers every part of the run shares."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Result:
    candidate: str
    ms: float | None = None
    tflops: float | None = None
    rel_err: float | None = None
    numerics_ok: bool | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


def _brief(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def _tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12
