"""The pieces of ``check-flashinfer-host`` that run without a GPU (the FlashInfer engine runs are
H100-only: reports/flashinfer/README.md). vLLM's own config parser reads the generated model
folder; the paired decode phase's mechanics run on vLLM's CPU platform with CPU_ATTN twice."""

import json
import math
import os
import re
import subprocess
import sys
import time

import pytest

pytest.importorskip("vllm")

from vit_backend_plugin.tools import flashinfer_check as engine_check  # noqa: E402
from vit_backend_plugin.tools.decode_stats import (  # noqa: E402
    decode_row,
    pair_order,
    paired_decode_stats,
    paired_line,
)
from vit_backend_plugin.tools.flashinfer_check.counter import BuildCounter, wrap_builders  # noqa: E402
from vit_backend_plugin.tools.flashinfer_check.model import make_model_dir, parity_prompts  # noqa: E402
from vit_backend_plugin.tools.flashinfer_check.phases import abba  # noqa: E402
from vit_backend_plugin.tools.flashinfer_check.results import (  # noqa: E402
    compare_parity,
    pool_decode_rounds,
)
from vit_backend_plugin.tools.flashinfer_check.runner import _spawn, child_name  # noqa: E402


def test_model_dir_is_a_qwen2_decoder_vllm_accepts(tmp_path):
    from vllm.config import ModelConfig

    d = make_model_dir(tmp_path)
    assert (d / "tokenizer.json").is_file()  # the demo tokenizer, copied
    mc = ModelConfig(model=str(d), dtype="bfloat16", max_model_len=2048)
    # Qwen2.5-0.5B's attention shape: head size 64, 14 query and 2 KV heads, 24 layers
    assert mc.get_head_size() == 64 and mc.get_total_num_kv_heads() == 2
    assert mc.get_total_num_hidden_layers() == 24 and mc.architecture == "Qwen2ForCausalLM"
    assert make_model_dir(tmp_path) == d  # made once


def test_parity_prompts_repeat_a_motif_and_are_seeded():
    a, b = parity_prompts(seed=7), parity_prompts(seed=7)
    assert a == b and a != parity_prompts(seed=8)
    lens = [len(p) for p in a]
    assert min(lens) >= 8 and max(lens) > 512  # longer than the 512-token budget: chunked prefills
    # n-gram lookup needs repeats: most 3-grams of a prompt occur more than once
    p = a[0]
    grams = [tuple(p[i:i + 3]) for i in range(len(p) - 2)]
    assert len(set(grams)) < 0.8 * len(grams)


def test_compare_parity_names_the_differing_prompts():
    res = {"FLASHINFER": {"tokens": [[1, 2], [3, 4], [5]]},
           "FLASHINFER_HOST": {"tokens": [[1, 2], [3, 9], [5]]}}
    cmp = compare_parity(res)
    assert cmp["FLASHINFER"]["identical"] is True
    assert cmp["FLASHINFER_HOST"] == {"identical": False, "differing_prompts": [1], "tokens": 5}


def test_build_counter_counts_each_outermost_build_once(tmp_path, monkeypatch):
    """The instrument of the engine check, on real builders (vLLM's CPU platform): builds and
    mixed steps counted, the builders' own host/fallback counts read back."""
    pytest.importorskip("flashinfer")
    from test_flashinfer_host_vllm import batch, make_env
    from vllm.v1.attention.backends.flashinfer import FlashInferMetadataBuilder

    from vit_backend_plugin.flashinfer_host.builder import FlashInferHostMetadataBuilder

    for cls in (FlashInferMetadataBuilder, FlashInferHostMetadataBuilder):
        monkeypatch.setattr(cls, "build", cls.build)  # the wrap below is undone after the test
    env = make_env(tmp_path)
    counter = BuildCounter()
    counter.wrap(FlashInferMetadataBuilder)
    counter.wrap(FlashInferHostMetadataBuilder)
    host = env["make"](num_spec=3)
    host.build(0, batch([1, 1, 200], [40, 47, 0])[0])  # decodes and a prefill in one step
    host.build(0, batch([1, 1], [40, 47])[0])
    falls_back = env["make"](num_spec=2, async_sched=True)
    # ours -> stock build(), which reads the device seq_lens (meta here: raises before vLLM's
    # Triton gather, which the CPU cannot run); the wrapper's nesting guard is reset afterwards
    with pytest.raises(NotImplementedError, match="meta"):
        falls_back.build(0, batch([1, 1, 300], [10, 20, 0], seq_device="meta")[0])
    host.build(0, batch([1, 1, 200], [40, 47, 0])[0])
    d = counter.as_dict()
    assert (d["builds"], d["mixed_builds"], d["syncs"], d["max_reqs"]) == (3, 2, 0, 3)
    stats = counter.builder_stats()
    assert stats == {"builders": 2, "host_builds": 3, "fallback_counts": {"async_spec": 1}}
    assert d["build_host_s"] > 0 and d["mean_build_host_us"] == pytest.approx(d["build_host_s"] / 3 * 1e6)


def test_timing_only_counter_times_builds_without_the_sync_detector(tmp_path, monkeypatch):
    """The decode phase's instrument: builds counted and timed, torch's sync detector never
    engaged (count_syncs is not called), so it costs the engine two clock reads per build."""
    pytest.importorskip("flashinfer")
    from test_flashinfer_host_vllm import batch, make_env
    from vllm.v1.attention.backends.flashinfer import FlashInferMetadataBuilder

    from vit_backend_plugin.flashinfer_host.builder import FlashInferHostMetadataBuilder
    from vit_backend_plugin.tools import sync_count

    for cls in (FlashInferMetadataBuilder, FlashInferHostMetadataBuilder):
        monkeypatch.setattr(cls, "build", cls.build)
    monkeypatch.setattr(sync_count, "count_syncs", lambda fn: pytest.fail("sync detector engaged"))
    env = make_env(tmp_path)
    counter = wrap_builders("FLASHINFER_HOST", count_syncs=False)
    host = env["make"](num_spec=0)
    for _ in range(2):
        host.build(0, batch([1, 1], [40, 47])[0])
    # vLLM's CUDA-graph capture calls build() by keyword (AttentionMetadataBuilder.build_for_cudagraph_capture)
    host.build(common_prefix_len=0, common_attn_metadata=batch([1, 1], [40, 47])[0])
    d = counter.as_dict()
    assert (d["builds"], d["syncs"]) == (3, 0) and d["build_host_s"] > 0
    assert counter.builder_stats()["host_builds"] == 3


def test_decode_rounds_start_abba_and_pool_every_rounds_repeats():
    order = abba(["FLASHINFER", "FLASHINFER_HOST"], 3)
    assert [b for _, b in order] == ["FLASHINFER", "FLASHINFER_HOST", "FLASHINFER_HOST", "FLASHINFER",
                                     "FLASHINFER", "FLASHINFER_HOST"]
    assert [r for r, _ in order] == [0, 0, 1, 1, 2, 2]
    r0 = {"rows": [{**decode_row(4, [1.0, 1.2, 1.1], [0.1, 0.1, 0.1]), "mean_build_host_us": 100.0}]}
    r1 = {"rows": [{**decode_row(4, [2.0, 2.2, 2.1], [0.3, 0.3, 0.3]), "mean_build_host_us": 140.0}]}
    (row,) = pool_decode_rounds([r0, r1])
    assert row["mean_build_host_us"] == pytest.approx(120.0)
    assert row["t128_s"] == [1.0, 1.2, 1.1, 2.0, 2.2, 2.1]
    # medians of the pooled repeats (1.6 s and 0.2 s), not of either round (1.1 s, 2.1 s)
    assert row["output_tokens_per_s"] == pytest.approx(4 * 128 / 1.6)
    assert row["tpot_ms"] == pytest.approx((1.6 - 0.2) / 127 * 1000)
    names = {child_name({"phase": "decode", "backend": "FLASHINFER", "cudagraphs": cg, "round": r})
             for cg in (False, True) for r in (0, 1)}
    assert len(names) == 4  # no child overwrites another's JSON


def test_a_failing_child_is_reported_not_raised_and_leaves_its_log(tmp_path, capsys):
    """_spawn runs a real child process through the harness's runner: an engine that cannot
    start (no model folder) gives None, its log on disk, and one FAILED line."""
    import argparse

    args = argparse.Namespace(model_runner="default", v2_spec_host="default", timeout=300)
    spec = {"phase": "decode", "backend": "FLASHINFER", "sizes": [1], "repeats": 1, "cudagraphs": False,
            "model_dir": str(tmp_path / "missing")}
    assert _spawn(spec, tmp_path, args) is None
    log = tmp_path / "decode_FLASHINFER.log"
    assert log.is_file() and "--child" in log.read_text()
    assert "decode_FLASHINFER FAILED" in capsys.readouterr().out


# ----------------------------------------------------------------------------- decode_paired
def _pairs(stock_t128, ours_t128, t1=0.05):
    return [{"first": pair_order(i)[0], "t128_s": {"stock": s, "ours": o},
             "t1_s": {"stock": t1, "ours": t1}} for i, (s, o) in enumerate(zip(stock_t128, ours_t128, strict=True))]


def test_pairs_alternate_which_engine_goes_first():
    assert [pair_order(i) for i in range(4)] == [
        ("stock", "ours"), ("ours", "stock"), ("stock", "ours"), ("ours", "stock")]


def test_paired_stats_ratio_direction_and_tpot_when_ours_is_slower():
    # ours takes 1.25x stock's wall time in every pair: tok/s ours/stock 0.8, not 1.25
    row = paired_decode_stats(4, _pairs([1.0] * 6, [1.25] * 6))
    assert row["tok_s_ours_over_stock"] == pytest.approx(0.8)
    assert row["ours"]["output_tokens_per_s"] == pytest.approx(4 * 128 / 1.25)
    assert row["stock"]["output_tokens_per_s"] == pytest.approx(4 * 128 / 1.0)
    # TPOT stock/ours from the 128- minus 1-token times: 0.95 s / 1.20 s
    assert row["tpot_stock_over_ours"] == pytest.approx(0.95 / 1.20)
    assert row["stock"]["tpot_ms"] == pytest.approx(0.95 / 127 * 1000)
    assert row["tok_s_ours_over_stock_ci95"] == pytest.approx([0.8, 0.8])
    assert row["pairs_ours_slower"] == 6 and row["p_ours_slower_sign"] == pytest.approx(0.5 ** 6)


def test_paired_stats_cancel_drift_that_the_unpaired_medians_keep():
    """Both engines slow down 40% over the run while ours stays 3% faster (+-1%) inside each
    pair: the per-pair median and its interval see 1.03; ours wins every pair, so the p-value
    of "ours is slower" is large, and small for the mirror image."""
    drift = [1.0 + 0.05 * i for i in range(8)]
    jitter = [1.0, 1.01, 0.99, 1.005, 0.995, 1.0, 1.008, 0.992]
    stock = drift
    ours = [d / (1.03 * j) for d, j in zip(drift, jitter, strict=True)]
    row = paired_decode_stats(16, _pairs(stock, ours), seed=3)
    lo, hi = row["tok_s_ours_over_stock_ci95"]
    assert lo <= row["tok_s_ours_over_stock"] <= hi
    assert 1.015 < lo and hi < 1.045 and row["tok_s_ours_over_stock"] == pytest.approx(1.03, abs=0.005)
    assert row["p_ours_slower_wilcoxon"] > 0.95 and row["pairs_ours_slower"] == 0
    # the unpaired medians spread over the drift: their 5% noise in each backend's repeats
    assert max(row["stock"]["t128_s"]) / min(row["stock"]["t128_s"]) > 1.3
    slower = paired_decode_stats(16, _pairs(ours, stock), seed=3)
    assert slower["tok_s_ours_over_stock"] == pytest.approx(1 / 1.03, abs=0.005)
    assert slower["p_ours_slower_wilcoxon"] < 0.01 and slower["p_ours_slower_sign"] < 0.01
    # seeded: the same interval again
    assert paired_decode_stats(16, _pairs(stock, ours), seed=3)["tok_s_ours_over_stock_ci95"] == [lo, hi]


def test_paired_stats_with_one_pair_or_no_difference_say_so():
    one = paired_decode_stats(1, _pairs([1.0], [0.9]))
    assert one["tok_s_ours_over_stock_ci95"] is None and one["tok_s_ours_over_stock"] == pytest.approx(1 / 0.9)
    same = paired_decode_stats(1, _pairs([1.0, 1.1], [1.0, 1.1]))
    assert same["p_ours_slower_wilcoxon"] is None and same["tok_s_ours_over_stock_ci95"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="not 0 < t1 < t128"):  # a 128-token run no longer than 1 token
        paired_decode_stats(1, _pairs([1.0, 1.0], [1.0, 0.05]))
    assert "paired bs=   1 tok/s ours/stock 1.111 [n/a]" in paired_line(one)


def test_pooled_pairs_resolve_what_each_batch_size_alone_cannot():
    """Three batch sizes whose pairs swing +-12% around ours 4% slower: no batch size alone
    reaches p < 0.05, all 24 pairs together do, and the geometric mean sits at 0.96."""
    from vit_backend_plugin.tools.decode_stats import pooled_pair_stats

    swing = [1.12, 0.88, 1.1, 0.9, 1.06, 0.94, 1.02, 0.98]
    rows = [paired_decode_stats(bs, _pairs([1.0] * 8, [1.0 / (0.96 * w) for w in swing]))
            for bs in (1, 16, 256)]
    assert all(r["p_ours_slower_wilcoxon"] > 0.05 for r in rows)
    pooled = pooled_pair_stats(rows)
    assert pooled["pairs"] == 24 and pooled["batch_sizes"] == [1, 16, 256]
    assert pooled["tok_s_ours_over_stock_geomean"] == pytest.approx(0.96 * math.exp(sum(map(math.log, swing)) / 8))
    lo, hi = pooled["tok_s_ours_over_stock_geomean_ci95"]
    assert lo < pooled["tok_s_ours_over_stock_geomean"] < hi < 1.0
    assert pooled["p_ours_slower_wilcoxon"] < 0.05
    faster = pooled_pair_stats([paired_decode_stats(1, _pairs([1.0] * 8, [0.96 * w for w in swing]))])
    assert faster["p_ours_slower_wilcoxon"] > 0.5


def test_unknown_phases_and_a_third_paired_backend_are_refused_before_any_engine(tmp_path, capsys):
    import argparse

    p = argparse.ArgumentParser()
    engine_check.add_arguments(p)
    assert engine_check.main(p.parse_args(["--out", str(tmp_path), "--phases", "decode,decode_pairs"])) == 2
    assert "unknown phases ['decode_pairs']" in capsys.readouterr().out
    args = p.parse_args(["--out", str(tmp_path), "--phases", "decode_paired", "--backends", "A,B,C"])
    assert engine_check.main(args) == 2 and "takes two backends" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


@pytest.mark.slow
def test_decode_paired_runs_both_engines_alive_each_in_its_own_engine_core(tmp_path):
    """The phase end to end on vLLM's CPU platform (CPU_ATTN as both "stock" and "ours": the
    mechanics, not FlashInfer): one child holds two LLMs whose engine cores run in two other
    processes, pairs alternate, ratios are finite and the summary carries rows and ratio rows."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "vit_backend_plugin.cli", "check-flashinfer-host", "--out", str(tmp_path),
         "--phases", "decode_paired", "--backends", "CPU_ATTN,CPU_ATTN", "--decode-batch-sizes", "1,2",
         "--repeats", "2", "--decoder", "tiny", "--timeout", "800"],
        capture_output=True, text=True, env=env, timeout=850)
    seconds = time.monotonic() - t0
    log = tmp_path / "decode_paired_CPU_ATTN_vs_CPU_ATTN.log"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + (log.read_text()[-3000:] if log.is_file() else "")
    summary = json.loads((tmp_path / "summary.json").read_text())
    res = summary["decode_paired"]
    assert res["backends"] == {"stock": "CPU_ATTN", "ours": "CPU_ATTN"} and res["repeats"] == 2
    assert res["attention_backend_in_engine"] == {"stock": ["CPU_ATTN"], "ours": ["CPU_ATTN"]}
    assert [r["batch_size"] for r in res["rows"]] == [1, 2]
    for r in res["rows"]:
        assert [p["first"] for p in r["pair_timings"]] == ["stock", "ours"]
        for p in r["pair_timings"]:
            for role in ("stock", "ours"):
                assert 0 < p["t1_s"][role] < p["t128_s"][role]
        ratio = r["tok_s_ours_over_stock"]
        lo, hi = r["tok_s_ours_over_stock_ci95"]
        assert math.isfinite(ratio) and lo <= ratio <= hi and 0.3 < ratio < 3  # the same backend twice
        assert r["tok_s_ours_over_stock_per_pair"] == pytest.approx(
            [p["t128_s"]["stock"] / p["t128_s"]["ours"] for p in r["pair_timings"]])
        assert math.isfinite(r["tpot_stock_over_ours"]) and r["stock"]["tpot_ms"] > 0
    ratios = summary["decode_paired_ratio_ours_over_stock"]
    assert [r["batch_size"] for r in ratios] == [1, 2] and "stock" not in ratios[0]
    assert len(re.findall(r"^paired bs=\s+\d+ tok/s ours/stock \d\.\d{3} \[", proc.stdout, re.M)) == 2
    # two engine-core processes besides the child's own (vLLM prefixes its log lines by process)
    text = log.read_text()
    cores = set(re.findall(r"\(EngineCore pid=(\d+)\)", text))
    main_pids = set(re.findall(r"\(MainProcess pid=(\d+)\)", text))
    assert len(cores) == 2 and len(main_pids) == 1 and not cores & main_pids, (cores, main_pids)
    print(f"decode_paired on CPU: {seconds:.0f} s")
