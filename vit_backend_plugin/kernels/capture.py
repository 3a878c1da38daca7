"""CUDA-graph capture facts for the plugin's op and kernels (torch only, no vLLM).

While a stream is captured (vLLM's encoder CUDA graphs, ``cudagraph_mm_encoder``), nothing may
read device data on the host: ``.item()`` / ``.tolist()`` on a CUDA tensor invalidates the
capture, and any value read then would be baked into the graph, not re-read on replay.
"""

from __future__ import annotations

import contextlib

import torch


class CaptureSyncError(RuntimeError):
    """A plugin backend would read device data (or cu_seqlens contents) on the host while a CUDA
    graph is being captured. Raised before the read, so the capture stays valid."""


def stream_capturing() -> bool:
    """True while the current CUDA stream is being captured for replays on other inputs (vLLM's
    encoder CUDA graphs: padded to a token budget). False under :func:`exact_inputs`. No capture
    can run before CUDA is initialised, so on CPU / without CUDA this never calls into CUDA."""
    return (not _EXACT[0] and torch.cuda.is_initialized()
            and torch.cuda.is_current_stream_capturing())


_EXACT = [0]  # depth of exact_inputs() blocks


@contextlib.contextmanager
def exact_inputs():
    """For benchmarks that time calls as CUDA-graph replays: the graph captured inside this block
    is replayed on exactly the inputs it was captured with (no padding, same lengths), so the op
    and kernels run as in eager mode (no zero fill of padding rows, cuDNN's equal-length call
    allowed). Host reads are still impossible inside a capture: a call that makes one fails."""
    _EXACT[0] += 1
    try:
        yield
    finally:
        _EXACT[0] -= 1


def exact_capturing() -> bool:
    """True inside :func:`exact_inputs` while the stream is being captured (a benchmark's graph,
    replayed on the very inputs). Outside that block it asks nothing of CUDA: vLLM's own captures
    are told to the op's callees with ``capturing=True``."""
    return bool(_EXACT[0]) and torch.cuda.is_current_stream_capturing()


def capturing_now(capturing: bool | None) -> bool:
    """A caller's answer, or (``None``) the stream's."""
    return stream_capturing() if capturing is None else capturing


def refuse_host_read(backend: str, what: str, capturing: bool | None = None) -> None:
    """Raise CaptureSyncError if capturing (``None``: ask the stream now). Call it right before
    a host read, only on the paths that make one: it costs nothing on the others."""
    if capturing_now(capturing):
        raise CaptureSyncError(
            f"{backend} cannot run inside a CUDA graph capture: it would {what}, a host read of "
            f"device data that a capture does not allow (and a replay would not redo)"
        )
