"""The embedded offline default: a tiny trained Qwen2-VL and a tiny MMMU-format data set, built locally.

Nothing here touches the network. Everything is generated once and cached under
``$VIT_PARITY_CACHE/demo`` (default ``$XDG_CACHE_HOME/vit_backend_plugin/demo``), keyed by a hash of the
generator settings, and built into a temporary directory that is renamed into place only when
complete (an interrupted build is never picked up).

* ``model/``: a tiny Qwen2-VL, vision head_dim 80 (:mod:`~vit_backend_plugin.harness.demo_model`):
  by default the shipped trained weights and tokenizer (``data/demo_model/``, made by
  :mod:`~vit_backend_plugin.harness.demo_train`; it answers the demo's questions from the image),
  with ``DemoSpec(trained=False)`` random weights and a tokenizer trained here.
* ``mmmu-<key>/``: the ``MMMU/MMMU`` schema, one config per MMMU subject, generated images
  (:mod:`~vit_backend_plugin.harness.demo_data`).
* ``tasks/``: an lm-eval ``--include_path`` that points lm-eval's own MMMU task files at
  ``mmmu-<key>/`` (:mod:`~vit_backend_plugin.harness.demo_tasks`). The data directory's name
  carries the key: offline, ``datasets`` finds a cached local set by its directory's name alone,
  so a plain ``mmmu/`` would be read back from a cache made of another generator's data.

This module keeps the cache (spec, key, layout, build) and re-exports the generators' names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from vit_backend_plugin.harness.demo_data import COLORS, SHAPES, build_dataset, eval_options
from vit_backend_plugin.harness.demo_model import (
    QWEN2_VL_CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    build_model,
    build_tokenizer,
)
from vit_backend_plugin.harness.demo_tasks import (
    mmmu_subject_tasks,
    mmmu_task_dir,
    write_task_overrides,
)

__all__ = [
    "COLORS", "DEMO_GENERATOR_VERSION", "QWEN2_VL_CHAT_TEMPLATE", "SHAPES", "SPECIAL_TOKENS",
    "DemoAssets", "DemoSpec", "build_dataset", "build_model", "build_tokenizer", "cache_root",
    "ensure_demo_assets", "eval_options", "mmmu_subject_tasks", "mmmu_task_dir",
    "write_task_overrides",
]

DEMO_GENERATOR_VERSION = 5  # 3: text head_dim 32 (vLLM's CPU attention needs >= 32)
# 4: the trained model (data/demo_model/); shapes one per grid cell; which shape/colour/how many
# 5: "how many crosses" (was "crosss"), the model retrained on it
TRAINED_DIR = "data/demo_model"  # in the package: model.safetensors, tokenizer_bpe.json, manifest.json


@dataclass(frozen=True)
class DemoSpec:
    """Everything that determines the generated assets (hashed into the cache key)."""

    items_per_subject: int = 6  # 180 items: a 10-point drop is 18 items, detectable (McNemar)
    image_min: int = 56  # generated image sides, pixels
    image_max: int = 96
    min_pixels: int = 28 * 28 * 4  # Qwen2VLImageProcessor size bounds: tiny images, few tokens
    max_pixels: int = 28 * 28 * 16
    vision_embed_dim: int = 160
    vision_heads: int = 2  # head_dim = 160 / 2 = 80: not a multiple of 32 (seed 001)
    vision_depth: int = 2
    text_hidden: int = 128  # text head_dim 128 / 4 = 32: a size vLLM's CPU attention supports
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    bpe_vocab: int = 700
    init_std: float = 0.1  # random weights only (trained: False)
    seed: int = 0
    # the shipped trained weights and tokenizer (data/demo_model/, made by demo_train); False:
    # random weights and a tokenizer trained here on the data's text
    trained: bool = True

    @property
    def vision_head_dim(self) -> int:
        return self.vision_embed_dim // self.vision_heads

    def key(self) -> str:
        fields = {"v": DEMO_GENERATOR_VERSION, **asdict(self)}
        if self.trained:  # new weights, new cache entry
            fields["weights"] = trained_manifest()["sha256"]
        blob = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DemoAssets:
    root: Path
    model_dir: Path
    data_dir: Path
    tasks_dir: Path
    spec: DemoSpec


def trained_manifest() -> dict:
    """The shipped trained model's manifest (hashes, the command that made it, its settings)."""
    from importlib import resources

    ref = resources.files("vit_backend_plugin").joinpath(TRAINED_DIR, "manifest.json")
    return json.loads(ref.read_text())


def trained_files(spec: DemoSpec):
    """(tokenizer, weights path) of the shipped trained model, checked against its manifest."""
    from importlib import resources

    from vit_backend_plugin.harness.demo_model import tokenizer_from_state
    from vit_backend_plugin.harness.demo_train import MODEL_FIELDS

    manifest = trained_manifest()
    mine = {k: v for k, v in asdict(spec).items() if k in MODEL_FIELDS}
    if mine != manifest["spec"]:
        diff = sorted(k for k in mine if mine[k] != manifest["spec"].get(k))
        raise ValueError(f"the trained demo weights are for another model shape ({', '.join(diff)} "
                         "differ): use DemoSpec(trained=False) for random weights")
    base = Path(str(resources.files("vit_backend_plugin").joinpath(TRAINED_DIR)))
    for name, digest in manifest["sha256"].items():
        if hashlib.sha256((base / name).read_bytes()).hexdigest() != digest:
            raise ValueError(f"{base / name}: sha256 differs from its manifest (a damaged install?)")
    state = json.loads((base / "tokenizer_bpe.json").read_text())
    return tokenizer_from_state(state), base / "model.safetensors"


def cache_root() -> Path:
    from vit_backend_plugin.common.paths import harness_cache_root

    return harness_cache_root() / "demo"


def ensure_demo_assets(spec: DemoSpec | None = None, root: Path | None = None) -> DemoAssets:
    """Build (once) and return the demo's model, data and lm-eval task override directory."""
    spec = spec or DemoSpec()
    root = Path(root) if root else cache_root()
    final = root / spec.key()
    data_name = f"mmmu-{spec.key()}"  # unique per key (datasets' offline cache, above)
    marker = final / "COMPLETE"
    if not marker.is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.key()}."))
        try:
            corpus = build_dataset(tmp / data_name, spec)
            if spec.trained:
                tokenizer, weights = trained_files(spec)
            else:
                tokenizer, weights = build_tokenizer(corpus, spec), None
            build_model(tmp / "model", tokenizer, spec, weights=weights)
            (tmp / "spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
            (tmp / "COMPLETE").write_text("ok\n")
            if final.exists():  # a stale, incomplete build
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(tmp, final)
            except OSError:  # someone else finished first
                if not marker.is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    # The task files name absolute paths (lm-eval's install, our data): rewrite each time (cheap).
    tasks_dir = final / "tasks"
    write_task_overrides(tasks_dir, final / data_name)
    return DemoAssets(
        root=final,
        model_dir=final / "model",
        data_dir=final / data_name,
        tasks_dir=tasks_dir,
        spec=spec,
    )
