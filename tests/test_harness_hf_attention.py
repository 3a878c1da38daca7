"""The hf engine's plugin backends as transformers attention implementations.

On CPU the plugin kernels never run (they are CUDA kernels): every call must then be exactly
transformers' SDPA, masks included. A padded batch catches a missing mask registration
(transformers treats an unknown implementation as mask-free, so padding would leak in).
The CUDA path (vision attention through the plugin's varlen kernel) was checked on an H100.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vit_backend_plugin.harness import hf_attention
from vit_backend_plugin.harness.demo_assets import DemoSpec, build_model, build_tokenizer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_qwen2_vl")
    spec = DemoSpec(bpe_vocab=400)
    tok = build_tokenizer(["Which shape appears in this figure? (A) circle (B) square"] * 10, spec)
    build_model(d, tok, spec)
    return d


def test_plugin_names():
    names = hf_attention.hf_plugin_backends()
    assert names["vit_triton"] == "VIT_TRITON"
    assert set(names.values()) == {"VIT_TRITON", "VIT_AUTO", "TORCH_SDPA_CUDNN", "FLASH_ATTN_UPSTREAM", "XFORMERS"}
    assert hf_attention.register("sdpa") is False  # not ours: left alone


def test_registered_kernel_matches_sdpa_on_cpu_padded_batch(tiny_model):
    from PIL import Image
    from transformers import AttentionInterface, AutoModelForImageTextToText, AutoProcessor
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    assert hf_attention.register("vit_triton")
    assert "vit_triton" in AttentionInterface._global_mapping
    assert "vit_triton" in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping

    proc = AutoProcessor.from_pretrained(tiny_model)
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype="uint8")) for w, h in [(56, 56), (112, 84)]]
    texts = [
        proc.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
            add_generation_prompt=True, tokenize=False,
        )
        for t in ("Which shape?", "Which shape appears in this figure, circle or square or bar?")
    ]
    enc = proc(text=texts, images=imgs, return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any()  # really padded

    logits = {}
    for impl in ("sdpa", "vit_triton"):
        model = AutoModelForImageTextToText.from_pretrained(tiny_model, attn_implementation=impl,
                                                            dtype=torch.float32).eval()
        assert model.config._attn_implementation == impl
        with torch.inference_mode():
            logits[impl] = model(**enc).logits
    mask = enc["attention_mask"].bool()
    assert torch.equal(logits["vit_triton"][mask], logits["sdpa"][mask])
