"""Full-size ViTs for throughput runs with dummy weights (``load_format: dummy``), built offline.

``model: demo://vit/<name>`` in a config resolves to a model directory made here from the demo
model's assets (its tokenizer, processor and tiny text model) with the vision tower replaced by
a full-size one: a ``config.json`` and processor files, no weights. vLLM builds the model from
the config and fills it with dummy weights; the ViT's shapes, and so its attention cost, are the
real model's. Nothing is downloaded, so a GPU machine without network can build them from the
repository alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

# name -> (architecture, vision config as the Hugging Face config names it). Sizes from the
# models' published config.json files.
FULL_VITS: dict[str, tuple[str, dict]] = {
    # Qwen2-VL-7B's ViT: 32 layers, 1280 wide, 16 heads (head_dim 80).
    "qwen2-vl-7b": ("qwen2_vl", {"depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_ratio": 4,
                                 "hidden_act": "quick_gelu"}),
    # SigLIP-size ViT (LLaVA-OneVision's SigLIP-so400m: 27 layers, 1152 wide, 16 heads, head_dim
    # 72) in the Qwen2-VL vision architecture, so the same processor and engine path serve it.
    # (mlp_ratio must be an integer there: 4 instead of SigLIP's 4304/1152; attention unchanged.)
    "siglip-d72": ("qwen2_vl", {"depth": 27, "embed_dim": 1152, "num_heads": 16,
                                "mlp_ratio": 4, "hidden_act": "quick_gelu"}),
    # InternViT-300M-size ViT (InternVL's: 24 layers, 1024 wide, 16 heads, head_dim 64) in the
    # Qwen2-VL vision architecture.
    "internvit-d64": ("qwen2_vl", {"depth": 24, "embed_dim": 1024, "num_heads": 16,
                                   "mlp_ratio": 4, "hidden_act": "quick_gelu"}),
    # Small towers, where a call is short and the host's cost per layer shows: CLIP-B/16-size
    # (12 layers, 768 wide, 12 heads: head_dim 64) and the same depth at head_dim 128 (1536 wide).
    "clip-b-d64": ("qwen2_vl", {"depth": 12, "embed_dim": 768, "num_heads": 12,
                                "mlp_ratio": 4, "hidden_act": "quick_gelu"}),
    "small-d128": ("qwen2_vl", {"depth": 12, "embed_dim": 1536, "num_heads": 12,
                                "mlp_ratio": 4, "hidden_act": "quick_gelu"}),
    # A head size stock vLLM and the plugin choose differently for (d96: the plugin's VIT_AUTO
    # runs cuDNN on image-size calls): 24 layers, 1536 wide, 16 heads.
    "d96": ("qwen2_vl", {"depth": 24, "embed_dim": 1536, "num_heads": 16,
                         "mlp_ratio": 4, "hidden_act": "quick_gelu"}),
    # Qwen2.5-VL-7B's windowed ViT: 32 layers, 1280 wide, 16 heads, window attention except
    # blocks 7, 15, 23, 31.
    "qwen2.5-vl-7b": ("qwen2_5_vl", {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420,
                                     "num_heads": 16, "hidden_act": "silu", "window_size": 112,
                                     "fullatt_block_indexes": [7, 15, 23, 31],
                                     "tokens_per_second": 2}),
}
PREFIX = "vit/"  # demo://vit/<name>
MAX_SIDE = 1024  # the processor keeps images up to 1024 x 1024 px at full size (896 px runs)
BUILD_VERSION = 1


def names() -> list[str]:
    return [PREFIX + n for n in FULL_VITS]


def _architecture_files(arch: str) -> tuple[str, str, str]:
    """(model_type, architecture class, processor class)."""
    if arch == "qwen2_5_vl":
        return "qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"
    return "qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"


def build_config(demo_config: dict, arch: str, vision: dict) -> dict:
    """The demo model's config with a full-size vision tower (pure: dict in, dict out)."""
    model_type, cls_name, _ = _architecture_files(arch)
    text = demo_config["text_config"]
    base_vision = {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    if arch == "qwen2_5_vl":
        vcfg = {**base_vision, "in_channels": 3, "out_hidden_size": text["hidden_size"], **vision}
    else:
        vcfg = {**base_vision, "in_chans": 3, "hidden_size": text["hidden_size"], **vision}
    vcfg["model_type"] = model_type
    cfg = {k: v for k, v in demo_config.items() if k not in ("vision_config", "_name_or_path")}
    cfg.update(model_type=model_type, architectures=[cls_name], vision_config=vcfg)
    cfg["text_config"] = {**text, "model_type": f"{model_type}_text",
                          "max_position_embeddings": max(text.get("max_position_embeddings", 0), 8192)}
    return cfg


def ensure_vit_model(name: str, demo_model_dir: Path, root: Path) -> Path:
    """Build (once) and return the model directory for ``demo://vit/<name>``."""
    if name not in FULL_VITS:
        raise KeyError(name)
    arch, vision = FULL_VITS[name]
    final = root / f"{name}-v{BUILD_VERSION}-{demo_model_dir.parent.name}"
    if (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        for f in demo_model_dir.iterdir():
            if f.is_file() and f.suffix != ".safetensors" and f.name != "config.json":
                shutil.copy2(f, tmp / f.name)
        _, _, processor_cls = _architecture_files(arch)
        for fname in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
            p = tmp / fname
            if not p.is_file():
                continue
            data = json.loads(p.read_text())
            if "processor_class" in data:
                data["processor_class"] = processor_cls
            if fname == "preprocessor_config.json":
                data["size"] = {"shortest_edge": 56 * 56, "longest_edge": MAX_SIDE * MAX_SIDE}
                data.pop("min_pixels", None)
                data.pop("max_pixels", None)
            if isinstance(data.get("image_processor"), dict):
                data["image_processor"]["size"] = {"shortest_edge": 56 * 56,
                                                   "longest_edge": MAX_SIDE * MAX_SIDE}
                data["image_processor"].pop("min_pixels", None)
                data["image_processor"].pop("max_pixels", None)
            p.write_text(json.dumps(data, indent=2) + "\n")
        demo_cfg = json.loads((demo_model_dir / "config.json").read_text())
        (tmp / "config.json").write_text(json.dumps(build_config(demo_cfg, arch, vision), indent=2) + "\n")
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
