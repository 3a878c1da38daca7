"""Speed-table lookup: matching, geometric mean, numerics, user table over shipped."""

import pytest

from vit_backend_plugin import speed_table as st
from vit_backend_plugin.resolver import ResolveRequest, resolve


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
