"""The demo assets after the split into demo_model / demo_data / demo_tasks: same names, same
cache key, same generated data, and importable without the extras."""

import hashlib
import json
import subprocess
import sys

import pytest

from vit_backend_plugin.harness import demo_assets, demo_data, demo_model, demo_tasks
from vit_backend_plugin.harness.demo_assets import DemoSpec

# A different key orphans every user's cached demo (a rebuild of minutes): change it only with the
# generators (by bumping DEMO_GENERATOR_VERSION) or the shipped weights, and update this value then.
DEFAULT_KEY = "e58060d0bbd5"
# sha256 (first 16 hex) of build_dataset(DemoSpec(items_per_subject=1))'s corpus, README.md and
# every decoded row (generator version 4: shapes one per grid cell; which shape/colour/how many;
# version 5 changed only the count questions, which this one-item-per-subject set has none of).
DATA_DIGEST = "3fe1455290456cd2"


def test_cache_key_unchanged():
    assert DemoSpec().key() == DEFAULT_KEY
    assert DemoSpec(items_per_subject=1).key() != DEFAULT_KEY  # the spec is what is hashed


def test_every_old_name_is_the_generators_own():
    moved = {
        "build_model": demo_model, "build_tokenizer": demo_model, "SPECIAL_TOKENS": demo_model,
        "QWEN2_VL_CHAT_TEMPLATE": demo_model, "build_dataset": demo_data,
        "eval_options": demo_data, "SHAPES": demo_data, "COLORS": demo_data,
        "mmmu_task_dir": demo_tasks, "mmmu_subject_tasks": demo_tasks,
        "write_task_overrides": demo_tasks,
    }
    for name, module in moved.items():
        assert getattr(demo_assets, name) is getattr(module, name), name
    kept = {"DemoSpec", "DemoAssets", "DEMO_GENERATOR_VERSION", "cache_root", "ensure_demo_assets"}
    assert set(demo_assets.__all__) == set(moved) | kept


BLOCK_EXTRAS = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "vllm", "lm_eval", "triton", "transformers",
                                  "datasets", "tokenizers", "PIL"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Block())
"""


def test_modules_import_without_the_extras():
    # runner.py imports demo_assets while planning: the heavy imports must stay inside functions
    code = BLOCK_EXTRAS + (
        "import vit_backend_plugin.harness.demo_assets as a\n"
        "print(a.DemoSpec().key())\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == DEFAULT_KEY


def test_generated_data_unchanged(tmp_path):
    pytest.importorskip("lm_eval")
    datasets = pytest.importorskip("datasets")

    data = tmp_path / "data"
    corpus = demo_data.build_dataset(data, DemoSpec(items_per_subject=1))
    h = hashlib.sha256(json.dumps(corpus).encode())
    h.update((data / "README.md").read_bytes())
    subjects = sorted(p.name for p in data.iterdir() if p.is_dir())
    assert len(subjects) == 30  # every subject of lm-eval's mmmu_val
    for subject in subjects:
        # a cache of its own: offline, datasets finds a cached local set by its folder's name alone
        for row in datasets.load_dataset(str(data), name=subject, split="validation",
                                         cache_dir=str(tmp_path / "hf_datasets")):
            for k in sorted(row):
                v = row[k]
                h.update(k.encode())
                h.update(v.tobytes() if hasattr(v, "tobytes") else repr(v).encode())
    assert h.hexdigest()[:16] == DATA_DIGEST
