"""Speed-table lookup: matching, geometric mean, numerics, user table over shipped."""

import pytest

from vit_backend_plugin.selection import speed_table as st
from vit_backend_plugin.selection.resolver import ResolveRequest, resolve


def entry(shape, lo, hi, tflops, ok=None, head=80, cap=(9, 0)):
    return st.SpeedEntry(device="NVIDIA H100 80GB HBM3", capability=cap, dtype="bfloat16",
                         head_size=head, seq_len=(lo, hi), shape=shape, tflops=tflops,
                         numerics_ok=ok or dict.fromkeys(tflops, True))


def test_geomean_over_rows_and_seq_len_bucket():
    t = st.SpeedTable(entries=[
        entry("short", 1, 128, {"A": 100, "B": 400}),
        entry("long", 129, 10**6, {"A": 400, "B": 100, "C": 999}),
    ], source="t")
    m, src = st.lookup((9, 0), "bfloat16", 80, tables=[t])
    assert set(m) == {"A", "B"}  # C not measured in every row
    assert m["A"].tflops == pytest.approx(200) and m["B"].tflops == pytest.approx(200)
    m, _ = st.lookup((9, 0), "bfloat16", 80, seq_len=64, tables=[t])
    assert m["B"].tflops == pytest.approx(400)
    assert st.lookup((8, 0), "bfloat16", 80, tables=[t])[0] == {}
    assert st.lookup((9, 0), "bfloat16", 72, tables=[t])[0] == {}
    assert "short" in src and "long" in src


def test_numerics_failure_in_any_row_marks_backend():
    t = st.SpeedTable(entries=[
        entry("a", 1, 100, {"A": 500, "B": 100}),
        entry("b", 101, 200, {"A": 500, "B": 100}, ok={"A": False, "B": True}),
    ])
    m, _ = st.lookup((9, 0), "bfloat16", 80, tables=[t])
    assert not m["A"].numerics_ok and m["B"].numerics_ok
    res = resolve(ResolveRequest(head_size=80, dtype="bfloat16", capability=(9, 0),
                                 features=frozenset({"triton", "vit_triton_kernel", "torch_cudnn_sdpa"}),
                                 measured={"VIT_TRITON": m["A"], "TORCH_SDPA_CUDNN": m["B"],
                                           "TORCH_SDPA": st.Measurement(50)}))
    assert res.chosen == "TORCH_SDPA_CUDNN"


def test_user_table_takes_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_SPEED_TABLE", str(tmp_path / "user.json"))
    user = st.SpeedTable(entries=[entry("user", 1, 10**6, {"TORCH_SDPA": 50, "VIT_TRITON": 60})])
    path = st.save_user(user)
    assert path == tmp_path / "user.json" and not list(tmp_path.glob(".*tmp"))
    shipped = st.SpeedTable(entries=[entry("shipped", 1, 10**6, {"TORCH_SDPA": 999})], source="shipped")
    loaded = st.load_user()
    m, src = st.lookup((9, 0), "bfloat16", 80, tables=[loaded, shipped])
    assert set(m) == {"TORCH_SDPA", "VIT_TRITON"} and src.startswith("user table")
    # no user row for this head size -> shipped rows are used
    m, src = st.lookup((9, 0), "bfloat16", 80, tables=[st.SpeedTable(), shipped])
    assert m["TORCH_SDPA"].tflops == pytest.approx(999) and src.startswith("shipped")


def test_shipped_table_parses():
    table = st.load_shipped()
    for e in table.entries:
        assert e.seq_len[0] <= e.seq_len[1]
        assert all(v > 0 for v in e.tflops.values())


def test_seq_len_prefers_the_most_specific_row():
    t = st.SpeedTable(entries=[
        entry("mixed", 1, 4096, {"A": 300, "B": 100}),
        entry("1024", 129, 1024, {"A": 100, "B": 300}),
    ])
    assert st.lookup((9, 0), "bfloat16", 80, seq_len=1024, tables=[t])[0]["B"].tflops == pytest.approx(300)
    assert st.lookup((9, 0), "bfloat16", 80, seq_len=2000, tables=[t])[0]["A"].tflops == pytest.approx(300)


def test_engine_runs_are_looked_up_per_head_size_and_first_table_wins():
    run = {"device": "H100", "capability": (9, 0), "dtype": "bfloat16"}
    user = st.SpeedTable(engine=[st.EngineEntry(run="u", head_size=72, encoder_images_per_s={"FLASH_ATTN": 1.0}, **run)])
    shipped = st.SpeedTable(engine=[
        st.EngineEntry(run="s72", head_size=72, encoder_images_per_s={"FLASH_ATTN": 2.0}, **run),
        st.EngineEntry(run="s64", head_size=64, encoder_images_per_s={"VIT_TRITON": 3.0}, **run)])
    assert st.engine_lookup((9, 0), "bfloat16", 72, tables=[user, shipped]) == {"u": {"FLASH_ATTN": 1.0}}
    assert st.engine_lookup((9, 0), "bfloat16", 64, tables=[user, shipped]) == {"s64": {"VIT_TRITON": 3.0}}
    assert st.engine_lookup((8, 0), "bfloat16", 64, tables=[user, shipped]) == {}
    assert st.engine_lookup(None, "bfloat16", 64, tables=[shipped]) == {}
    # runs of the model's own architecture, where the table has some, are the evidence for it
    arch = st.SpeedTable(engine=[
        st.EngineEntry(run="a", head_size=80, encoder_images_per_s={"FLASH_ATTN": 1.0}, architecture="A", **run),
        st.EngineEntry(run="b", head_size=80, encoder_images_per_s={"FLASH_ATTN": 2.0}, architecture="B", **run)])
    assert set(st.engine_lookup((9, 0), "bfloat16", 80, tables=[arch], architecture="A")) == {"a"}
    assert set(st.engine_lookup((9, 0), "bfloat16", 80, tables=[arch], architecture="C")) == {"a", "b"}
    assert set(st.engine_lookup((9, 0), "bfloat16", 80, tables=[arch])) == {"a", "b"}


def test_shipped_engine_runs_keep_stock_where_the_engine_showed_a_loss():
    """The H100 engine runs (reports/engine/): the plugin's kernel-table picks for d72 and d80
    ran slower than stock FLASH_ATTN in vLLM, and so did d64's (VIT_TRITON 0.95x FLASH_ATTN when
    the engine core ran in its process, 1.01x in the multi-process run), so on that GPU the
    resolver keeps FLASH_ATTN for all three."""
    from vit_backend_plugin.selection.resolver import ResolveRequest, resolve

    feats = frozenset({"vllm_flash_attn", "triton", "vit_triton_kernel", "torch_cudnn_sdpa", "flashinfer"})
    chosen = {}
    for head in (64, 72, 80):
        measured, _ = st.lookup((9, 0), "bfloat16", head)
        engine = st.engine_lookup((9, 0), "bfloat16", head)
        assert engine, head
        chosen[head] = resolve(ResolveRequest(head_size=head, dtype="bfloat16", capability=(9, 0), features=feats,
                                              measured=measured, engine_measured=engine)).chosen
    assert chosen == {64: "FLASH_ATTN", 72: "FLASH_ATTN", 80: "FLASH_ATTN"}


def test_shipped_engine_runs_of_the_models_architecture_outrank_other_runs():
    """d80 on the H100: VIT_AUTO ran at 1.08x FLASH_ATTN on Qwen2.5-VL's windowed tower (1.01x
    with the engine core in-process) and at 0.98x on Qwen2-VL's: a Qwen2.5-VL model gets VIT_AUTO, Qwen2-VL and an architecture with no
    run of its own (every d80 run counts, the loss included) keep FLASH_ATTN."""
    from vit_backend_plugin.selection.resolver import ResolveRequest, resolve

    feats = frozenset({"vllm_flash_attn", "triton", "vit_triton_kernel", "torch_cudnn_sdpa", "flashinfer"})
    measured, _ = st.lookup((9, 0), "bfloat16", 80)
    chosen = {}
    for arch in ("Qwen2_5_VLForConditionalGeneration", "Qwen2VLForConditionalGeneration",
                 "Glm4vForConditionalGeneration", None):
        engine = st.engine_lookup((9, 0), "bfloat16", 80, architecture=arch)
        chosen[arch] = resolve(ResolveRequest(head_size=80, dtype="bfloat16", capability=(9, 0), features=feats,
                                              measured=measured, engine_measured=engine)).chosen
    assert chosen == {"Qwen2_5_VLForConditionalGeneration": "VIT_AUTO", "Qwen2VLForConditionalGeneration": "FLASH_ATTN",
                      "Glm4vForConditionalGeneration": "FLASH_ATTN", None: "FLASH_ATTN"}
