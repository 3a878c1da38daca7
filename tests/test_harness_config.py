"""`vit-parity run` config validation: every bad config is a one-line error, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vit_backend_plugin import cli
from vit_backend_plugin.harness.arms import resolve_arm
from vit_backend_plugin.harness.config import (
    ConfigError,
    check_backends,
    check_tasks,
    hf_backends,
    load_config,
    parse_config,
    vllm_backends,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "eval_configs"
SEED_CONFIGS = ["qwen2_5_vl_7b.yaml", "llava_onevision_qwen2_7b.yaml", "internvl3_5_4b.yaml"]

GOOD = {"model": "Qwen/Qwen2.5-VL-7B-Instruct", "engine": "vllm", "backends": ["FLASH_ATTN", "VIT_TRITON"]}


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    rc = cli.main(["run", *argv])
    err = capsys.readouterr().err
    return rc, err


def write(tmp_path: Path, data: dict | str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    "data, expected",
    [
        ({**GOOD, "limt": 5}, "unknown key 'limt'"),
        ({**GOOD, "throughput": {"num_promts": 5}}, "unknown key 'throughput.num_promts'"),
        ({k: v for k, v in GOOD.items() if k != "engine"}, "missing required key 'engine'"),
        ({**GOOD, "engine": "sglang"}, "engine"),
        ({**GOOD, "backends": []}, "backends"),
        ({**GOOD, "backends": ["FLASH_ATTN", "FLASH_ATTN"]}, "listed twice: FLASH_ATTN"),
        ({**GOOD, "baseline": "XFORMERS"}, "baseline 'XFORMERS' is not one of the arms"),
        ({**GOOD, "batch_size": "big"}, "batch_size"),
        ({**GOOD, "engine": "hf", "backends": ["sdpa"], "batch_size": "auto"}, "batch_size 'auto' is not supported"),
        ({**GOOD, "engine_args": {"mm_encoder_attn_backend": "X"}}, "engine_args may not set mm_encoder_attn_backend"),
        ({**GOOD, "env": {"VIT_ATTN_BACKEND": "X"}}, "VIT_ATTN_BACKEND is set per backend"),
        ({**GOOD, "throughput": {"image_sizes": [[224, 224]], "image_mix": [0.5, 0.5]}}, "image_mix has 2 weights for 1"),
        ({**GOOD, "limit": 0}, "limit"),
    ],
)
def test_schema_errors_are_one_line(tmp_path, capsys, data, expected):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert expected in msg
    assert "\n" not in msg
    # and through the CLI: exit 2, one line on stderr, no traceback
    rc, err = run_cli(capsys, str(path))
    assert rc == 2
    assert err.strip().count("\n") == 0, err
    assert err.startswith("vit-parity run: error:") and expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize("limit", [1.5, 2.5, True, False, -3, 0, -0.5, ".nan", ".inf", "'10'"])
def test_limit_that_lm_eval_would_misread_is_rejected(tmp_path, capsys, limit):
    """lm-eval's --limit is a count (>= 1; it truncates 1.5 to 1 item) or a fraction (< 1)."""
    text = yaml.safe_dump(GOOD) + f"limit: {limit}\n"  # YAML's own reading of the value
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="^.*limit: must be a whole number of items per task") as exc:
        load_config(path)
    assert "\n" not in str(exc.value)
    rc, err = run_cli(capsys, str(path), "--dry-run")
    assert rc == 2 and err.count("\n") == 1 and "limit: must be" in err and "Traceback" not in err


@pytest.mark.parametrize("limit, count_or_fraction, arg", [(10, 10, "10"), (10.0, 10, "10"), (0.25, 0.25, "0.25")])
def test_limit_counts_and_fractions(tmp_path, limit, count_or_fraction, arg):
    from vit_backend_plugin.harness.commands import lm_eval_args

    cfg = parse_config({**GOOD, "limit": limit})
    assert cfg.limit == count_or_fraction and type(cfg.limit) is type(count_or_fraction)
    argv = lm_eval_args(cfg, resolve_arm(cfg, "FLASH_ATTN"), tmp_path, None)
    assert argv[argv.index("--limit") + 1] == arg


def test_unknown_backend_per_engine(tmp_path, capsys):
    rc, err = run_cli(capsys, str(write(tmp_path, {**GOOD, "backends": ["FLASH_ATTN", "sdpa"]})))
    assert rc == 2 and "unknown backend 'sdpa' for engine vllm" in err and err.count("\n") == 1
    # a vLLM name on the hf engine is refused, with the valid list
    cfg = parse_config({**GOOD, "engine": "hf", "backends": ["eager", "FLASH_ATTN"]})
    with pytest.raises(ConfigError, match="unknown backend 'FLASH_ATTN' for engine hf; valid: eager"):
        check_backends(cfg)
    cfg = parse_config({**GOOD, "backends": ["flash_attn"]})
    with pytest.raises(ConfigError, match="did you mean 'FLASH_ATTN'"):
        check_backends(cfg)


def test_backend_names_come_from_the_catalog_and_transformers():
    vb = vllm_backends()
    # the seed-001 vLLM backends go in as an engine argument, the plugin's own through the env
    for name in ("FLASH_ATTN", "TRITON_ATTN", "TORCH_SDPA", "FLASHINFER", "ROCM_AITER_FA"):
        assert vb[name] == "engine_arg"
    for name in ("VIT_TRITON", "TORCH_SDPA_CUDNN", "FLASH_ATTN_UPSTREAM", "XFORMERS"):
        assert vb[name] == "env"
    hb = hf_backends()
    assert {"eager", "sdpa", "vit_triton"} <= set(hb)


def test_missing_local_model_path(tmp_path, capsys):
    rc, err = run_cli(capsys, str(write(tmp_path, {**GOOD, "model": str(tmp_path / "nope")})))
    assert rc == 2 and "model path does not exist" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    rc, err = run_cli(capsys, str(write(tmp_path, {**GOOD, "model": str(tmp_path / "empty")})))
    assert rc == 2 and "has no config.json" in err


def test_hub_id_offline_not_cached(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    rc, err = run_cli(capsys, str(write(tmp_path, {**GOOD, "model": "nobody/no-such-model"})))
    assert rc == 2 and "not in the local HF cache" in err


def local_model(tmp_path: Path) -> str:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text("{}")
    return str(d)


def test_unknown_task(tmp_path, capsys):
    data = {**GOOD, "model": local_model(tmp_path), "tasks": ["mmmu_vall"]}
    rc, err = run_cli(capsys, str(write(tmp_path, data)))
    assert rc == 2 and "unknown lm-eval task 'mmmu_vall'" in err and "mmmu_val" in err
    assert err.count("\n") == 1


def test_bad_parity_thresholds(tmp_path, capsys):
    pytest.importorskip("vit_backend_plugin.report.parity")
    data = {**GOOD, "model": local_model(tmp_path), "parity": {"alpah": 0.1}}
    rc, err = run_cli(capsys, str(write(tmp_path, data)))
    assert rc == 2 and "parity" in err and "alpah" in err and err.count("\n") == 1


def test_missing_file_and_bad_yaml(tmp_path, capsys):
    rc, err = run_cli(capsys, str(tmp_path / "absent.yaml"))
    assert rc == 2 and "config file not found" in err
    rc, err = run_cli(capsys, str(write(tmp_path, "model: [unclosed\n")))
    assert rc == 2 and "invalid YAML" in err and err.count("\n") == 1
    rc, err = run_cli(capsys, str(write(tmp_path, "- just\n- a list\n")))
    assert rc == 2 and "expected a mapping" in err


SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml"))


def test_every_shipped_config_is_listed():
    assert set(SEED_CONFIGS) <= set(SHIPPED) and {"demo.yaml", "demo_hf.yaml", "h100_demo.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIGS / name)
    check_backends(cfg)
    if not cfg.include_path:  # demo:// resolves to generated files (covered by the demo test)
        check_tasks(cfg, None)
    assert cfg.tasks == ["mmmu_val"]
    assert cfg.throughput.output_len == 1


def test_seed_configs_mirror_seed_001():
    for name in SEED_CONFIGS:
        cfg = load_config(CONFIGS / name)
        assert cfg.engine == "vllm"
        assert cfg.num_fewshot == 5 and cfg.batch_size == "auto" and cfg.apply_chat_template
        assert cfg.trust_remote_code
    assert load_config(CONFIGS / "llava_onevision_qwen2_7b.yaml").limit == 10
    assert load_config(CONFIGS / "internvl3_5_4b.yaml").limit == 250


def test_demo_yaml_matches_embedded_config():
    from vit_backend_plugin.harness.demo import demo_config_data

    assert yaml.safe_load((CONFIGS / "demo.yaml").read_text()) == demo_config_data("vllm")
    assert yaml.safe_load((CONFIGS / "demo_hf.yaml").read_text()) == demo_config_data("hf")
    assert [a["name"] for a in demo_config_data("vllm")["arms"]] == ["TORCH_SDPA", "VIT_TRITON", "low_res"]


def test_full_size_vit_configs_are_throughput_only_with_dummy_weights():
    from vit_backend_plugin.harness import vit_models

    names = []
    for path in sorted(CONFIGS.glob("h100_vit_*.yaml")):
        cfg = load_config(path)
        assert not cfg.accuracy and cfg.engine_args["load_format"] == "dummy"
        # full-size images; small ones where the tower is small (short calls: host cost shows);
        # 448 px (1024 patches) for d96, the length its measured kernel rows cover
        side = {"demo://vit/clip-b-d64": 224, "demo://vit/small-d128": 224, "demo://vit/d96": 448}
        assert cfg.throughput.image_sizes == [(side.get(cfg.model, 896),) * 2]
        if cfg.arms is not None:  # engine settings compared on one ViT (arms), not backends
            continue
        if path.stem.endswith("_speed"):  # a speed-verdict target: two stock backends, A/A control
            assert cfg.throughput.aa_control and len(cfg.backends) == 2
            continue
        assert "AUTO" in cfg.backends and cfg.baseline_name == "FLASH_ATTN"
        names.append(cfg.model.removeprefix("demo://"))
    assert sorted(names) == sorted(vit_models.names())
