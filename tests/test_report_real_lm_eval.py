"""`vit-parity report --lm-eval` on folders written by lm-eval's own CLI (`lm_eval run ...
--log_samples --output_path`), offline: the demo's MMMU-format data and lm-eval's own MMMU task
files (through the demo's include files), and a deterministic multimodal stub model registered
in lm-eval's model registry in place of vLLM (the report reads files; what made the answers does
not matter, what lm-eval writes does)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("datasets")

pytestmark = pytest.mark.slow

TASKS = "mmmu_val_art,mmmu_val_math"
PER_SUBJECT = 10

# Runs lm-eval's CLI once per line of argv in sys.argv[1] (a JSON list of argv lists).
STUB_CLI = '''
import hashlib, json, sys
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model


@register_model("mm-stub")
class MMStub(LM):
    MULTIMODAL = True  # lm-eval refuses multimodal tasks to other models

    def __init__(self, pretrained="", salt="", **kwargs):  # lm-eval passes model_args + batch size etc.
        super().__init__()
        self.salt = str(salt or "")

    def generate_until(self, requests, disable_tqdm=False):
        out = []
        for r in requests:
            h = int(hashlib.sha256((r.arguments[0] + self.salt).encode()).hexdigest(), 16)
            out.append("The answer is (" + "ABCD"[h % 4] + ").")
        return out

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


from lm_eval.__main__ import cli_evaluate

for argv in json.loads(sys.argv[1]):
    sys.argv = ["lm_eval", *argv]
    cli_evaluate()
'''


@pytest.fixture(scope="module")
def lm_eval_runs(tmp_path_factory) -> dict[str, Path]:
    from vit_backend_plugin.harness.demo_assets import DemoSpec, build_dataset, write_task_overrides

    root = tmp_path_factory.mktemp("real_lm_eval")
    build_dataset(root / "data", DemoSpec(items_per_subject=PER_SUBJECT))
    write_task_overrides(root / "tasks", root / "data")
    runs = {"a": ("salt=", None), "b": ("salt=other", None), "limited": ("salt=", "4")}
    argvs = []
    for name, (args, limit) in runs.items():
        argv = ["run", "--model", "mm-stub", "--model_args", f"pretrained=stub-model,{args}",
                "--tasks", TASKS, "--include_path", str(root / "tasks"), "--log_samples",
                "--output_path", str(root / name), "--seed", "0"]
        argvs.append(argv + (["--limit", limit] if limit else []))
    (root / "stub_cli.py").write_text(STUB_CLI)
    # a cache of its own: offline, datasets finds a cached local set by its folder's name alone
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(root / "hf_datasets"), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(root / "stub_cli.py"), json.dumps(argvs)], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: root / name for name in runs}


def report(tmp_path: Path, *folders: Path, names: str) -> tuple[int, dict, str]:
    from vit_backend_plugin.cli import main

    out = tmp_path / "out"
    rc = main(["report", "--lm-eval", *map(str, folders), "--names", names, "--out", str(out)])
    return rc, json.loads((out / "summary.json").read_text()), (out / "report.md").read_text()


def samples(folder: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for f in folder.rglob("samples_*.jsonl"):
        for line in f.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                rec = json.loads(line)
                task = f.name.removeprefix("samples_").rsplit("_", 1)[0]
                out[(task, rec["doc_id"])] = rec
    return out


def test_a_run_against_itself_agrees(tmp_path, lm_eval_runs):
    rc, s, md = report(tmp_path, lm_eval_runs["a"], lm_eval_runs["a"], names="a,a2")
    p = s["parity"]["a2"]
    assert p["n"] == 2 * PER_SUBJECT and p["agreement"] == 1.0 and p["differing_items"] == []
    assert p["verdict"] == "INCONCLUSIVE" and rc == 0  # 20 items < min_items
    assert s["warnings"] == []
    a = s["arms"]["a"]
    raw = json.loads(next(lm_eval_runs["a"].rglob("results_*.json")).read_text())
    assert a["state"] == "complete" and a["samples_logged"] == 2 * PER_SUBJECT
    assert {r["name"]: r["value"] for r in a["results"]} == {
        k: v["acc,none"] for k, v in raw["results"].items()}
    assert s["engine"] == "mm-stub" and s["model"] == "stub-model"
    rec = a["lm_eval"]
    assert rec["tasks"] == sorted(TASKS.split(",")) and rec["limit"] is None
    assert rec["n_samples"] == dict.fromkeys(TASKS.split(","), PER_SUBJECT)
    # versions as lm-eval recorded them, from this very interpreter
    env = a["environment"]
    assert env["source"] == "lm-eval results"
    assert env["versions"]["python"] == platform.python_version()
    assert env["versions"]["lm_eval"] == raw["lm_eval_version"]
    import torch

    assert env["versions"]["torch"] == torch.__version__.split("+")[0]


def test_other_answers_are_listed_item_by_item(tmp_path, lm_eval_runs):
    rc, s, md = report(tmp_path, lm_eval_runs["a"], lm_eval_runs["b"], names="a,b")
    p = s["parity"]["b"]
    sa, sb = samples(lm_eval_runs["a"]), samples(lm_eval_runs["b"])
    changed = sorted(k for k in sa if sa[k]["filtered_resps"] != sb[k]["filtered_resps"])
    assert changed and [(d["task"], d["doc_id"]) for d in p["differing_items"]] == changed
    assert p["b"] == sum(sa[k]["acc"] > sb[k]["acc"] for k in sa)
    assert p["c"] == sum(sa[k]["acc"] < sb[k]["acc"] for k in sa)
    assert rc in (0, 1) and p["verdict"] in ("INCONCLUSIVE", "FAIL")
    # the salt is in model_args: shown beside the arms, not a warning
    assert s["warnings"] == [] and '| model_args | pretrained=stub-model, salt= | salt: "" → other |' in md


def test_a_limited_run_is_flagged_and_paired_on_common_items(tmp_path, lm_eval_runs):
    rc, s, md = report(tmp_path, lm_eval_runs["a"], lm_eval_runs["limited"], names="a,limited")
    keys = {(w["kind"], w["key"]) for w in s["warnings"]}
    assert {("config", "limit"), ("config", "n_samples"), ("pairing", "items")} <= keys, keys
    p = s["parity"]["limited"]
    assert p["n"] == 8 and p["only_baseline"] == 2 * PER_SUBJECT - 8 and p["only_candidate"] == 0
    assert "dropped 12 only in the baseline a" in md
