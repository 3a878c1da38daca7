"""The plugin-provided ViT attention backends behind one varlen contract (no vLLM needed):

    fn(q, k, v, cu_seqlens, max_seqlen: int, softmax_scale: float) -> out
    q: [total_tokens, num_heads, head_dim], k/v: [total_tokens, num_kv_heads, head_dim],
    cu_seqlens: int32 [batch + 1] on q's device; out like q.

Which backends are ours, and which function implements each, is the catalog's
(``data/vit_backends.yaml``: ``provider: plugin``, ``impl``, ``takes_out``): this module only loads
them, on first use, so a missing package costs nothing until that backend is actually chosen.

Every function also takes a keyword ``capturing``: True while vLLM's encoder CUDA graphs are
captured (the plugin's op passes it only then), None to ask the stream where it matters. Backends
with ``takes_out`` also take ``out=`` and ``max_seqlen_exact=``; the others allocate their output.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

from vit_backend_plugin.selection.catalog import load_catalog

PLUGIN_BACKENDS: tuple[str, ...] = load_catalog().plugin_backends()
TAKES_OUT: tuple[str, ...] = tuple(n for n in PLUGIN_BACKENDS if load_catalog().backends[n].takes_out)


@functools.cache
def load_kernel(name: str) -> Callable:
    """The catalog's function for a plugin backend, as written. KeyError for a name not ours."""
    if name not in PLUGIN_BACKENDS:
        raise KeyError(f"{name} is not a plugin ViT attention backend ({', '.join(PLUGIN_BACKENDS)})")
    module, _, attr = load_catalog().backends[name].impl.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.cache
def get_kernel(name: str) -> Callable:
    """The function as the plugin's vLLM op calls it. Inside vLLM, max_seqlen comes from the
    model's host-side max over the same lengths (MMEncoderAttention.compute_max_seqlen) or from
    the op's own read: exact, which our own kernels (``takes_out``) are told."""
    kernel = load_kernel(name)
    if name in TAKES_OUT:
        return functools.partial(kernel, max_seqlen_exact=True)
    return kernel
