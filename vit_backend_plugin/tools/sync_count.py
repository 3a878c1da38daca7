"""Count the host<->device synchronisations one call makes, with torch's own detector.

``torch.cuda.set_sync_debug_mode("warn")`` makes torch issue the C++ warning "called a
synchronizing CUDA operation" (a Python ``UserWarning``) at each synchronising CUDA call it
instruments (``.item()``, ``.cpu()``, blocking copies, ``cudaStreamSynchronize`` ...). Unlike
``"error"`` the call runs to the end, so every one is counted. Imports torch only when called.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

SYNC_MESSAGE = "called a synchronizing CUDA operation"


def count_syncs(fn: Callable[[], Any]) -> tuple[Any, int, str | None]:
    """Run ``fn()`` once; return ``(its result, number of synchronising CUDA operations,
    the first such warning's text or None)``.

    Without CUDA there is nothing to synchronise with: the mode is left alone and the count is
    whatever torch reported (0). The previous sync-debug mode is restored, and warnings that are
    not sync reports are re-issued, not swallowed. Do not nest.
    """
    import torch

    cuda = torch.cuda.is_available()
    prev = torch.cuda.get_sync_debug_mode() if cuda else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every occurrence, not once per call site
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(prev)
    syncs = [w for w in caught if SYNC_MESSAGE in str(w.message)]
    for w in caught:
        if SYNC_MESSAGE not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return result, len(syncs), (str(syncs[0].message).splitlines()[0] if syncs else None)
