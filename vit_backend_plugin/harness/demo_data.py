"""The demo's data: a tiny MMMU-format data set with generated images.

The ``MMMU/MMMU`` schema (id, question, options, explanation, image_1..image_7, img_type, answer,
topic_difficulty, question_type, subfield), one config per MMMU subject (the subjects lm-eval's
``mmmu_val`` uses, read from its installed task files), a ``validation`` split, laid out like a
hub repo (parquet per config/split + README.md ``configs:``) so ``datasets.load_dataset(dir,
name=subject, split="validation")`` works.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from vit_backend_plugin.harness.demo_tasks import mmmu_subject_tasks

if TYPE_CHECKING:  # demo_assets imports this module: no import cycle at run time
    from vit_backend_plugin.harness.demo_assets import DemoSpec

SHAPES = ["circle", "square", "triangle", "cross", "diamond", "bar"]
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 60, 180),
    "orange": (240, 140, 20),
}


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith("s") else "s")


def _draw_image(rng: random.Random, spec: DemoSpec, shape: str, color: str, count: int):
    """``count`` shapes, one per cell of a 2 x 2 grid (cells at random), each nearly filling its
    cell: they never overlap, so "how many" has one answer, and each is at least 16 px across (a
    patch is 14)."""
    from PIL import Image, ImageDraw

    w = rng.randint(spec.image_min, spec.image_max)
    h = rng.randint(spec.image_min, spec.image_max)
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    fill = COLORS[color]
    cw, ch = w // 2, h // 2
    for cell in rng.sample(range(4), count):
        x0, y0 = (cell % 2) * cw, (cell // 2) * ch
        big = max(8, min(cw, ch) // 2 - 2)  # the cell's inscribed size (a 2 px margin)
        r = rng.randint(max(8, big - 4), big)
        cx, cy = rng.randint(x0 + r, x0 + cw - r), rng.randint(y0 + r, y0 + ch - r)
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


def make_items(subject: str, spec: DemoSpec, rng: random.Random, n: int,
               split: str = "validation") -> list[dict]:
    """``n`` MMMU-format items of one subject. Every answer needs the image and nothing else:
    which shape (one image), which colour (two images: the question names the first), each with
    every shape or colour as an option in one fixed order (A-F), and how many (open, 1 to 4);
    shapes, colours and counts are uniform, so no letter or number is likelier than another."""
    pretty = subject.replace("_", " ")
    colors = list(COLORS)
    letters = "ABCDEFGHI"
    items = []
    for i in range(n):
        shape, color = rng.choice(SHAPES), rng.choice(colors)
        count = rng.randint(1, 4)
        images: dict[str, object] = {f"image_{k}": None for k in range(1, 8)}
        images["image_1"] = _draw_image(rng, spec, shape, color, count)
        kind = i % 3  # 0: which shape, 1: which colour (two images), 2: how many (open)
        if kind == 0:
            question = f"Which shape appears in this {pretty} figure? <image 1>"
            options, answer, qtype = list(SHAPES), letters[SHAPES.index(shape)], "multiple-choice"
        elif kind == 1:
            other = rng.choice([c for c in colors if c != color])
            images["image_2"] = _draw_image(rng, spec, rng.choice(SHAPES), other, rng.randint(1, 4))
            question = (
                f"<image 1> and <image 2> come from a {pretty} exam. "
                f"Which colour are the shapes in <image 1>?"
            )
            options, answer, qtype = colors, letters[colors.index(color)], "multiple-choice"
        else:
            question = f"<image 1> In this {pretty} figure, how many {_plural(shape)} are drawn?"
            options, answer, qtype = [], str(count), "open"
        items.append(
            {
                "id": f"{split}_{subject}_{i + 1}",
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


def _make_items(subject: str, spec: DemoSpec, rng: random.Random) -> list[dict]:
    return make_items(subject, spec, rng, spec.items_per_subject)


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
