"""The ViT backend catalog (data/vit_backends.yaml) as typed, immutable objects. Pure: no torch, no vLLM."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import yaml

Platform = Literal["cuda", "rocm", "cpu", "other"]
PLATFORMS: tuple[str, ...] = ("cuda", "rocm", "cpu", "other")
DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32")
# Accepted spellings for dtypes on the command line and in configs.
DTYPE_ALIASES = {
    "float16": "float16", "fp16": "float16", "half": "float16", "torch.float16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16", "torch.bfloat16": "bfloat16",
    "float32": "float32", "fp32": "float32", "float": "float32", "torch.float32": "float32",
}

# Every feature the catalog's `requires` may name, with what it means (probe.py detects them).
FEATURES: dict[str, str] = {
    "vllm_flash_attn": "vLLM's bundled FlashAttention (vllm.vllm_flash_attn)",
    "vllm_fa4": "vLLM's bundled FlashAttention offers FA version 4",
    "flash_attn": "upstream flash_attn package",
    "xformers": "xformers package",
    "flashinfer": "flashinfer package",
    "triton": "triton package",
    "vit_triton_kernel": "this plugin's Triton ViT kernel module",
    "triton_interpreter": "Triton's CPU interpreter is on (TRITON_INTERPRET=1)",
    "torch_cudnn_sdpa": "torch SDPA cuDNN sub-backend",
    "torch_flash_sdpa": "torch SDPA flash sub-backend",
    "aiter": "AMD AITER",
}


@dataclass(frozen=True)
class HeadSizeRule:
    min: int | None = None
    max: int | None = None
    max_with_fa4: int | None = None
    multiple_of: int | None = None
    one_of: tuple[int, ...] | None = None

    def check(self, head_size: int, features: frozenset[str]) -> str | None:
        """None if supported, else why not."""
        if self.one_of is not None and head_size not in self.one_of:
            return f"head size {head_size} not in {list(self.one_of)}"
        if self.multiple_of and head_size % self.multiple_of:
            return f"head size {head_size} is not a multiple of {self.multiple_of}"
        if self.min is not None and head_size < self.min:
            return f"head size {head_size} < {self.min}"
        limit = self.max
        if self.max_with_fa4 is not None and "vllm_fa4" in features:
            limit = self.max_with_fa4
        if limit is not None and head_size > limit:
            return f"head size {head_size} > {limit}"
        return None


@dataclass(frozen=True)
class BackendSpec:
    name: str
    description: str
    provider: Literal["vllm", "plugin"]
    platforms: tuple[str, ...]
    requires: dict[str, tuple[str, ...]]
    dtypes: tuple[str, ...]
    head_size: HeadSizeRule
    min_capability: dict[str, float]
    max_capability: float | None
    install_hint: str
    dtypes_on: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per-platform override
    impl: str | None = None  # plugin backends: "module:function" (kernels/registry.py loads it)
    takes_out: bool = False  # the function writes into out= and takes max_seqlen_exact=

    def dtypes_for(self, platform: str) -> tuple[str, ...]:
        return self.dtypes_on.get(platform, self.dtypes)

    def min_capability_for(self, dtype: str) -> float | None:
        return self.min_capability.get(dtype, self.min_capability.get("default"))


@dataclass(frozen=True)
class Catalog:
    backends: dict[str, BackendSpec]
    static_order: dict[str, tuple[str, ...]]

    def names(self) -> list[str]:
        return list(self.backends)

    def plugin_backends(self) -> tuple[str, ...]:
        """The backends this plugin provides (in catalog order): the one list of them."""
        return tuple(n for n, b in self.backends.items() if b.provider == "plugin")


def _parse(raw: dict) -> Catalog:
    backends = {}
    for name, b in raw["backends"].items():
        hs = dict(b.get("head_size") or {})
        if "one_of" in hs:
            hs["one_of"] = tuple(hs["one_of"])
        unknown = {f for reqs in (b.get("requires") or {}).values() for f in reqs} - set(FEATURES)
        if unknown:
            raise ValueError(f"catalog: backend {name} requires unknown features {sorted(unknown)}")
        backends[name] = BackendSpec(
            name=name,
            description=b["description"],
            provider=b["provider"],
            platforms=tuple(b["platforms"]),
            requires={p: tuple(r) for p, r in (b.get("requires") or {}).items()},
            dtypes=tuple(b["dtypes"]),
            head_size=HeadSizeRule(**hs),
            min_capability={k: float(v) for k, v in (b.get("min_capability") or {}).items()},
            max_capability=b.get("max_capability"),
            install_hint=b.get("install_hint", ""),
            dtypes_on={p: tuple(d) for p, d in (b.get("dtypes_on") or {}).items()},
            impl=b.get("impl"),
            takes_out=bool(b.get("takes_out", False)),
        )
        if (b["provider"] == "plugin") != bool(b.get("impl")):
            raise ValueError(f"catalog: backend {name}: a plugin backend needs impl, a vLLM one has none")
    order = {p: tuple(o) for p, o in raw["static_order"].items()}
    for p, names in order.items():
        missing = set(names) - set(backends)
        if missing:
            raise ValueError(f"catalog: static_order[{p}] names unknown backends {sorted(missing)}")
    return Catalog(backends=backends, static_order=order)


@functools.cache
def load_catalog() -> Catalog:
    text = resources.files("vit_backend_plugin").joinpath("data/vit_backends.yaml").read_text()
    return _parse(yaml.safe_load(text))


def normalize_dtype(dtype: object) -> str:
    """'bf16', 'torch.bfloat16', torch.bfloat16 -> 'bfloat16'. ValueError on anything else."""
    key = str(dtype).lower()
    if key not in DTYPE_ALIASES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPE_ALIASES[key]
