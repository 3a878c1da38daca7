"""bench-builder: argument surface, batch generator, and the clear no-GPU error."""

import argparse

import numpy as np
import pytest

from vit_backend_plugin.cli import main as cli_main
from vit_backend_plugin.flashinfer_host import bench, planning


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
    rng = np.random.default_rng(0)
    for bs in (1, 7, 256):
        qo, computed, bt, q_dec = bench.make_batch(rng, bs, a.mode, a.spec_tokens, a.page_size, a.max_context)
        thr = q_dec if mode == "spec" else 1
        split = planning.split_decodes_and_prefills(qo, int(qo[-1]), int(np.diff(qo).max()), thr, True)
        assert split.num_decodes == bs - {"decode": 0, "mixed": bs // 4, "spec": bs // 8}[mode]
        seq = planning.host_seq_lens(computed, qo)
        assert (-(-seq // a.page_size) <= bt.shape[1]).all()  # block table wide enough
