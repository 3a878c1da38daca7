"""bench-builder: argument surface, batch generator, and the clear no-GPU error."""

import argparse
import functools

import numpy as np
import pytest

from vit_backend_plugin.cli import main as cli_main
from vit_backend_plugin.flashinfer_host import planning
from vit_backend_plugin.tools import bench_builder as bench


def test_no_gpu_is_a_clear_error(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert cli_main(["bench-builder", "--planner-only"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["decode", "mixed", "spec"])
def test_make_batch_is_decode_first_and_plannable(mode):
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    a = p.parse_args(["--mode", mode])
    assert a.modes == [mode]
    rng = np.random.default_rng(0)
    for bs in (1, 7, 256):
        qo, computed, bt, q_dec = bench.make_batch(rng, bs, mode, a.spec_tokens, a.page_size, a.max_context)
        thr = q_dec if mode == "spec" else 1
        split = planning.split_decodes_and_prefills(qo, int(qo[-1]), int(np.diff(qo).max()), thr, True)
        assert split.num_decodes == bs - {"decode": 0, "mixed": bs // 4, "spec": bs // 8}[mode]
        seq = planning.host_seq_lens(computed, qo)
        assert (-(-seq // a.page_size) <= bt.shape[1]).all()  # block table wide enough


def test_modes_run_in_one_invocation_and_are_validated():
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    assert p.parse_args([]).modes == ["spec"]
    assert p.parse_args(["--modes", "decode,mixed,spec,decode"]).modes == ["decode", "mixed", "spec"]
    with pytest.raises(SystemExit):
        p.parse_args(["--modes", "decode,prefill"])


@pytest.mark.parametrize("mode", ["decode", "mixed", "spec"])
def test_torch_page_index_gather_equals_host_reference_without_syncs(mode):
    """The planner-only fallback gather (no vLLM kernel) on CPU tensors: same page indices as
    planning.paged_kv_indices, only ``total`` taken from the host, nothing read back."""
    torch = pytest.importorskip("torch")
    from vit_backend_plugin.tools.sync_count import count_syncs

    rng = np.random.default_rng(3)
    for bs in (1, 5, 64):
        qo, computed, bt, _ = bench.make_batch(rng, bs, mode, 3, 16, 4096)
        pages = planning.num_pages(planning.host_seq_lens(computed, qo), 16)
        if bs == 5:
            pages[1:3] = 0  # empty rows in the middle
        indptr = planning.paged_kv_indptr(pages, np.zeros(bs + 1, np.int32))
        total = int(indptr[-1])
        ref = planning.paged_kv_indices(bt, indptr, np.zeros(total + 1, np.int32))
        out = torch.full((total + 7,), -1, dtype=torch.int32)
        got, n, _ = count_syncs(functools.partial(
            bench.gather_page_indices_torch, out, torch.from_numpy(bt), torch.from_numpy(indptr), bs, total))
        assert n == 0 and got.tolist() == ref.tolist()
        assert out[total:].tolist() == [-1] * 7  # nothing written past the used prefix


def test_page_index_gather_prefers_vllms_kernel_when_vllm_imports():
    name, _ = bench.page_index_gather()
    try:
        import flashinfer  # noqa: F401
        import vllm  # noqa: F401
    except ImportError:
        assert name == "torch_searchsorted"
    else:
        assert name == "vllm_copy_page_indices_kernel"


def test_full_mode_setup_against_real_vllm_on_cpu():
    """Full mode's vLLM glue, short of timing (which needs CUDA): builders from a real
    VllmConfig per number of speculative tokens, one CommonAttentionMetadata per batch as the
    runner fills it; vLLM's own split agrees with the bench's batches, and our builder takes
    its host path (no fallback) in every mode."""
    pytest.importorskip("vllm")
    pytest.importorskip("flashinfer")
    import torch
    from vllm.v1.attention.backends.utils import split_decodes_and_prefills

    for mode in bench.MODES:
        num_spec = 3 if mode == "spec" else 0
        vc, stock, ours = bench._make_builders(torch, num_spec, 16, 64, 4096 + 1024, 16384, None, device="cpu")
        assert vc.num_speculative_tokens == num_spec and type(stock) is not type(ours)
        facts = bench.builder_facts(ours)
        assert facts == bench.builder_facts(stock) and facts["max_num_reqs"] == 64
        rng = np.random.default_rng(0)
        for bs in (1, 9, 64):
            qo, computed, bt, _ = bench.make_batch(rng, bs, mode, 3, 16, 4096)
            cam = bench.make_cam(torch, "cpu", qo, computed, bt)
            split = split_decodes_and_prefills(cam, decode_threshold=stock.reorder_batch_threshold,
                                               require_uniform=True)
            assert list(split) == list(planning.split_decodes_and_prefills(
                qo, int(qo[-1]), int(np.diff(qo).max()), stock.reorder_batch_threshold, True))
            decision = ours._decide(cam)
            assert not isinstance(decision, str), (mode, bs, decision)
            assert cam.seq_lens_cpu_upper_bound.tolist() == cam.seq_lens.tolist()
