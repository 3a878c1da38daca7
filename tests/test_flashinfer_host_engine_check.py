"""The pieces of ``check-flashinfer-host`` that run without a GPU (the engine runs are H100-only:
reports/flashinfer/README.md). vLLM's own config parser reads the generated model folder."""

import pytest

pytest.importorskip("vllm")

from vit_backend_plugin.flashinfer_host import engine_check  # noqa: E402


def test_model_dir_is_a_qwen2_decoder_vllm_accepts(tmp_path):
    from vllm.config import ModelConfig

    d = engine_check.make_model_dir(tmp_path)
    assert (d / "tokenizer.json").is_file()  # the demo tokenizer, copied
    mc = ModelConfig(model=str(d), dtype="bfloat16", max_model_len=2048)
    # Qwen2.5-0.5B's attention shape: head size 64, 14 query and 2 KV heads, 24 layers
    assert mc.get_head_size() == 64 and mc.get_total_num_kv_heads() == 2
    assert mc.get_total_num_hidden_layers() == 24 and mc.architecture == "Qwen2ForCausalLM"
    assert engine_check.make_model_dir(tmp_path) == d  # made once


def test_parity_prompts_repeat_a_motif_and_are_seeded():
    a, b = engine_check.parity_prompts(seed=7), engine_check.parity_prompts(seed=7)
    assert a == b and a != engine_check.parity_prompts(seed=8)
    lens = [len(p) for p in a]
    assert min(lens) >= 8 and max(lens) > 512  # longer than the 512-token budget: chunked prefills
    # n-gram lookup needs repeats: most 3-grams of a prompt occur more than once
    p = a[0]
    grams = [tuple(p[i:i + 3]) for i in range(len(p) - 2)]
    assert len(set(grams)) < 0.8 * len(grams)


def test_compare_parity_names_the_differing_prompts():
    res = {"FLASHINFER": {"tokens": [[1, 2], [3, 4], [5]]},
           "FLASHINFER_HOST": {"tokens": [[1, 2], [3, 9], [5]]}}
    cmp = engine_check.compare_parity(res)
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
    counter = engine_check.BuildCounter()
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

    from vit_backend_plugin.flashinfer_host import sync_count
    from vit_backend_plugin.flashinfer_host.builder import FlashInferHostMetadataBuilder

    for cls in (FlashInferMetadataBuilder, FlashInferHostMetadataBuilder):
        monkeypatch.setattr(cls, "build", cls.build)
    monkeypatch.setattr(sync_count, "count_syncs", lambda fn: pytest.fail("sync detector engaged"))
    env = make_env(tmp_path)
    counter = engine_check.wrap_builders("FLASHINFER_HOST", count_syncs=False)
    host = env["make"](num_spec=0)
    for _ in range(2):
        host.build(0, batch([1, 1], [40, 47])[0])
    # vLLM's CUDA-graph capture calls build() by keyword (AttentionMetadataBuilder.build_for_cudagraph_capture)
    host.build(common_prefix_len=0, common_attn_metadata=batch([1, 1], [40, 47])[0])
    d = counter.as_dict()
    assert (d["builds"], d["syncs"]) == (3, 0) and d["build_host_s"] > 0
    assert counter.builder_stats()["host_builds"] == 3


def test_decode_rounds_start_abba_and_pool_every_rounds_repeats():
    order = engine_check.abba(["FLASHINFER", "FLASHINFER_HOST"], 3)
    assert [b for _, b in order] == ["FLASHINFER", "FLASHINFER_HOST", "FLASHINFER_HOST", "FLASHINFER",
                                     "FLASHINFER", "FLASHINFER_HOST"]
    assert [r for r, _ in order] == [0, 0, 1, 1, 2, 2]
    r0 = {"rows": [{**engine_check.decode_row(4, [1.0, 1.2, 1.1], [0.1, 0.1, 0.1]), "mean_build_host_us": 100.0}]}
    r1 = {"rows": [{**engine_check.decode_row(4, [2.0, 2.2, 2.1], [0.3, 0.3, 0.3]), "mean_build_host_us": 140.0}]}
    (row,) = engine_check.pool_decode_rounds([r0, r1])
    assert row["mean_build_host_us"] == pytest.approx(120.0)
    assert row["t128_s"] == [1.0, 1.2, 1.1, 2.0, 2.2, 2.1]
    # medians of the pooled repeats (1.6 s and 0.2 s), not of either round (1.1 s, 2.1 s)
    assert row["output_tokens_per_s"] == pytest.approx(4 * 128 / 1.6)
    assert row["tpot_ms"] == pytest.approx((1.6 - 0.2) / 127 * 1000)
    names = {engine_check.child_name({"phase": "decode", "backend": "FLASHINFER", "cudagraphs": cg, "round": r})
             for cg in (False, True) for r in (0, 1)}
    assert len(names) == 4  # no child overwrites another's JSON


def test_a_failing_child_is_reported_not_raised_and_leaves_its_log(tmp_path, capsys):
    """_spawn runs a real child process through the harness's runner: an engine that cannot
    start (no model folder) gives None, its log on disk, and one FAILED line."""
    import argparse

    args = argparse.Namespace(model_runner="default", v2_spec_host="default", timeout=300)
    spec = {"phase": "decode", "backend": "FLASHINFER", "sizes": [1], "repeats": 1, "cudagraphs": False,
            "model_dir": str(tmp_path / "missing")}
    assert engine_check._spawn(spec, tmp_path, args) is None
    log = tmp_path / "decode_FLASHINFER.log"
    assert log.is_file() and "--child" in log.read_text()
    assert "decode_FLASHINFER FAILED" in capsys.readouterr().out
