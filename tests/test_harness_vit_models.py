"""Full-size ViT model directories (demo://vit/...) for throughput runs with dummy weights: the
configs transformers and vLLM read have the real ViTs' shapes around the demo's tiny text model."""

from __future__ import annotations

import json

import pytest

from vit_backend_plugin.harness import vit_models
from vit_backend_plugin.selection.model_config import vision_head_size

EXPECTED = {  # name -> (architecture, vision head size, depth, width)
    "qwen2-vl-7b": ("Qwen2VLForConditionalGeneration", 80, 32, 1280),
    "siglip-d72": ("Qwen2VLForConditionalGeneration", 72, 27, 1152),
    "qwen2.5-vl-7b": ("Qwen2_5_VLForConditionalGeneration", 80, 32, 1280),
}


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    from vit_backend_plugin.harness.demo_assets import DemoSpec, ensure_demo_assets

    root = tmp_path_factory.mktemp("assets")
    # one subject's worth of data is enough for the tokenizer; the model is what matters here
    return ensure_demo_assets(DemoSpec(items_per_subject=1), root=root).model_dir


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_full_size_vit_dirs_load_with_transformers_at_896px(demo_model, tmp_path, name):
    from PIL import Image
    from transformers import AutoConfig, AutoProcessor

    arch, head, depth, width = EXPECTED[name]
    d = vit_models.ensure_vit_model(name, demo_model, tmp_path)
    assert not list(d.glob("*.safetensors"))  # config only: vLLM's load_format dummy fills weights
    raw = json.loads((d / "config.json").read_text())
    assert raw["architectures"] == [arch] and vision_head_size(raw) == head
    cfg = AutoConfig.from_pretrained(d)
    v = cfg.vision_config
    assert v.depth == depth and (getattr(v, "embed_dim", None) or v.hidden_size) == width
    if name == "qwen2.5-vl-7b":
        assert v.fullatt_block_indexes == [7, 15, 23, 31] and v.window_size == 112
    # the ViT's output feeds the demo's text model
    demo_text = json.loads((demo_model / "config.json").read_text())["text_config"]["hidden_size"]
    merger_out = v.out_hidden_size if name == "qwen2.5-vl-7b" else v.hidden_size
    assert merger_out == demo_text
    proc = AutoProcessor.from_pretrained(d)
    grid = proc.image_processor(images=[Image.new("RGB", (896, 896))], return_tensors="pt")["image_grid_thw"]
    assert grid[0].tolist() == [1, 64, 64]  # 896 px at full size: 64 x 64 patches of 14 px
    assert vit_models.ensure_vit_model(name, demo_model, tmp_path) == d  # built once


def test_unknown_full_vit_name():
    with pytest.raises(KeyError):
        vit_models.ensure_vit_model("nope", None, None)
