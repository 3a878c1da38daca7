"""Which ViT attention backend to use, and why. Pure decision logic: explicit inputs in, a
:class:`Resolution` out; no torch, no vLLM, no environment reads (probe.py and plugin.py do those).

Policy
1. Explicit choice (vLLM's ``mm_encoder_attn_backend``, else ``VIT_ATTN_BACKEND``): honoured if
   usable, otherwise :class:`BackendSelectionError` naming the reason and the usable backends.
2. Automatic, measured: the fastest usable backend in the measured-speed rows matching this device,
   dtype, head size (and sequence length), among those whose numerical check passed — only when
   every usable backend of the static order (stock vLLM's default among them) was measured too;
   otherwise a faster, unmeasured candidate could lose to a measured one, and rule 3 decides.
   Engine evidence outranks kernel evidence: where runs through vLLM's engine measured the static
   choice for this device/dtype/head size, a measured choice must have been measured there too
   and be at least as fast as the static choice in every one of those runs (encoder images/s),
   or the static choice stays.
3. Automatic, static: the catalog's ``static_order`` for the platform (cuda: vLLM FlashAttention ->
   upstream flash_attn -> our Triton kernel -> torch SDPA). Falling past upstream flash_attn only
   because it is not installed carries an install hint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from vit_backend_plugin.selection.catalog import (
    PLATFORMS,
    BackendSpec,
    Catalog,
    load_catalog,
    normalize_dtype,
)


class ResolverInputError(ValueError):
    """Bad inputs to the resolver (head size <= 0, unknown dtype/platform/backend)."""


class BackendSelectionError(ValueError):
    """An explicitly requested backend cannot run here. The message says why and what can."""


@dataclass(frozen=True)
class Measurement:
    tflops: float
    numerics_ok: bool = True
    # TFLOP/s per measured shape, in the same shape order for every backend of one lookup.
    per_shape: tuple[float, ...] = ()


# A measured choice may trail the static choice (stock vLLM's default first) on no measured shape
# by more than timing noise: on average faster is not enough.
PER_SHAPE_TOLERANCE = 0.97
# In engine runs (medians of repeats, vLLM's own encoder timer) the bar is stock itself: the
# plugin must never make vLLM slower.
ENGINE_TOLERANCE = 1.0
# The per-call dispatcher is preferred to a single backend measured at most this much faster:
# the table's rows are GPU time, and on short eager calls VIT_AUTO also weighs each backend's host
# time (kernels/auto.py), which a single backend cannot do.
DISPATCHER = "VIT_AUTO"
DISPATCHER_PREFERENCE = 1.03


@dataclass(frozen=True)
class ResolveRequest:
    head_size: int
    dtype: str
    platform: str = "cuda"
    capability: tuple[int, int] | None = None
    features: frozenset[str] = frozenset()
    explicit: str | None = None
    explicit_source: str = "explicit choice"  # for messages: which knob the user turned
    measured: Mapping[str, Measurement] = field(default_factory=dict)
    measured_source: str = ""  # e.g. "speed table row 'Qwen2.5-VL d80, 16 x 1024' (H100)"
    # Engine runs for this device/dtype/head size: run name -> backend -> encoder images/s.
    engine_measured: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    name: str
    usable: bool
    reason: str  # why not usable, or "" / a note when usable


@dataclass(frozen=True)
class Resolution:
    chosen: str
    how: Literal["explicit", "measured", "static"]
    why: str
    candidates: tuple[Candidate, ...]
    install_hint: str | None = None

    @property
    def usable(self) -> list[str]:
        return [c.name for c in self.candidates if c.usable]

    def log_line(self, head_size: int, dtype: str) -> str:
        line = f"ViT attention: {self.chosen} (head_size={head_size}, dtype={dtype}; {self.why})"
        if self.install_hint:
            line += f". Hint: {self.install_hint}"
        return line

    def to_json(self) -> dict:
        return {
            "chosen": self.chosen,
            "how": self.how,
            "why": self.why,
            "install_hint": self.install_hint,
            "candidates": [
                {"name": c.name, "usable": c.usable, "reason": c.reason} for c in self.candidates
            ],
        }


def _fmt_cc(cc: float) -> str:
    return f"{cc:.1f}"


def why_unusable(spec: BackendSpec, req: ResolveRequest) -> str | None:
    """None if ``spec`` can run for ``req``; otherwise the first reason it cannot."""
    if req.platform not in spec.platforms:
        return f"not available on {req.platform} (runs on {', '.join(spec.platforms)})"
    dtypes = spec.dtypes_for(req.platform)
    if req.dtype not in dtypes:
        return f"dtype {req.dtype} not supported (supports {', '.join(dtypes)})"
    bad_head = spec.head_size.check(req.head_size, req.features)
    if bad_head:
        return bad_head
    if req.platform == "cuda" and req.capability is not None:
        cc = req.capability[0] + req.capability[1] / 10
        need = spec.min_capability_for(req.dtype)
        if need is not None and cc < need - 1e-9:
            return f"compute capability {_fmt_cc(cc)} < {_fmt_cc(need)} required for {req.dtype}"
        if spec.max_capability is not None and cc > spec.max_capability + 1e-9:
            return f"compute capability {_fmt_cc(cc)} > {_fmt_cc(spec.max_capability)} supported"
    missing = [f for f in spec.requires.get(req.platform, ()) if f not in req.features]
    if missing:
        return f"missing {', '.join(missing)}" + (
            f" (install: {spec.install_hint})" if spec.install_hint else ""
        )
    return None


def usable_among(names: Iterable[str], req: ResolveRequest,
                 catalog: Catalog | None = None) -> tuple[str, ...]:
    """Those of ``names`` that can run for ``req``, in their order: the rule :func:`resolve`
    applies, for a caller that chooses among a few backends per call (VIT_AUTO)."""
    catalog = catalog or load_catalog()
    req = validate(req, catalog)
    return tuple(n for n in names if why_unusable(catalog.backends[n], req) is None)


def validate(req: ResolveRequest, catalog: Catalog) -> ResolveRequest:
    if not isinstance(req.head_size, int) or isinstance(req.head_size, bool) or req.head_size <= 0:
        raise ResolverInputError(f"head size must be a positive integer, got {req.head_size!r}")
    try:
        dtype = normalize_dtype(req.dtype)
    except ValueError as e:
        raise ResolverInputError(str(e)) from None
    if req.platform not in PLATFORMS:
        raise ResolverInputError(
            f"unknown platform {req.platform!r}; use one of {', '.join(PLATFORMS)}"
        )
    explicit = req.explicit.strip().upper() if req.explicit else None
    if explicit and explicit not in catalog.backends:
        raise ResolverInputError(
            f"unknown ViT attention backend {req.explicit!r} ({req.explicit_source}); "
            f"known: {', '.join(catalog.names())}"
        )
    return ResolveRequest(
        head_size=req.head_size, dtype=dtype, platform=req.platform, capability=req.capability,
        features=frozenset(req.features), explicit=explicit, explicit_source=req.explicit_source,
        measured=req.measured, measured_source=req.measured_source,
        engine_measured=req.engine_measured,
    )


def resolve(req: ResolveRequest, catalog: Catalog | None = None) -> Resolution:
    catalog = catalog or load_catalog()
    req = validate(req, catalog)
    reasons = {name: why_unusable(spec, req) for name, spec in catalog.backends.items()}
    candidates = tuple(Candidate(n, r is None, r or "") for n, r in reasons.items())
    usable = [n for n, r in reasons.items() if r is None]

    if req.explicit:
        if reasons[req.explicit] is not None:
            raise BackendSelectionError(
                f"ViT attention backend {req.explicit} ({req.explicit_source}) cannot run here: "
                f"{reasons[req.explicit]}. Usable for head_size={req.head_size}, "
                f"dtype={req.dtype} on {_describe_device(req)}: {', '.join(usable)}"
            )
        return Resolution(req.explicit, "explicit", f"requested by {req.explicit_source}", candidates)

    order = catalog.static_order.get(req.platform, ("TORCH_SDPA",))
    # A measured choice may only beat candidates that were measured too: a usable backend the
    # table lacks (stock vLLM's FLASH_ATTN on a table made without vLLM, say) could be faster.
    unmeasured = [n for n in order if n in usable and n not in req.measured]
    chosen = next((n for n in order if reasons[n] is None), "TORCH_SDPA")
    slower = _slower_somewhere(req, usable, chosen)
    fastest = _fastest_measured(req, [n for n in usable if n not in slower]) if not unmeasured else None
    engine_veto = _engine_veto(req, fastest[0], chosen) if fastest is not None else None
    if engine_veto is not None:
        fastest = None
    if fastest is not None:
        name, m, runner_up = fastest
        if runner_up is not None and runner_up[1].tflops > m.tflops:  # the dispatcher, within noise
            why = (f"per-call dispatcher, within {DISPATCHER_PREFERENCE - 1:.0%} of the fastest "
                   f"measured ({m.tflops:.0f} TFLOP/s, {runner_up[0]} {runner_up[1].tflops:.0f})")
        else:
            why = f"fastest measured ({m.tflops:.0f} TFLOP/s"
            if runner_up is not None:
                why += f", {m.tflops / runner_up[1].tflops:.2f}x {runner_up[0]}"
            why += ")"
        why += f" in {req.measured_source}" if req.measured_source else ""
        ratios = _engine_ratios(req, name, chosen) if name != chosen else {}
        if ratios:  # not vetoed: every ratio is there and >= ENGINE_TOLERANCE
            why += f"; engine runs: >= {min(ratios.values()):.2f}x {chosen} in {len(ratios)} of them"
        passed = [n for n in slower if req.measured[n].numerics_ok and req.measured[n].tflops > m.tflops]
        if passed:
            why += f"; passed over, slower than {chosen} on a measured shape: {', '.join(passed)}"
        return Resolution(name, "measured", why, candidates)

    skipped = [f"{n}: {reasons[n]}" for n in order[: order.index(chosen)]] if chosen in order else []
    why = "static order " + " -> ".join(order)
    if skipped:
        why += "; skipped " + "; ".join(skipped)
    if req.measured and unmeasured:
        why += (f"; speed table ignored: usable but not measured: {', '.join(unmeasured)} "
                "(measure them here with `vit-parity tune`)")
    if engine_veto is not None:
        why += f"; {engine_veto}"
    hint = None
    upstream = catalog.backends.get("FLASH_ATTN_UPSTREAM")
    if (
        upstream is not None
        and "FLASH_ATTN_UPSTREAM" in order
        and chosen in order
        and order.index(chosen) > order.index("FLASH_ATTN_UPSTREAM")
        and _only_missing_package(upstream, req)
    ):
        hint = f"to use FlashAttention for this ViT, {upstream.install_hint}"
    return Resolution(chosen, "static", why, candidates, install_hint=hint)


def _fastest_measured(req: ResolveRequest, usable: list[str]):
    ok = {n: m for n, m in req.measured.items() if n in usable and m.numerics_ok and m.tflops > 0}
    if not ok:
        return None
    ranked = sorted(ok.items(), key=lambda kv: kv[1].tflops, reverse=True)
    auto = ok.get(DISPATCHER)
    if auto is not None and auto.tflops * DISPATCHER_PREFERENCE >= ranked[0][1].tflops:
        ranked.sort(key=lambda kv: kv[0] != DISPATCHER)  # stable: the others keep their order
    return ranked[0][0], ranked[0][1], (ranked[1] if len(ranked) > 1 else None)


def _engine_ratios(req: ResolveRequest, name: str, baseline: str) -> dict[str, float | None]:
    """Per engine run that measured ``baseline``: ``name``'s speed over it (None: not run there)."""
    return {run: (ips[name] / ips[baseline] if name in ips else None)
            for run, ips in sorted(req.engine_measured.items()) if ips.get(baseline, 0) > 0}


def _engine_veto(req: ResolveRequest, name: str, baseline: str) -> str | None:
    """Why the engine runs forbid replacing ``baseline`` by ``name`` (None: they do not)."""
    if name == baseline:
        return None
    for run, ratio in _engine_ratios(req, name, baseline).items():
        if ratio is None:
            return (f"kernel-table choice {name} not taken: not measured in engine run {run}, "
                    f"where {baseline} was")
        if ratio < ENGINE_TOLERANCE:
            return (f"kernel-table choice {name} not taken: {ratio:.2f}x {baseline} in engine run "
                    f"{run} (encoder images/s)")
    return None


def _slower_somewhere(req: ResolveRequest, usable: list[str], baseline: str) -> list[str]:
    """Usable measured backends that trail ``baseline`` on some measured shape (beyond noise)."""
    base = req.measured.get(baseline)
    if base is None or not base.numerics_ok or not base.per_shape:
        return []
    out = []
    for name, m in req.measured.items():
        if name in usable and name != baseline and len(m.per_shape) == len(base.per_shape) and any(
            x < PER_SHAPE_TOLERANCE * b for x, b in zip(m.per_shape, base.per_shape, strict=True)
        ):
            out.append(name)
    return out


def _only_missing_package(spec: BackendSpec, req: ResolveRequest) -> bool:
    """True when ``spec`` would be usable if only its packages were installed."""
    with_all = ResolveRequest(
        head_size=req.head_size, dtype=req.dtype, platform=req.platform,
        capability=req.capability,
        features=req.features | frozenset(spec.requires.get(req.platform, ())),
    )
    return why_unusable(spec, req) is not None and why_unusable(spec, with_all) is None


def _describe_device(req: ResolveRequest) -> str:
    if req.platform == "cuda" and req.capability:
        return f"cuda (compute capability {req.capability[0]}.{req.capability[1]})"
    return req.platform


__all__ = [
    "BackendSelectionError",
    "Candidate",
    "Measurement",
    "Resolution",
    "ResolveRequest",
    "ResolverInputError",
    "resolve",
    "usable_among",
    "why_unusable",
]
