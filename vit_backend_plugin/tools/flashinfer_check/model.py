"""The decoder the engines run: a weightless Qwen2.5-0.5B-shaped model folder, its seeded
weights, and the parity prompts."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

# Qwen2.5-0.5B's text shape (head size 64, GQA 14/2, 24 layers).
DECODER_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
    "intermediate_size": 4864, "num_attention_heads": 14, "num_key_value_heads": 2,
    "num_hidden_layers": 24, "vocab_size": 151936, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16", "hidden_act": "silu", "sliding_window": None,
    "use_sliding_window": False, "bos_token_id": 0, "eos_token_id": 1,
}
# The same architecture scaled down (head size 64 kept), for running the phases' mechanics on a
# CPU in minutes rather than a quarter of an hour (tests; `--decoder tiny`).
DECODERS = {
    "qwen2.5-0.5b": DECODER_CONFIG,
    "tiny": {**DECODER_CONFIG, "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2,
             "num_key_value_heads": 1, "num_hidden_layers": 2},
}
SPEC_CONFIG = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 1}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def make_model_dir(root: Path, decoder: str = "qwen2.5-0.5b") -> Path:
    """A weightless model folder of one of :data:`DECODERS`' shapes (default Qwen2.5-0.5B's)
    with the demo tokenizer."""
    from vit_backend_plugin.harness.demo_assets import ensure_demo_assets

    d = root / ("decoder_qwen2_5_0_5b_shape" if decoder == "qwen2.5-0.5b" else f"decoder_{decoder}")
    if (d / "config.json").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    demo = ensure_demo_assets().model_dir
    for name in TOKENIZER_FILES:
        if (demo / name).is_file():
            shutil.copy(demo / name, d / name)
    (d / "config.json").write_text(json.dumps(DECODERS[decoder], indent=1))
    return d


def redraw_weights(model) -> int:
    """Seeded N(0, 0.02) weights (norm weights 1) so both processes hold the same, non-flat model."""
    import torch

    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not torch.is_floating_point(p):
                continue
            if "norm" in name:
                p.fill_(1.0)
            else:
                g = torch.Generator(device=p.device).manual_seed(zlib.crc32(name.encode()))
                p.copy_(torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32) * 0.02)
            n += 1
    return n


def parity_prompts(seed: int, n: int = 48, vocab: int = 4000) -> list[list[int]]:
    """Token prompts of 8..700 tokens; each repeats a motif so n-gram lookup proposes drafts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(n):
        length = int(rng.integers(8, 700))
        motif = rng.integers(10, vocab, int(rng.integers(4, 24))).tolist()
        body = (motif * (length // len(motif) + 1))[:length]
        noise = rng.integers(0, length, length // 10)
        for j in noise:
            body[int(j)] = int(rng.integers(10, vocab))
        prompts.append(body)
    return prompts
