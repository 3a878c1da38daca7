"""count_syncs: torch's sync detector as a counter (reusable by the bench and engine scripts).

On this CPU machine torch's own report cannot be triggered (CUDA calls are where torch emits
it, and there is no GPU); the GPU runs record a probe (``detector_armed``: a ``.item()`` on a
CUDA tensor must be counted). What is checked here runs the same code path as on a GPU
except for setting the CUDA sync-debug mode.
"""

import warnings

import pytest

torch = pytest.importorskip("torch")

from vit_backend_plugin.tools.sync_count import SYNC_MESSAGE, count_syncs  # noqa: E402


def test_cpu_work_has_no_syncs_and_returns_the_result():
    x = torch.arange(10)
    result, n, first = count_syncs(lambda: (x * 2).sum().item())
    assert (result, n, first) == (90, 0, None)


def test_counts_each_sync_report_and_reissues_other_warnings():
    """The recording/filtering half: every warning carrying torch's text is counted (also
    repeats from one call site), anything else is passed on to the caller's filters."""
    def fn():
        for _ in range(3):
            warnings.warn(f"{SYNC_MESSAGE}\nsecond line", UserWarning, stacklevel=1)
        warnings.warn("unrelated", DeprecationWarning, stacklevel=1)
        return "done"

    with warnings.catch_warnings(record=True) as outer:
        warnings.simplefilter("always")
        result, n, first = count_syncs(fn)
    assert (result, n, first) == ("done", 3, SYNC_MESSAGE)
    assert [str(w.message) for w in outer] == ["unrelated"]


def test_exception_propagates():
    with pytest.raises(ZeroDivisionError):
        count_syncs(lambda: 1 / 0)


def test_torch_emits_the_text_we_count():
    """The string we match is the one compiled into this torch's CUDA library."""
    import pathlib

    lib = pathlib.Path(torch.__file__).parent / "lib"
    cands = sorted(lib.glob("libc10_cuda*.so*"))
    if not cands:
        pytest.skip("this torch build has no CUDA library")
    assert SYNC_MESSAGE.encode() in cands[0].read_bytes()
