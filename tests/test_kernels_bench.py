"""bench-kernels helpers that need no GPU: shape parsing, buckets, ratios, speed-table rows."""

import json

import pytest

from vit_backend_plugin.tools.bench_kernels.collect import parse_timings
from vit_backend_plugin.tools.bench_kernels.printing import print_all, print_table
from vit_backend_plugin.tools.bench_kernels.result import Result
from vit_backend_plugin.tools.bench_kernels.run_shape import _keep
from vit_backend_plugin.tools.bench_kernels.shapes import DEFAULT_SHAPES, parse_shape, seq_bucket
from vit_backend_plugin.tools.bench_kernels.summary import summarize
from vit_backend_plugin.tools.bench_kernels.table import (
    merge_entries,
    merged_engine_runs,
    speed_table_entries,
    table_entries,
    write_speed_table,
)
from vit_backend_plugin.tools.bench_kernels.timing import _rotated, round_orders


def test_parse_shape():
    s = parse_shape("d80:16x1024")
    assert (s.head_dim, s.lens, s.heads) == (80, [1024] * 16, 16)
    s = parse_shape("mine=72:64,729@12/4")
    assert (s.name, s.head_dim, s.lens, s.heads, s.kv_heads) == ("mine", 72, [64, 729], 12, 4)
    assert s.flops == 4 * (64**2 + 729**2) * 72 * 12
    with pytest.raises(ValueError):
        parse_shape("80x16")


def test_seq_buckets():
    assert seq_bucket([64] * 3) == (1, 128)
    assert seq_bucket([1024]) == (129, 1024)
    assert seq_bucket([64, 4096]) == (1, 4096)
    assert seq_bucket([16384]) == (4097, 1_000_000)


def test_summary_and_speed_table(tmp_path):
    rows = []
    for name, d, lens in DEFAULT_SHAPES:
        window = "window" in name
        rows.append({"shape": {"name": name, "head_dim": d, "lens": lens}, "stock": "FLASH_ATTN",
                     "pick": "VIT_AUTO", "results": [
            {"candidate": "VIT_TRITON", "tflops": 300.0, "numerics_ok": True},
            {"candidate": "TORCH_SDPA_CUDNN", "tflops": 320.0, "numerics_ok": not window},
            {"candidate": "FLASH_ATTN", "tflops": 310.0, "numerics_ok": True},
            {"candidate": "TRITON_ATTN", "tflops": 50.0, "numerics_ok": True},
            {"candidate": "VIT_AUTO", "tflops": 305.0 if window else 318.0, "numerics_ok": True},
            {"candidate": "PICK", "tflops": 305.0 if window else 318.0, "numerics_ok": True}]})
    s = summarize(rows)
    by = {c["target"]: (c["ok"], c["value"]) for c in s["checks"]}
    # best single is cuDNN (320) unless its numerics failed (window row: then FLASH_ATTN, 310)
    assert by["SigLIP d72, 32 x 729: VIT_AUTO >= 0.97x best single (TORCH_SDPA_CUDNN)"] == (True, 0.994)
    assert by["Qwen2.5-VL window d80, 256 x 64: VIT_AUTO >= 0.97x best single (FLASH_ATTN)"] == (True, 0.984)
    assert by["SigLIP d72, 32 x 729: pick VIT_AUTO vs stock vLLM FLASH_ATTN"] == (True, round(318 / 310, 3))
    assert abs(s["geomean_ours_vs_stock_triton"] - 6.0) < 1e-9
    rows[0]["results"][4]["tflops"] = 250.0  # VIT_AUTO now trails the best by 22%
    assert not {c["target"]: c["ok"] for c in summarize(rows)["checks"]}[
        "SigLIP d72, 32 x 729: VIT_AUTO >= 0.97x best single (TORCH_SDPA_CUDNN)"]
    entries = speed_table_entries(rows, "GPU", (9, 0), "bfloat16", "vllm layer")
    # table names only (PICK is not a backend); the row says how it was measured
    assert set(entries[0]["tflops"]) == {"VIT_TRITON", "TORCH_SDPA_CUDNN", "FLASH_ATTN", "TRITON_ATTN", "VIT_AUTO"}
    assert entries[0]["num_seqs"] == 32 and entries[0]["how"] == "vllm layer"
    path = tmp_path / "t.json"
    write_speed_table(str(path), entries)
    from vit_backend_plugin.selection import speed_table

    table = speed_table.SpeedTable.model_validate_json(path.read_text())
    assert len(table.entries) == len(DEFAULT_SHAPES) and table.engine == []
    # a re-measured table keeps the engine runs of the table it merges with (the shipped one)
    from importlib import resources

    shipped = str(resources.files("vit_backend_plugin").joinpath("data/speed_table.json"))
    write_speed_table(str(path), entries, merged_engine_runs([shipped, shipped]))
    table = speed_table.SpeedTable.model_validate_json(path.read_text())
    assert {e.run for e in table.engine} == {e.run for e in speed_table.load_shipped().engine} != set()


def test_shipped_speed_table_is_valid_and_from_h100():
    from importlib import resources

    from vit_backend_plugin.selection import speed_table

    raw = json.loads(resources.files("vit_backend_plugin").joinpath("data/speed_table.json").read_text())
    table = speed_table.SpeedTable.model_validate(raw)
    assert table.entries and all(e.device.startswith("NVIDIA H100") for e in table.entries)
    assert all(e.numerics_ok.get("VIT_TRITON") for e in table.entries)


def test_kernel_config_table_covers_every_head_dim():
    torch = pytest.importorskip("torch")
    from vit_backend_plugin.kernels.triton_vit import pick_config

    for d in range(32, 257):
        for ms in (1, 64, 65, 1024, 100000):
            for dt in (torch.bfloat16, torch.float32):
                cfg = pick_config(d, ms, dt)
                assert cfg["kernel"] in ("main", "packed")
                if cfg["kernel"] == "packed":
                    assert ms <= 64


def test_merging_runs_keeps_each_backends_best_and_any_numerics_failure():
    def e(t, ok):
        return {"device": "GPU", "capability": [9, 0], "dtype": "bfloat16", "head_size": 72,
                "shape": "mixed d72", "seq_len": [1, 4096], "tflops": t, "numerics_ok": ok}

    merged = merge_entries([[e({"FLASH_ATTN": 169.0, "VIT_TRITON": 209.0}, {"FLASH_ATTN": True, "VIT_TRITON": True})],
                                  [e({"FLASH_ATTN": 249.0, "VIT_TRITON": 205.0}, {"FLASH_ATTN": True, "VIT_TRITON": False})]])
    assert len(merged) == 1
    assert merged[0]["tflops"] == {"FLASH_ATTN": 249.0, "VIT_TRITON": 209.0}
    assert merged[0]["numerics_ok"] == {"FLASH_ATTN": True, "VIT_TRITON": False}


def test_the_pick_counts_as_a_sample_of_its_backend():
    rows = [{"shape": {"name": "s", "head_dim": 72, "lens": [729] * 4}, "pick": "FLASH_ATTN", "results": [
        {"candidate": "FLASH_ATTN", "tflops": 169.0, "numerics_ok": True},
        {"candidate": "PICK", "tflops": 253.0, "numerics_ok": True}]}]
    (entry,) = speed_table_entries(rows, "GPU", (9, 0), "bfloat16")
    assert entry["tflops"] == {"FLASH_ATTN": 253.0}


def _row(name, results, pick="VIT_AUTO"):
    return {"shape": {"name": name, "head_dim": 80, "lens": [64] * 256}, "stock": "FLASH_ATTN",
            "pick": pick, "results": [
                {"candidate": c, "tflops": e, "numerics_ok": True,
                 "extra": {"graph_tflops": g} if g else {"graph_error": "not capturable: x"}}
                for c, e, g in results]}


def test_graph_timing_has_its_own_checks_and_table_rows():
    """A launch-bound shape: eager times are host time (FLASH_ATTN issues fastest), the CUDA-graph
    times are GPU time (our kernel is fastest). Each timing gets its own best single and checks;
    the speed table records the graph time, and the eager one for a candidate that syncs."""
    rows = [_row("windows", [("TORCH_SDPA", 1.0, None), ("FLASH_ATTN", 33.0, 35.0),
                             ("VIT_TRITON", 30.0, 71.0), ("VIT_AUTO", 29.0, 70.0),
                             ("PICK", 29.0, 70.0)])]
    eager = {c["target"]: c for c in summarize(rows)["checks"]}
    graph = {c["target"]: c for c in summarize(rows, "graph_tflops")["checks"]}
    assert eager["windows: VIT_AUTO >= 0.97x best single (FLASH_ATTN)"]["ok"] is False
    assert graph["windows: VIT_AUTO >= 0.97x best single (VIT_TRITON)"]["value"] == round(70 / 71, 3)
    assert graph["windows: pick VIT_AUTO vs stock vLLM FLASH_ATTN"]["value"] == 2.0
    assert rows[0]["best_single"] == "FLASH_ATTN"
    assert rows[0]["best_single_by"] == {"tflops": "FLASH_ATTN", "graph_tflops": "VIT_TRITON"}
    (entry,) = speed_table_entries(rows, "GPU", (9, 0), "bfloat16", "vllm layer", "graph_tflops")
    assert entry["tflops"] == {"TORCH_SDPA": 1.0, "FLASH_ATTN": 35.0, "VIT_TRITON": 71.0, "VIT_AUTO": 70.0}
    data = {"meta": {"device": "GPU", "capability": [9, 0], "dtype": "bfloat16",
                     "engine_faithful": True, "timings": ["eager", "graph"]}, "rows": rows}
    (graphed,) = table_entries(data, table_timing="graph")
    (eager_row,) = table_entries(data, table_timing="eager")
    assert table_entries(data)[0]["how"] == "vllm layer, CUDA graph"  # the default
    assert graphed["how"] == "vllm layer, CUDA graph" and graphed["tflops"]["VIT_TRITON"] == 71.0
    assert eager_row["how"] == "vllm layer" and eager_row["tflops"]["VIT_TRITON"] == 30.0
    data["meta"]["timings"] = ["eager"]  # a run without graph timing cannot write graph rows
    assert table_entries(data, table_timing="graph")[0]["tflops"]["VIT_TRITON"] == 30.0


def test_timings_option():
    assert parse_timings("graph") == {"eager", "graph"}
    assert parse_timings("stream") == {"eager", "stream"}
    assert parse_timings("eager,graph,host") == {"eager", "graph", "host"}
    with pytest.raises(ValueError, match="unknown timings"):
        parse_timings("graph,wall")


def test_tables_print_each_timing(capsys):
    rows = [_row("windows", [("FLASH_ATTN", 33.0, 35.0), ("VIT_TRITON", 30.0, 71.0),
                             ("VIT_AUTO", 29.0, 70.0)])]
    rows[0]["results"][1]["extra"]["host_us"] = 41.5
    data = {"rows": rows, "candidates": ["FLASH_ATTN", "VIT_TRITON", "VIT_AUTO"],
            "summary": summarize(rows), "summary_graph": summarize(rows, "graph_tflops")}
    print_all(data)
    out = capsys.readouterr().out
    assert "timed eager" in out and "timed CUDA graph (GPU time)" in out
    assert "71.0" in out and "41.5" in out  # the graph table and the host table


def test_round_orders_move_every_candidate_through_the_round():
    """Interleaved timing: each round times every candidate once, and no candidate keeps one place
    (a candidate always timed first or last would carry the drift of that place alone)."""
    for n, rounds in ((8, 5), (7, 5), (3, 3), (2, 4)):
        orders = round_orders(n, rounds)
        assert len(orders) == rounds
        assert all(sorted(o) == list(range(n)) for o in orders)
        for c in range(n):
            places = {o.index(c) for o in orders}
            assert len(places) >= min(n, rounds) - 1 >= 1
            assert max(places) - min(places) >= (n - 1) // 2
    assert round_orders(0, 2) == [[], []]


def test_back_to_back_timing_has_its_own_table_and_checks(capsys):
    """Launch-bound windows: one call at a time the host latency decides (FLASH_ATTN), back to back
    the host runs ahead and our kernel's GPU time shows. Each timing has its own checks."""
    rows = [_row("windows", [("FLASH_ATTN", 33.0, 35.0), ("VIT_TRITON", 30.0, 71.0),
                             ("VIT_AUTO", 29.0, 70.0)])]
    for r, st in zip(rows[0]["results"], (34.0, 66.0, 65.0), strict=True):
        r["extra"]["stream_tflops"] = st
    stream = {c["target"]: c for c in summarize(rows, "stream_tflops")["checks"]}
    assert stream["windows: VIT_AUTO >= 0.97x best single (VIT_TRITON)"]["value"] == round(65 / 66, 3)
    assert rows[0]["best_single_by"]["stream_tflops"] == "VIT_TRITON"
    data = {"rows": rows, "candidates": ["FLASH_ATTN", "VIT_TRITON", "VIT_AUTO"],
            "summary": summarize(rows), "summary_stream": summarize(rows, "stream_tflops")}
    print_all(data)
    out = capsys.readouterr().out
    assert "timed back to back" in out and "66.0" in out and "timed CUDA graph" not in out
    # a speed table can record back-to-back time instead (--table-timing stream)
    data["meta"] = {"device": "GPU", "capability": [9, 0], "dtype": "bfloat16", "engine_faithful": True,
                    "timings": ["eager", "stream", "graph"]}
    (row,) = table_entries(data, table_timing="stream")
    assert row["how"] == "vllm layer, back to back"
    assert row["tflops"] == {"FLASH_ATTN": 34.0, "VIT_TRITON": 66.0, "VIT_AUTO": 65.0}


def test_same_kernel_control_is_the_pick_against_its_own_backend(capsys):
    """PICK is a layer of one backend, timed beside that backend's own layer: their ratio is what
    a kernel against itself reads in the run, printed next to the checks it qualifies."""
    rows = [_row("a", [("FLASH_ATTN", 100.0, 100.0), ("VIT_TRITON", 90.0, 95.0), ("PICK", 97.0, 99.0)],
                 pick="FLASH_ATTN"),
            _row("b", [("FLASH_ATTN", 100.0, 100.0), ("VIT_TRITON", 90.0, 95.0), ("PICK", 93.0, 96.0)],
                 pick="VIT_TRITON"),
            _row("c", [("FLASH_ATTN", 100.0, 100.0), ("PICK", 50.0, 50.0)], pick="VIT_AUTO")]  # not a single
    eager, graph = summarize(rows), summarize(rows, "graph_tflops")
    assert eager["same_kernel_control"] == [0.97, round(93 / 90, 3)]
    assert graph["same_kernel_control"] == [0.99, round(96 / 95, 3)]
    print_table(rows, ["FLASH_ATTN", "VIT_TRITON", "PICK"], graph)
    assert "same-kernel control (PICK / the layer of the backend it picked, 2 shapes): lowest 0.990x" \
        in capsys.readouterr().out


def test_host_times_go_into_the_table_rows_and_merge_to_the_least():
    rows = [_row("clip", [("FLASH_ATTN", 60.0, 70.0), ("VIT_TRITON", 50.0, 142.0),
                          ("TORCH_SDPA_CUDNN", 28.0, 166.0), ("PICK", 60.0, 70.0)],
                 pick="FLASH_ATTN")]
    for r, us in zip(rows[0]["results"], (120.0, 110.0, 200.0, 121.0), strict=True):
        r["extra"]["host_us"] = us
    (entry,) = speed_table_entries(rows, "GPU", (9, 0), "bfloat16", "vllm layer", "graph_tflops")
    # every single backend's own host time; the pick is a layer of one of them, not a row of its own
    assert entry["host_us"] == {"FLASH_ATTN": 120.0, "VIT_TRITON": 110.0, "TORCH_SDPA_CUDNN": 200.0}
    later = dict(entry, host_us={"FLASH_ATTN": 130.0, "VIT_TRITON": 95.0})
    (merged,) = merge_entries([[later], [entry]])
    assert merged["host_us"] == {"FLASH_ATTN": 120.0, "VIT_TRITON": 95.0, "TORCH_SDPA_CUDNN": 200.0}
    from vit_backend_plugin.selection.speed_table import SpeedEntry

    assert SpeedEntry.model_validate(merged).host_us["VIT_TRITON"] == 95.0  # the schema takes it
    rows[0]["results"][0]["extra"].pop("host_us")
    assert "FLASH_ATTN" not in speed_table_entries(rows, "GPU", (9, 0), "bfloat16")[0]["host_us"]


def test_turns_rotate_and_a_failed_timing_ends_what_it_should():
    assert [_rotated([0, 1, 2], j) for j in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    assert _rotated([], 3) == []
    a, b = Result("A"), Result("B")
    samples = {"A": {}, "B": {}}
    timed = [(a, None), (b, None)]
    _keep(samples, timed, [1.5, RuntimeError("no capture")], "graph_ms", fatal=False)
    assert samples == {"A": {"graph_ms": [1.5]}, "B": {}}
    assert b.error is None and b.extra["graph_error"].startswith("RuntimeError")  # only that timing
    _keep(samples, timed, [ValueError("boom"), 2.0], "stream_ms", fatal=True)
    assert a.error.startswith("ValueError") and samples["B"]["stream_ms"] == [2.0]  # the candidate


def test_each_shape_says_how_far_it_is_from_the_speed_table_rows_vit_auto_reads():
    # The shipped H100 table, read as VIT_AUTO reads it: a shape of a shipped row is near; the two
    # shapes where VIT_AUTO once trailed the best single backend (outside the table) are far, and
    # the summary and the printed table say so.
    import io

    from vit_backend_plugin.kernels.auto import table_rows
    from vit_backend_plugin.tools.bench_kernels.summary import table_distance

    shapes = {"row": parse_shape("d80:16x1024"), "video": parse_shape("d80:32x256"),
              "long": parse_shape("d64:2x8192@8")}
    rows = []
    for name, sh in shapes.items():
        shape = {"name": name, "head_dim": sh.head_dim, "lens": sh.lens, "heads": sh.heads}
        dist = table_distance(list(table_rows((9, 0), "bfloat16", sh.head_dim)), shape)
        results = [Result("FLASH_ATTN", 1.0, 100.0, 0.0, True).__dict__,
                   Result("VIT_AUTO", 1.0, 99.0, 0.0, True).__dict__]
        rows.append({"shape": shape, "results": results, "table_distance": dist})
    near = {r["shape"]["name"]: r["table_distance"]["near"] for r in rows}
    assert near == {"row": True, "video": False, "long": False}
    s = summarize(rows)
    assert [f["shape"] for f in s["far_from_table"]] == ["video", "long"]
    out = io.StringIO()
    print_table(rows, ["FLASH_ATTN", "VIT_AUTO"], s, file=out)
    text = out.getvalue()
    assert "table dist" in text and "[far] video" in text and "[far] long" in text
    assert "[far] row" not in text
