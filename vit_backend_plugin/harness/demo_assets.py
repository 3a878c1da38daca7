"""The embedded offline default: a tiny random Qwen2-VL and a tiny MMMU-format data set, built locally.

Nothing here touches the network. Everything is generated once and cached under
``$VIT_PARITY_CACHE/demo`` (default ``$XDG_CACHE_HOME/vit_backend_plugin/demo``), keyed by a hash of the
generator settings, and built into a temporary directory that is renamed into place only when
complete (an interrupted build is never picked up).

* ``model/``: a tiny random Qwen2-VL, vision head_dim 80, with a tokenizer trained here
  (:mod:`~vit_backend_plugin.harness.demo_model`).
* ``mmmu/``: the ``MMMU/MMMU`` schema, one config per MMMU subject, generated images
  (:mod:`~vit_backend_plugin.harness.demo_data`).
* ``tasks/``: an lm-eval ``--include_path`` that points lm-eval's own MMMU task files at
  ``mmmu/`` (:mod:`~vit_backend_plugin.harness.demo_tasks`).

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

DEMO_GENERATOR_VERSION = 3  # 3: text head_dim 32 (vLLM's CPU attention needs >= 32)


@dataclass(frozen=True)
class DemoSpec:
    """Everything that determines the generated assets (hashed into the cache key)."""

    items_per_subject: int = 3
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
    init_std: float = 0.1
    seed: int = 0

    @property
    def vision_head_dim(self) -> int:
        return self.vision_embed_dim // self.vision_heads

    def key(self) -> str:
        blob = json.dumps({"v": DEMO_GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DemoAssets:
    root: Path
    model_dir: Path
    data_dir: Path
    tasks_dir: Path
    spec: DemoSpec


def cache_root() -> Path:
    from vit_backend_plugin.common.paths import harness_cache_root

    return harness_cache_root() / "demo"


def ensure_demo_assets(spec: DemoSpec | None = None, root: Path | None = None) -> DemoAssets:
    """Build (once) and return the demo's model, data and lm-eval task override directory."""
    spec = spec or DemoSpec()
    root = Path(root) if root else cache_root()
    final = root / spec.key()
    marker = final / "COMPLETE"
    if not marker.is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.key()}."))
        try:
            corpus = build_dataset(tmp / "mmmu", spec)
            tokenizer = build_tokenizer(corpus, spec)
            build_model(tmp / "model", tokenizer, spec)
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
    write_task_overrides(tasks_dir, final / "mmmu")
    return DemoAssets(
        root=final,
        model_dir=final / "model",
        data_dir=final / "mmmu",
        tasks_dir=tasks_dir,
        spec=spec,
    )
