"""The embedded offline default: a tiny random Qwen2-VL and a tiny MMMU-format data set, built locally.

Nothing here touches the network. Everything is generated once and cached under
``$VIT_PARITY_CACHE/demo`` (default ``$XDG_CACHE_HOME/vit_backend_plugin/demo``), keyed by a hash of the
generator settings, and built into a temporary directory that is renamed into place only when
complete (an interrupted build is never picked up).

* ``model/``: ``Qwen2VLForConditionalGeneration`` (a real architecture that transformers and
  vLLM 0.32 both support), randomly initialised, vision head_dim 80 (embed_dim 160 / 2 heads:
  the seed-001 case that is not a multiple of 32), a byte-level BPE tokenizer trained here on
  the data set's own text plus the Qwen2-VL special tokens, wrapped in ``Qwen2Tokenizer``, a
  ``Qwen2VLImageProcessor`` with small min/max pixels, a ``Qwen2VLProcessor`` and the Qwen2-VL
  chat template.
* ``mmmu/``: the ``MMMU/MMMU`` schema (id, question, options, explanation, image_1..image_7,
  img_type, answer, topic_difficulty, question_type, subfield), one config per MMMU subject
  (the 30 subjects lm-eval's ``mmmu_val`` uses, read from the installed task files), a
  ``validation`` split with generated images, laid out like a hub repo (parquet per
  config/split + README.md ``configs:``) so ``datasets.load_dataset(dir, name=subject,
  split="validation")`` works.
* ``tasks/``: an lm-eval ``--include_path`` whose yaml files ``include`` lm-eval's own installed
  ``mmmu_val_<subject>`` task files and override only ``dataset_path``: lm-eval's MMMU prompt,
  parsing and scoring are used unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from vit_backend_plugin.common.files import atomic_write_text

DEMO_GENERATOR_VERSION = 3  # 3: text head_dim 32 (vLLM's CPU attention needs >= 32)

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

SHAPES = ["circle", "square", "triangle", "cross", "diamond", "bar"]
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 60, 180),
    "orange": (240, 140, 20),
}


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


# --------------------------------------------------------------------------- lm-eval MMMU tasks
def mmmu_task_dir() -> Path:
    """lm-eval's installed MMMU task directory (the files we include, never copy)."""
    import lm_eval.tasks

    path = Path(lm_eval.tasks.__file__).parent / "mmmu"
    if not (path / "_template_yaml").is_file():
        raise RuntimeError(f"lm-eval's MMMU task files not found under {path}")
    return path


def mmmu_subject_tasks() -> dict[str, tuple[str, Path]]:
    """subject config name -> (lm-eval task name, task yaml), from lm-eval's own mmmu_*.yaml."""
    import yaml

    out: dict[str, tuple[str, Path]] = {}
    for path in sorted(mmmu_task_dir().glob("mmmu_*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        if isinstance(cfg, dict) and "task" in cfg and "dataset_name" in cfg:
            out[cfg["dataset_name"]] = (cfg["task"], path)
    if not out:
        raise RuntimeError("no mmmu_<subject>.yaml task files found in lm-eval's MMMU directory")
    return out


def write_task_overrides(tasks_dir: Path, data_dir: Path) -> None:
    """One yaml per MMMU subject task: include lm-eval's file, override dataset_path only."""
    tasks_dir.mkdir(parents=True, exist_ok=True)
    for _subject, (task, path) in mmmu_subject_tasks().items():
        text = (
            "# Generated by vit-parity demo: lm-eval's own MMMU task, pointed at local data.\n"
            f"include: {json.dumps(str(path))}\n"
            f"dataset_path: {json.dumps(str(data_dir))}\n"
        )
        target = tasks_dir / f"{task}.yaml"
        try:
            if target.read_text() == text:
                continue  # unchanged: keep the mtime (the task-name cache keys on it)
        except OSError:
            pass
        atomic_write_text(target, text)


# --------------------------------------------------------------------------- data set
def _draw_image(rng: random.Random, spec: DemoSpec, shape: str, color: str, count: int):
    from PIL import Image, ImageDraw

    w = rng.randint(spec.image_min, spec.image_max)
    h = rng.randint(spec.image_min, spec.image_max)
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    fill = COLORS[color]
    for _ in range(count):
        r = rng.randint(6, max(7, min(w, h) // 5))
        cx, cy = rng.randint(r, w - r), rng.randint(r, h - r)
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        elif shape == "diamond":
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
        elif shape == "cross":
            draw.rectangle((cx - r, cy - r // 3, cx + r, cy + r // 3), fill=fill)
            draw.rectangle((cx - r // 3, cy - r, cx + r // 3, cy + r), fill=fill)
        else:  # bar
            draw.rectangle((cx - r, cy - r // 4, cx + r, cy + r // 4), fill=fill)
    return img


def _make_items(subject: str, spec: DemoSpec, rng: random.Random) -> list[dict]:
    pretty = subject.replace("_", " ")
    items = []
    for i in range(spec.items_per_subject):
        shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
        count = rng.randint(1, 4)
        images: dict[str, object] = {f"image_{k}": None for k in range(1, 8)}
        images["image_1"] = _draw_image(rng, spec, shape, color, count)
        kind = i % 3  # 0: one image, 1: two images, 2: open (short answer) question
        if kind == 2:
            question = f"<image 1> In this {pretty} figure, how many {color} {shape}s are drawn?"
            options, answer, qtype = [], str(count), "open"
        else:
            choices = rng.sample(SHAPES, 4)
            if shape not in choices:
                choices[rng.randrange(4)] = shape
            answer = "ABCD"[choices.index(shape)]
            options, qtype = choices, "multiple-choice"
            if kind == 1:
                images["image_2"] = _draw_image(rng, spec, rng.choice(SHAPES), color, 1)
                question = (
                    f"<image 1> and <image 2> come from a {pretty} exam. "
                    f"Which shape is drawn in <image 1>?"
                )
            else:
                question = f"Which {color} shape appears in this {pretty} figure? <image 1>"
        items.append(
            {
                "id": f"validation_{subject}_{i + 1}",
                "question": question,
                "options": str(options),  # MMMU stores the list's Python repr
                "explanation": "",
                **images,
                "img_type": str(["Diagrams"]),
                "answer": answer,
                "topic_difficulty": ["Easy", "Medium", "Hard"][i % 3],
                "question_type": qtype,
                "subfield": f"{pretty} shapes",
            }
        )
    return items


def _mmmu_features():
    from datasets import Features, Image, Value

    cols = {
        "id": Value("string"),
        "question": Value("string"),
        "options": Value("string"),
        "explanation": Value("string"),
    }
    cols.update({f"image_{k}": Image() for k in range(1, 8)})
    cols.update(
        {
            "img_type": Value("string"),
            "answer": Value("string"),
            "topic_difficulty": Value("string"),
            "question_type": Value("string"),
            "subfield": Value("string"),
        }
    )
    return Features(cols)


def build_dataset(data_dir: Path, spec: DemoSpec) -> list[str]:
    """Write the MMMU-format data set; returns all text (for training the tokenizer)."""
    import datasets
    from datasets import Dataset

    datasets.disable_progress_bars()
    rng = random.Random(spec.seed)
    features = _mmmu_features()
    subjects = sorted(mmmu_subject_tasks())
    corpus: list[str] = []
    readme = ["---", "configs:"]
    for subject in subjects:
        items = _make_items(subject, spec, rng)
        cols = {name: [it[name] for it in items] for name in features}
        ds = Dataset.from_dict(cols, features=features)
        out = data_dir / subject / "validation-00000-of-00001.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(out))
        readme += [
            f"- config_name: {subject}",
            "  data_files:",
            "  - split: validation",
            f"    path: {subject}/validation-*",
        ]
        for it in items:
            corpus.append(it["question"])
            corpus.extend(eval_options(it["options"]))
            corpus.append(it["answer"])
    readme += [
        "---",
        "",
        "# Tiny MMMU-format data set (generated by `vit-parity demo`)",
        "",
        "Same fields, subject configs and split as `MMMU/MMMU`, with generated images.",
        "Randomly generated; only for exercising the evaluation pipeline offline.",
        "",
    ]
    (data_dir / "README.md").write_text("\n".join(readme))
    return corpus


def eval_options(options: str) -> list[str]:
    import ast

    return list(ast.literal_eval(options))


# --------------------------------------------------------------------------- tokenizer + model
def build_tokenizer(corpus: list[str], spec: DemoSpec):
    """Byte-level BPE trained here (no download), wrapped in transformers' Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
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
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
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


def build_model(model_dir: Path, tokenizer, spec: DemoSpec) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = ((len(tokenizer) + 63) // 64) * 64
    text_head_dim = spec.text_hidden // spec.text_heads
    half = text_head_dim // 2  # mrope sections (temporal, height, width) must sum to head_dim/2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    cfg = Qwen2VLConfig(
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
    torch.manual_seed(spec.seed)
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    # transformers' default init (std 0.02) makes a random model print the same token for every
    # input; a wider init makes answers depend on the image and text, so backends that compute
    # attention differently can actually disagree (what the parity check is for).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, spec.init_std)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(str(model_dir), safe_serialization=True)
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    )
    video_processor = None
    try:
        from transformers import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor()
    except Exception:  # video processing needs torchvision; images are all the demo uses
        video_processor = None
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))


# --------------------------------------------------------------------------- entry point
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
