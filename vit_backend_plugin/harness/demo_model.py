"""The demo's model: a tiny ``Qwen2VLForConditionalGeneration`` with its own tokenizer.

A real architecture that transformers and vLLM 0.32 both support, vision head_dim 80 (embed_dim
160 / 2 heads: the seed-001 case that is not a multiple of 32), text head_dim 32, a byte-level
BPE tokenizer with the Qwen2-VL special tokens, wrapped in ``Qwen2Tokenizer``, a
``Qwen2VLImageProcessor`` with small min/max pixels, a ``Qwen2VLProcessor`` and the Qwen2-VL chat
template. The weights: the shipped trained ones (``data/demo_model/``, made by
:mod:`~vit_backend_plugin.harness.demo_train` with its tokenizer) or random ones (with a tokenizer
trained here on the given text). Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # demo_assets imports this module: no import cycle at run time
    from vit_backend_plugin.harness.demo_assets import DemoSpec

# Qwen2-VL's special tokens (names as in the real tokenizer; ids are ours).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The Qwen2-VL chat template (as shipped with Qwen/Qwen2-VL-*-Instruct).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(corpus: list[str], spec: DemoSpec):
    """Byte-level BPE trained here (no download), wrapped in transformers' Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    extra = [
        # lm-eval's MMMU prompt wording and the chat template's text, so they tokenize compactly
        "Answer with the option's letter from the given choices directly.",
        "Answer the question using a single word or phrase.",
        "system\nYou are a helpful assistant.\nuser\nassistant\n",
        "(A) (B) (C) (D) (E) A B C D E 0 1 2 3 4 5 6 7 8 9 The answer is",
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=spec.bpe_vocab,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
    )
    tok.train_from_iterator(corpus + extra * 20, trainer=trainer)
    return tokenizer_from_state(json.loads(tok.to_str())["model"])


def tokenizer_state(tokenizer) -> dict:
    """The BPE vocabulary and merges of a tokenizer made here (what ``tokenizer_from_state`` takes)."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    return {"vocab": state["vocab"], "merges": state["merges"]}


def tokenizer_from_state(state: dict):
    """``Qwen2Tokenizer`` (Qwen2-VL's special tokens and chat template) over a BPE vocabulary."""
    from transformers import Qwen2Tokenizer

    vocab = state["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    qtok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )
    qtok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    qtok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return qtok


def _config(tokenizer, spec: DemoSpec):
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = ((len(tokenizer) + 63) // 64) * 64
    text_head_dim = spec.text_hidden // spec.text_heads
    half = text_head_dim // 2  # mrope sections (temporal, height, width) must sum to head_dim/2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    return ids, Qwen2VLConfig(
        text_config=dict(
            vocab_size=vocab,
            hidden_size=spec.text_hidden,
            intermediate_size=spec.text_hidden * 2,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.text_heads,
            num_key_value_heads=spec.text_kv_heads,
            max_position_embeddings=4096,
            rope_scaling={"type": "mrope", "mrope_section": mrope},
            tie_word_embeddings=True,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=spec.vision_depth,
            embed_dim=spec.vision_embed_dim,
            num_heads=spec.vision_heads,
            hidden_size=spec.text_hidden,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_chans=3,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )


def new_model(tokenizer, spec: DemoSpec, init_std: float | None):
    """The model with seeded weights: transformers' own init, then (``init_std``) every matrix
    redrawn from N(0, init_std)."""
    import torch
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    ids, cfg = _config(tokenizer, spec)
    torch.manual_seed(spec.seed)
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    if init_std is not None:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, init_std)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    return model


def processor_for(tokenizer, spec: DemoSpec):
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor

    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    )
    video_processor = None
    try:
        from transformers import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor()
    except Exception:  # video processing needs torchvision; images are all the demo uses
        video_processor = None
    return Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def build_model(model_dir: Path, tokenizer, spec: DemoSpec, weights: Path | None = None) -> None:
    """Write the model directory: random weights (transformers' default init is too narrow for a
    random model to answer differently per input, hence ``spec.init_std``), or ``weights`` (a
    safetensors file made for this tokenizer and spec: the trained demo model)."""
    if weights is None:
        model = new_model(tokenizer, spec, spec.init_std)
    else:
        from safetensors.torch import load_file

        model = new_model(tokenizer, spec, None)
        state = load_file(str(weights))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
        if missing or unexpected:
            raise ValueError(f"{weights}: weights do not fit the spec (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        model.tie_weights()
    model.save_pretrained(str(model_dir), safe_serialization=True)
    processor_for(tokenizer, spec).save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
