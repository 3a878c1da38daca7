"""Arms in a `vit-parity run` config: resolution (deep merge, environment, backend routes), the
`backends:` shorthand, `--arms`, and every validation rule as a one-line error before anything
runs. Pure planning, no engine; the arms' settings reaching vLLM's engine are in
test_arms_vllm.py."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from vit_backend_plugin import cli
from vit_backend_plugin.harness.arms import deep_merge, resolve_arms, settings_changes
from vit_backend_plugin.harness.commands import accuracy_command, throughput_command
from vit_backend_plugin.harness.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "eval_configs"
HUB = "Qwen/Qwen2.5-VL-7B-Instruct"


def local_model(tmp_path: Path) -> str:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text("{}")
    return str(d)


def write(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["run", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# --------------------------------------------------------------------------- resolution
def test_arm_engine_args_deep_merge_env_merge_and_backend_routes():
    cfg = parse_config({
        "model": HUB, "engine": "vllm",
        "engine_args": {"dtype": "bfloat16", "enforce_eager": True, "max_model_len": 4096,
                        "compilation_config": {"mode": 0, "encoder_cudagraph_token_budgets": [64]},
                        "mm_processor_kwargs": {"min_pixels": 3136, "max_pixels": 50176}},
        "env": {"SHARED": "a", "OVERRIDDEN": "config"},
        "arms": [
            {"name": "eager"},
            {"name": "graphs", "engine_args": {"enforce_eager": False, "max_model_len": None,
                                               "compilation_config": {"cudagraph_mm_encoder": True},
                                               "mm_processor_kwargs": {"max_pixels": 3136}},
             "env": {"OVERRIDDEN": "arm", "ONLY_HERE": "1"}},
            {"name": "triton", "backend": "VIT_TRITON"},
            {"name": "fa", "backend": "FLASH_ATTN"},
        ],
        "baseline": "graphs",
    })
    arms = {a.name: a for a in resolve_arms(cfg)}
    assert [a.name for a in resolve_arms(cfg)] == ["graphs", "eager", "triton", "fa"]  # baseline first
    g = arms["graphs"]
    # nested dicts merged key by key, scalars replaced, null drops the config's key
    assert g.engine_args == {"dtype": "bfloat16", "enforce_eager": False,
                             "compilation_config": {"mode": 0, "encoder_cudagraph_token_budgets": [64],
                                                    "cudagraph_mm_encoder": True},
                             "mm_processor_kwargs": {"min_pixels": 3136, "max_pixels": 3136}}
    assert g.env == {"SHARED": "a", "OVERRIDDEN": "arm", "ONLY_HERE": "1"}
    assert g.backend == "AUTO" and g.route == "auto" and g.python == sys.executable
    # the config's own settings are untouched by an arm's merge
    assert cfg.engine_args["compilation_config"] == {"mode": 0, "encoder_cudagraph_token_budgets": [64]}
    assert arms["eager"].engine_args == cfg.engine_args and arms["eager"].env == cfg.env
    # the plugin's backends through VIT_ATTN_BACKEND, vLLM's through the engine argument
    assert arms["triton"].env["VIT_ATTN_BACKEND"] == "VIT_TRITON"
    assert "mm_encoder_attn_backend" not in arms["triton"].model_args
    assert arms["fa"].model_args["mm_encoder_attn_backend"] == "FLASH_ATTN"
    assert "VIT_ATTN_BACKEND" not in arms["fa"].env
    # both phases are built from the one resolved arm
    acc = accuracy_command(cfg, g, Path("/r/graphs"))
    margs = json.loads(acc.lm_eval_argv[acc.lm_eval_argv.index("--model_args") + 1])
    assert margs == {"pretrained": HUB, **g.engine_args} and acc.env == g.env
    tp = throughput_command(cfg, g, Path("/r/graphs"))
    spec = json.loads(tp.argv[-1])
    assert spec["engine_args"] == g.engine_args and spec["arm"] == "graphs" and tp.env == g.env
    assert spec["env_keys"] == sorted(g.env)
    assert acc.argv[0] == tp.argv[0] == g.python


def test_deep_merge_does_not_alias_the_base():
    base = {"compilation_config": {"a": 1}, "x": [1]}
    out = deep_merge(base, {"compilation_config": {"b": 2}})
    out["compilation_config"]["c"] = 3
    assert base == {"compilation_config": {"a": 1}, "x": [1]}


def test_backends_shorthand_plans_like_the_equivalent_arms(tmp_path, capsys):
    common = {"model": local_model(tmp_path), "engine": "vllm", "output_dir": str(tmp_path),
              "run_id": "r", "engine_args": {"dtype": "float32"}, "env": {"X": "1"}}
    short = write(tmp_path, {**common, "backends": ["TORCH_SDPA", "VIT_TRITON", "AUTO"],
                             "baseline": "VIT_TRITON"}, "short.yaml")
    long = write(tmp_path, {**common, "arms": [{"name": "TORCH_SDPA", "backend": "TORCH_SDPA"},
                                               {"name": "VIT_TRITON", "backend": "VIT_TRITON"},
                                               {"name": "AUTO"}],
                            "baseline": "VIT_TRITON"}, "long.yaml")
    assert resolve_arms(load_config(short)) == resolve_arms(load_config(long))
    outs = []
    for path in (short, long):
        rc, out, _ = run_cli(capsys, str(path), "--dry-run")
        assert rc == 0
        outs.append(out)
    assert outs[0] == outs[1]
    assert "# arm VIT_TRITON: VIT_TRITON" in outs[0]


def test_arms_option_selects_by_name_and_backends_is_its_alias(tmp_path, capsys):
    data = {"model": local_model(tmp_path), "engine": "vllm", "output_dir": str(tmp_path),
            "arms": [{"name": "a"}, {"name": "b", "env": {"B": "1"}}, {"name": "c", "backend": "VIT_TRITON"}]}
    path = write(tmp_path, data)
    for flag in ("--arms", "--backends"):
        rc, out, _ = run_cli(capsys, str(path), flag, "c,a", "--dry-run")
        assert rc == 0
        assert re.findall(r"^# arm (\w+):", out, re.M) == ["c", "a"]
        assert "baseline: c" in out
    rc, _, err = run_cli(capsys, str(path), "--arms", "a,z", "--dry-run")
    assert rc == 2 and "no arm named 'z'; the config's arms: a, b, c" in err and err.count("\n") == 1
    # a backends: config: the names are backends, as before arms (any valid backend)
    legacy = write(tmp_path, {**{k: v for k, v in data.items() if k != "arms"},
                              "backends": ["TORCH_SDPA"]}, "legacy.yaml")
    rc, out, _ = run_cli(capsys, str(legacy), "--backends", "VIT_TRITON,TORCH_SDPA", "--dry-run")
    assert rc == 0 and re.findall(r"^# arm (\w+):", out, re.M) == ["VIT_TRITON", "TORCH_SDPA"]


def test_readme_example_config_parses_and_merges():
    text = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "arms:" in b)
    cfg = parse_config({"model": HUB, **yaml.safe_load(block)})
    arms = {a.name: a for a in resolve_arms(cfg)}
    assert arms["encoder_cudagraphs"].engine_args["compilation_config"] == {
        "mode": 3, "cudagraph_mm_encoder": True}
    assert arms["triton_next_vllm"].python == "/opt/vllm-next/bin/python"
    assert arms["triton_next_vllm"].env["VIT_ATTN_BACKEND"] == "VIT_TRITON"


# --------------------------------------------------------------------------- validation
GOOD = {"model": HUB, "engine": "vllm"}


@pytest.mark.parametrize("arms, expected", [
    ([{"name": "a", "backnd": "X"}], "unknown key 'arms.a.backnd'"),
    ([{"name": "a/b"}], "arm name 'a/b' cannot be a directory name"),
    ([{"name": ".hidden"}], "arm name '.hidden' cannot be a directory name"),
    ([{"name": "x" * 65}], "at most 64"),
    ([{"name": "a"}, {"name": "a", "backend": "VIT_TRITON"}], "arm name listed twice: a"),
    ([{"name": "a", "engine_args": {"mm_encoder_attn_backend": "FLASH_ATTN"}}],
     "arms.a.engine_args: engine_args may not set mm_encoder_attn_backend"),
    ([{"name": "a", "engine_args": {"pretrained": "x"}}], "engine_args may not set pretrained"),
    ([{"name": "a", "env": {"VIT_ATTN_BACKEND": "VIT_TRITON"}}], "VIT_ATTN_BACKEND is set per backend"),
    ([{"name": "a", "env": {"N": 1}}], "arms.a.env.N"),
    ([{"backend": "VIT_TRITON"}], "missing required key 'arms.0.name'"),
    ([], "arms"),
])
def test_arm_schema_errors_are_one_line(tmp_path, capsys, arms, expected):
    path = write(tmp_path, {**GOOD, "arms": arms})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert expected in str(exc.value) and "\n" not in str(exc.value)
    rc, _, err = run_cli(capsys, str(path), "--dry-run")
    assert rc == 2 and err.count("\n") == 1 and expected in err and "Traceback" not in err


@pytest.mark.parametrize("extra, expected", [
    ({"arms": [{"name": "a"}], "backends": ["FLASH_ATTN"]}, "give either 'arms' or 'backends'"),
    ({}, "give either 'arms' or 'backends'"),
    ({"arms": [{"name": "a"}], "baseline": "b"}, "baseline 'b' is not one of the arms ['a']"),
    ({"backends": ["a/b"]}, "cannot be a directory name"),
])
def test_config_level_arm_errors(tmp_path, extra, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(write(tmp_path, {**GOOD, **extra}))


def _exe(path: Path, body: str) -> str:
    path.write_text(body)
    path.chmod(0o755)
    return str(path)


def test_environment_errors_before_anything_runs(tmp_path, capsys):
    """Unknown backends and unusable interpreters: one line, exit 2, nothing written."""
    out = tmp_path / "out"
    base = {"model": local_model(tmp_path), "engine": "vllm", "output_dir": str(out)}
    not_exec = tmp_path / "python-not-exec"
    not_exec.write_text("")
    cases = [
        ({"name": "a", "backend": "VIT_TRITONN"}, "arm 'a': unknown backend 'VIT_TRITONN' for engine vllm"),
        ({"name": "a", "backend": "flash_attn"}, "did you mean 'FLASH_ATTN'"),
        ({"name": "a", "python": str(tmp_path / "no" / "python")}, "arm 'a': python "),
        ({"name": "a", "python": str(not_exec)}, "is not executable"),
        ({"name": "a", "python": _exe(tmp_path / "broken", "#!/bin/sh\necho boom >&2\nexit 3\n")},
         "did not answer the version probe (exit 3): boom"),
    ]
    if Path("/usr/bin/python3").is_file():  # the system Python: no vLLM, no lm-eval there
        cases.append(({"name": "a", "python": "/usr/bin/python3"},
                      "vllm, lm_eval (install"))
    for arm, expected in cases:
        path = write(tmp_path, {**base, "arms": [{"name": "ok"}, arm]})
        rc, _, err = run_cli(capsys, str(path))
        assert rc == 2 and expected in err and err.count("\n") == 1, err
        assert not out.exists()
    hf = write(tmp_path, {**base, "engine": "hf", "arms": [{"name": "a"}]})
    rc, _, err = run_cli(capsys, str(hf), "--dry-run")
    assert rc == 2 and "arm 'a': engine hf needs a backend" in err


def test_another_interpreter_runs_both_phases(tmp_path, capsys):
    """An arm's python starts both of its phases' children (and answers the version probe)."""
    wrapper = _exe(tmp_path / "python", f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    path = write(tmp_path, {"model": local_model(tmp_path), "engine": "vllm",
                            "output_dir": str(tmp_path / "out"),
                            "arms": [{"name": "here"}, {"name": "there", "python": wrapper}]})
    rc, out, _ = run_cli(capsys, str(path), "--dry-run")
    assert rc == 0
    lines = out.splitlines()
    assert f"# arm there: AUTO; python {wrapper}" in lines
    there_acc = lines[lines.index("# there accuracy") + 1]
    there_tp = lines[lines.index("# there throughput") + 1]
    assert there_acc.startswith(f"{wrapper} -m lm_eval --model vllm-vlm")  # that venv's lm-eval
    assert there_tp.startswith(f"{wrapper} -m vit_backend_plugin.harness.speed_worker")
    here_acc = lines[lines.index("# here accuracy") + 1]
    assert here_acc.startswith("lm_eval --model vllm-vlm")


# --------------------------------------------------------------------------- rerun comparison
def test_settings_changes_name_what_changed():
    rec = {"backend": "AUTO", "engine_args": {"compilation_config": {"a": 1}}, "env": {"X": "1"},
           "python": "/p", "versions": {"vllm": "0.32.0", "numpy": "2.0", "python": "3.11.7"},
           "gpu": [{"name": "NVIDIA H100", "driver": "580.1"}]}
    same = json.loads(json.dumps(rec))
    same["versions"]["numpy"] = "2.1"  # not a compared version
    same["gpu"][0]["driver"] = "580.2"  # a driver update alone does not count
    assert settings_changes(rec, same) == []
    now = json.loads(json.dumps(rec))
    now["env"]["X"] = "2"
    now["env"]["Y"] = "new"
    now["engine_args"]["compilation_config"]["a"] = 2
    now["versions"]["vllm"] = "0.33.0"
    now["gpu"] = [{"name": "NVIDIA H200", "driver": "580.1"}]
    assert settings_changes(rec, now) == [
        "engine_args.compilation_config.a 1 -> 2", "env.X '1' -> '2'", "env.Y unset -> 'new'",
        "versions.vllm '0.32.0' -> '0.33.0'", "gpu 'NVIDIA H100' -> 'NVIDIA H200'"]
    # an older record (no python, versions or gpu) compares what it has
    assert settings_changes({"backend": "AUTO", "env": {"X": "1"}}, now) == ["env.X '1' -> '2'",
                                                                             "env.Y unset -> 'new'"]


def fake_vllm_python(tmp_path: Path, version: str = "9.9.9") -> str:
    """An interpreter (this one, wrapped) whose metadata says another vLLM version: what another
    virtualenv looks like to the version probe."""
    site = tmp_path / f"site-{version}"
    dist = site / f"vllm-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    return _exe(tmp_path / f"python-vllm-{version}",
                f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")


def test_versions_are_read_by_the_arms_interpreter(tmp_path):
    from importlib.metadata import version

    from vit_backend_plugin.harness.env_capture import probe_interpreter

    other = probe_interpreter(fake_vllm_python(tmp_path))
    assert other["versions"]["vllm"] == "9.9.9"
    assert probe_interpreter(sys.executable)["versions"]["vllm"] == version("vllm") != "9.9.9"
    assert other["modules"]["vit_backend_plugin"]  # the children's `-m vit_backend_plugin...`
    assert other["python"] == sys.version.split()[0]


# --------------------------------------------------------------------------- shipped configs
ARM_CONFIGS = {  # config -> (the setting under test, the candidate arm)
    "h100_demo_encoder_cudagraphs.yaml": ("cudagraph_mm_encoder", "encoder_cudagraphs"),
    "h100_vit_qwen2_vl_7b_encoder_cudagraphs.yaml": ("cudagraph_mm_encoder", "encoder_cudagraphs"),
    "h100_demo_compile_mm_encoder.yaml": ("compile_mm_encoder", "compile_mm_encoder"),
    "h100_vit_qwen2_vl_7b_compile_mm_encoder.yaml": ("compile_mm_encoder", "compile_mm_encoder"),
    "h100_vit_qwen2_5_vl_7b_compile_mm_encoder.yaml": ("compile_mm_encoder", "compile_mm_encoder"),
    "h100_demo_fp8_encoder_attn.yaml": ("mm_encoder_attn_dtype", "attn_fp8"),
}


def _specs(out: str) -> dict[str, dict]:
    """arm -> the throughput child's spec, as --dry-run prints its command."""
    lines, specs = out.splitlines(), {}
    for i, line in enumerate(lines):
        if line.endswith(" throughput"):
            argv = shlex.split(lines[i + 1])
            specs[line.split()[1]] = json.loads(argv[argv.index("--spec") + 1])
    return specs


@pytest.mark.parametrize("name", sorted(ARM_CONFIGS))
def test_shipped_arm_configs_dry_run(tmp_path, capsys, name):
    setting, candidate = ARM_CONFIGS[name]
    rc, out, err = run_cli(capsys, str(CONFIGS / name), "--dry-run", "--output-dir", str(tmp_path))
    assert rc == 0, err
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written
    specs = _specs(out)
    assert len(specs) == 2 and candidate in specs
    (baseline,) = set(specs) - {candidate}
    assert f"baseline: {baseline}" in out.splitlines()[0]
    base, cand = specs[baseline]["engine_args"], specs[candidate]["engine_args"]
    if setting == "mm_encoder_attn_dtype":
        assert cand[setting] == "fp8" and setting not in base
        assert specs[baseline]["backend"] == specs[candidate]["backend"] == "FLASH_ATTN"
        return
    # vLLM captures or compiles the encoder only without enforce_eager: both arms alike
    assert base["enforce_eager"] is False and cand["enforce_eager"] is False
    assert cand["compilation_config"] == {setting: True} and "compilation_config" not in base
    assert {k: v for k, v in cand.items() if k != "compilation_config"} == base


def _vllm_source(relpath: str) -> str:
    import importlib.util

    root = Path(next(iter(importlib.util.find_spec("vllm").submodule_search_locations)))
    return (root / relpath).read_text()


def test_what_the_shipped_arm_configs_say_of_vllm_holds():
    """The configs' comments rest on vLLM 0.32's code: the encoder graphs are captured only
    without enforce_eager, and compile_mm_encoder compiles Qwen2.5-VL's tower, not Qwen2-VL's."""
    compilation = _vllm_source("config/compilation.py")
    assert "compile_mm_encoder: bool = False" in compilation
    assert "cudagraph_mm_encoder: bool = False" in compilation
    worker = _vllm_source("v1/worker/gpu_worker.py")
    capture = worker.index("self.model_runner.capture_model()")
    assert "if not self.model_config.enforce_eager:" in worker[capture - 200:capture]
    assert "enable_if=should_torch_compile_mm_encoder" in _vllm_source("model_executor/models/qwen2_5_vl.py")
    assert "should_torch_compile_mm_encoder" not in _vllm_source("model_executor/models/qwen2_vl.py")
    assert "mm_encoder_attn_dtype='fp8' requires either the" in _vllm_source(
        "model_executor/layers/attention/mm_encoder_attention.py")
