"""`vit-parity record-engine`: a run directory (as `vit-parity run` writes it) becomes an engine
row of the user speed table, and the resolver then keeps stock where that run showed a loss."""

import json

import pytest

from vit_backend_plugin import engine_evidence, speed_table
from vit_backend_plugin.resolver import Measurement, ResolveRequest, resolve
from vit_backend_plugin.rundir import RunInfo


def write_run(root, backends, encoder, log_names, head=72, dtype="bfloat16", engine="vllm", arch=None):
    RunInfo(run_id="siglip_896", engine=engine, backends=backends, baseline=backends[0],
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
    entry, path = engine_evidence.record(tmp_path, table_path)
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
