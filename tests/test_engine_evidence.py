"""`vit-parity record-engine`: a run directory (as `vit-parity run` writes it) becomes an engine
row of the user speed table, and the resolver then keeps stock where that run showed a loss."""

import json

import pytest

from vit_backend_plugin.rundir.layout import RunInfo
from vit_backend_plugin.selection import speed_table
from vit_backend_plugin.selection.resolver import Measurement, ResolveRequest, resolve
from vit_backend_plugin.tools import record_engine as engine_evidence


def write_run(root, backends, encoder, log_names, head=72, dtype="bfloat16", engine="vllm", arch=None):
    RunInfo(run_id="siglip_896", engine=engine, arms=backends, baseline=backends[0],
            tasks=["mmmu_val"], model="m").write(root)
    for b in backends:
        d = root / b
        d.mkdir()
        if encoder.get(b, "skip") == "skip":
            continue
        (d / "throughput.json").write_text(json.dumps({
            "engine": engine, "backend": b, "metrics": {"images_per_s": 1.0, "encoder_images_per_s": encoder[b]},
            "device": {"device": "NVIDIA H100 80GB HBM3", "capability": "9.0"}}))
        arch_line = f"INFO [model.py:733] Resolved architecture: {arch}\n" if arch else ""
        (d / "throughput.log").write_text(
            arch_line + f"INFO [selector.py:80] ViT attention: {log_names[b]} (head_size={head}, dtype={dtype}; why)\n")


def test_run_becomes_an_engine_row_with_auto_recorded_as_its_choice(tmp_path):
    write_run(tmp_path, ["FLASH_ATTN", "TRITON_ATTN", "AUTO", "VIT_TRITON"],
              {"FLASH_ATTN": 69.2, "TRITON_ATTN": 16.3, "AUTO": 54.6, "VIT_TRITON": "skip"},
              {"FLASH_ATTN": "FLASH_ATTN", "TRITON_ATTN": "TRITON_ATTN", "AUTO": "VIT_AUTO"})
    table_path = tmp_path / "user_table.json"
    speed_table.save_user(speed_table.SpeedTable(entries=[speed_table.SpeedEntry(
        device="H100", capability=(9, 0), dtype="bfloat16", head_size=72, seq_len=(1, 4096),
        tflops={"FLASH_ATTN": 246, "VIT_AUTO": 275, "VIT_TRITON": 259, "TORCH_SDPA": 49},
        numerics_ok={"FLASH_ATTN": True, "VIT_AUTO": True, "VIT_TRITON": True, "TORCH_SDPA": True})]),
        table_path)
    (entry,), path = engine_evidence.record(tmp_path, table_path)
    assert entry.encoder_images_per_s == {"FLASH_ATTN": 69.2, "TRITON_ATTN": 16.3, "VIT_AUTO": 54.6}
    assert (entry.head_size, entry.dtype, entry.capability) == (72, "bfloat16", (9, 0))
    table = speed_table.load_user(path)
    assert len(table.entries) == 1 and len(table.engine) == 1  # kernel rows kept
    engine_evidence.record(tmp_path, table_path)  # recording the run again replaces its row
    assert len(speed_table.load_user(path).engine) == 1

    feats = frozenset({"vllm_flash_attn", "triton", "vit_triton_kernel"})
    measured, _ = speed_table.lookup((9, 0), "bfloat16", 72, tables=[table])
    engine = speed_table.engine_lookup((9, 0), "bfloat16", 72, tables=[table])
    req = dict(head_size=72, dtype="bfloat16", capability=(9, 0), features=feats, measured=measured)
    assert resolve(ResolveRequest(**req)).chosen == "VIT_AUTO"
    assert resolve(ResolveRequest(**req, engine_measured=engine)).chosen == "FLASH_ATTN"
    assert isinstance(measured["VIT_AUTO"], Measurement)


def test_the_model_architecture_vllm_resolved_is_recorded(tmp_path):
    write_run(tmp_path, ["FLASH_ATTN", "VIT_AUTO"], {"FLASH_ATTN": 50.9, "VIT_AUTO": 54.9},
              {"FLASH_ATTN": "FLASH_ATTN", "VIT_AUTO": "VIT_AUTO"}, head=80,
              arch="Qwen2_5_VLForConditionalGeneration")
    assert engine_evidence.entry_from_run(tmp_path).architecture == "Qwen2_5_VLForConditionalGeneration"


def test_explicit_backend_beats_auto_resolving_to_it(tmp_path):
    write_run(tmp_path, ["AUTO", "FLASH_ATTN"], {"AUTO": 50.0, "FLASH_ATTN": 52.0},
              {"AUTO": "FLASH_ATTN", "FLASH_ATTN": "FLASH_ATTN"})
    assert engine_evidence.entry_from_run(tmp_path).encoder_images_per_s == {"FLASH_ATTN": 52.0}


@pytest.mark.parametrize("kind", ["cpu", "hf"])
def test_runs_that_are_no_engine_evidence_are_refused(tmp_path, kind):
    if kind == "cpu":  # vLLM's encoder timer is off on its CPU platform: no encoder images/s
        write_run(tmp_path, ["TORCH_SDPA"], {"TORCH_SDPA": None}, {"TORCH_SDPA": "TORCH_SDPA"})
    else:
        write_run(tmp_path, ["sdpa"], {"sdpa": 1.0}, {"sdpa": "TORCH_SDPA"}, engine="hf")
    with pytest.raises(engine_evidence.EvidenceError):
        engine_evidence.entry_from_run(tmp_path)
    rc = engine_evidence.main(type("A", (), {"run_dir": str(tmp_path), "out": str(tmp_path / "t.json")})())
    assert rc == 2 and not (tmp_path / "t.json").exists()


def write_inproc(folder, runs, arch="Qwen2VLForConditionalGeneration"):
    """As scripts/gpu_inproc_runs.sh writes them: one JSON line per process, plus its log."""
    lines = []
    for config, backend, ips, ran, head in runs:
        res = None if ips is None else {"mode": "as_run", "backend": backend, "encoder_images_per_s": ips,
                                        "repeats": [ips] * 3,
                                        "device": {"device": "NVIDIA H100 80GB HBM3", "capability": "9.0"}}
        log = f"ViT attention: {ran} (head_size={head}, dtype=bfloat16; why)"
        lines.append(json.dumps({"config": config, "backend": backend, "rc": 0 if res else 124,
                                 "result": res, "plugin_log": log}))
        (folder / f"{config}_{backend}.log").write_text(
            f"INFO [model.py:733] Resolved architecture: {arch}\nINFO [selector.py:84] {log}\n")
    (folder / "inproc.jsonl").write_text("\n".join(lines) + "\n")


def test_in_process_runs_become_engine_rows_and_keep_stock_where_they_lost(tmp_path):
    """d64 as measured in one process on the H100 (FLASH_ATTN 95.1, AUTO -> VIT_TRITON 89.2,
    VIT_TRITON 90.2): recorded next to the multi-process run where VIT_TRITON was 1.01x, the
    in-process loss alone keeps FLASH_ATTN; a config with one backend as run, a timed-out run
    and the attention-free diagnostic give no row."""
    write_inproc(tmp_path, [
        ("d64", "FLASH_ATTN", 95.1, "FLASH_ATTN", 64), ("d64", "AUTO", 89.2, "VIT_TRITON", 64),
        ("d64", "VIT_TRITON", 90.2, "VIT_TRITON", 64), ("d64", "TRITON_ATTN", 67.6, "TRITON_ATTN", 64),
        ("d64", "null", 138.0, "VIT_TRITON", 64),
        ("d72", "AUTO", 70.1, "FLASH_ATTN", 72), ("d72", "FLASH_ATTN", 70.1, "FLASH_ATTN", 72),
        ("d80", "FLASH_ATTN", 55.7, "FLASH_ATTN", 80), ("d80", "AUTO", None, "VIT_AUTO", 80)])
    table_path = tmp_path / "user.json"
    multi = speed_table.EngineEntry(run="d64_multi", device="NVIDIA H100 80GB HBM3", capability=(9, 0),
                                    dtype="bfloat16", head_size=64, architecture="Qwen2VLForConditionalGeneration",
                                    encoder_images_per_s={"FLASH_ATTN": 54.9, "VIT_TRITON": 55.2})
    speed_table.save_user(speed_table.SpeedTable(engine=[multi], entries=[speed_table.SpeedEntry(
        device="H100", capability=(9, 0), dtype="bfloat16", head_size=64, seq_len=(1, 4096),
        tflops={"FLASH_ATTN": 306, "VIT_TRITON": 328, "TORCH_SDPA": 93},
        numerics_ok={"FLASH_ATTN": True, "VIT_TRITON": True, "TORCH_SDPA": True})]),
        table_path)
    entries, path = engine_evidence.record(tmp_path, table_path)
    (e,) = entries  # d72: FLASH_ATTN only (AUTO chose it); d80: AUTO timed out
    assert e.run == "d64_inproc" and e.architecture == "Qwen2VLForConditionalGeneration"
    # the explicit VIT_TRITON run, not AUTO resolving to it; null is no backend
    assert e.encoder_images_per_s == {"FLASH_ATTN": 95.1, "VIT_TRITON": 90.2, "TRITON_ATTN": 67.6}
    table = speed_table.load_user(path)
    assert [x.run for x in table.engine] == ["d64_multi", "d64_inproc"]
    feats = frozenset({"vllm_flash_attn", "triton", "vit_triton_kernel"})
    measured, _ = speed_table.lookup((9, 0), "bfloat16", 64, tables=[table])
    req = dict(head_size=64, dtype="bfloat16", capability=(9, 0), features=feats, measured=measured)
    only_multi = {"d64_multi": multi.encoder_images_per_s}
    assert resolve(ResolveRequest(**req, engine_measured=only_multi)).chosen == "VIT_TRITON"
    both = speed_table.engine_lookup((9, 0), "bfloat16", 64, tables=[table],
                                     architecture="Qwen2VLForConditionalGeneration")
    res = resolve(ResolveRequest(**req, engine_measured=both))
    assert res.chosen == "FLASH_ATTN" and "0.95x FLASH_ATTN in engine run d64_inproc" in res.why
