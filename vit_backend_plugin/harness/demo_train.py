"""Train the demo model so that it sees: the shipped weights under ``data/demo_model/``.

The tiny Qwen2-VL of :mod:`~vit_backend_plugin.harness.demo_model` (vision head_dim 80, text
head_dim 32), trained on items of the demo's own generator (:func:`demo_data.make_items`) with a
seed of their own, checked disjoint from the validation set (no training image, and no item, equals
a validation one), in two stages. First, captions: the image alone, answered "3 red circle"
(teaches the vision tower to see). Then the items, each exactly what lm-eval's ``mmmu_val``
gives the model through ``vllm-vlm``: lm-eval's own ``doc_to_text``/``doc_to_image``, its
interleaving of images and text, the processor's chat template with the generation prompt,
then the answer (a letter, or a count) and ``<|im_end|>``; the loss is on the answer only. The
evaluation generates greedily with transformers and scores with lm-eval's own
``process_results``; the demo scores it through lm-eval's ``vllm-vlm`` on vLLM's CPU engine.

Made by (one CPU thread, deterministic for a given torch build; about 20 minutes on a busy
two-core machine)::

    python -m vit_backend_plugin.harness.demo_train --out vit_backend_plugin/data/demo_model

which writes ``model.safetensors``, ``tokenizer_bpe.json`` (the byte-level BPE vocabulary and
merges) and ``manifest.json`` (sha256 of both, the command, the settings, the accuracy).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

TRAIN_SEED = 20240611  # the training items' generator seed (the validation set uses DemoSpec.seed)
# the settings that shaped the weights (recorded in the manifest; the command's defaults)
DEFAULTS = dict(items_per_subject=300, caption_steps=1200, steps=1800, batch=32, caption_mix=8,
                lr=2e-3, warmup=100, weight_decay=0.01, threads=1, torch_seed=0)
# Stage 1 (caption_steps): the image alone, answered by a caption ("3 red circle"): short
# sequences with the answer in three tokens teach the vision tower (and the decoder to look at
# it) far faster than letters at the end of a 90-token prompt, which at first a model learns to
# answer from the letters' prior alone. Stage 2 (steps): lm-eval's exact mmmu_val prompts, with
# caption_mix captions in each batch of them (the vision tower keeps its dense signal).
CAPTION_PROMPT = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
                  "<|im_start|>assistant\n")


def _image_digest(img) -> str:
    return hashlib.sha256(repr((img.mode, img.size)).encode() + img.tobytes()).hexdigest()


def item_digest(doc: dict) -> str:
    """What makes an item the same item: question, options, answer and every image's pixels."""
    h = hashlib.sha256()
    for k in ("question", "options", "answer", "question_type"):
        h.update(f"{k}={doc[k]}\n".encode())
    for k in range(1, 8):
        img = doc.get(f"image_{k}")
        h.update(b"-" if img is None else _image_digest(img).encode())
    return h.hexdigest()


def image_digests(doc: dict) -> set[str]:
    return {_image_digest(doc[f"image_{k}"]) for k in range(1, 8) if doc.get(f"image_{k}") is not None}


def validation_docs(spec) -> list[dict]:
    """The demo's validation items, as build_dataset generates them (same rng, same order)."""
    from vit_backend_plugin.harness.demo_data import make_items
    from vit_backend_plugin.harness.demo_tasks import mmmu_subject_tasks

    rng = random.Random(spec.seed)
    docs = []
    for subject in sorted(mmmu_subject_tasks()):
        docs += make_items(subject, spec, rng, spec.items_per_subject)
    return docs


def training_docs(spec, per_subject: int, seed: int = TRAIN_SEED,
                  exclude: list[dict] | None = None) -> list[dict]:
    """Training items: the same generator with its own seed; any item sharing an image (or being
    equal) with ``exclude`` is dropped."""
    from vit_backend_plugin.harness.demo_data import make_items
    from vit_backend_plugin.harness.demo_tasks import mmmu_subject_tasks

    banned_images = set().union(*(image_digests(d) for d in exclude or []))
    banned_items = {item_digest(d) for d in exclude or []}
    rng = random.Random(seed)
    docs = []
    for subject in sorted(mmmu_subject_tasks()):
        for d in make_items(subject, spec, rng, per_subject, split="train"):
            if image_digests(d) & banned_images or item_digest(d) in banned_items:
                continue
            docs.append(d)
    return docs


def caption_examples(spec, n: int, seed: int, banned_images: set[str]) -> list[tuple[str, list, str]]:
    """Stage 1's examples: a generated image (none equal to a validation image) and its caption."""
    from vit_backend_plugin.harness.demo_data import COLORS, SHAPES, _draw_image

    rng = random.Random(seed)
    out: list[tuple[str, list, str]] = []
    while len(out) < n:
        shape, color, count = rng.choice(SHAPES), rng.choice(list(COLORS)), rng.randint(1, 4)
        img = _draw_image(rng, spec, shape, color, count)
        if _image_digest(img) in banned_images:
            continue
        out.append((CAPTION_PROMPT, [img], f"{count} {color} {shape}"))
    return out


def lm_eval_context(doc: dict, processor, max_images: int = 2) -> tuple[str, list]:
    """The prompt string and images lm-eval's ``vllm-vlm`` (interleave on, chat template on)
    hands vLLM for an ``mmmu_val`` doc, built with lm-eval's own functions."""
    from lm_eval.models.utils import resize_image
    from lm_eval.tasks.mmmu import utils as mmmu

    text = mmmu.doc_to_text(doc)
    images = [resize_image(img, None, None, None) for img in mmmu.doc_to_image(doc)][:max_images]
    content, parts = [], text.split("<image>")
    for i, part in enumerate(parts):
        if part:
            content.append({"type": "text", "text": part})
        if i < len(parts) - 1 and i < max_images:
            content.append({"type": "image"})
    chat = [{"role": "user", "content": content}]
    prompt = processor.apply_chat_template(chat, add_generation_prompt=True,
                                           continue_final_message=False)
    return prompt, images


def score(doc: dict, response: str) -> float:
    """lm-eval's own mmmu scoring of one response."""
    from lm_eval.tasks.mmmu import utils as mmmu

    return mmmu.process_results(doc, [response])["acc"]


def _encode(batch: list[tuple[str, list, str]], processor, end: str):
    """Left-padded batch (every answer ends its row) and the answer tokens, answer + <|im_end|>:
    the loss needs the logits of the last few positions only."""
    import torch

    tok = processor.tokenizer
    texts = [p + a + end for p, _, a in batch]
    images = [img for _, imgs, _ in batch for img in imgs]
    tok.padding_side = "left"
    enc = processor(text=texts, images=images, padding=True, return_tensors="pt")
    answers = [tok(a + end, add_special_tokens=False)["input_ids"] for _, _, a in batch]
    k = max(len(a) for a in answers)
    target = torch.full((len(batch), k), -100, dtype=torch.long)
    for row, ans in enumerate(answers):
        assert enc["input_ids"][row, -len(ans):].tolist() == ans, "answer tokens not at the end"
        target[row, k - len(ans):] = torch.tensor(ans)
    return enc, target


def _loss(model, enc, target):
    import torch.nn.functional as F

    k = target.shape[1]
    logits = model(**enc, logits_to_keep=k + 1).logits[:, :-1]  # position t predicts token t+1
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                           ignore_index=-100)


def evaluate(model, processor, docs: list[dict], batch: int = 16) -> tuple[float, list[str]]:
    """Greedy answers (max 8 new tokens, as the demo config) scored by lm-eval's mmmu."""
    import torch

    tok = processor.tokenizer
    old_side = tok.padding_side
    tok.padding_side = "left"
    answers: list[str] = []
    try:
        for i in range(0, len(docs), batch):
            chunk = [lm_eval_context(d, processor) for d in docs[i:i + batch]]
            enc = processor(text=[p for p, _ in chunk], images=[im for _, ims in chunk for im in ims],
                            padding=True, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=8, do_sample=False)
            answers += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tok.padding_side = old_side
    acc = sum(score(d, a) for d, a in zip(docs, answers, strict=True)) / len(docs)
    return acc, answers


def train(spec, out: Path, *, items_per_subject: int, caption_steps: int, steps: int, batch: int,
          caption_mix: int, lr: float,
          warmup: int, weight_decay: float, threads: int, torch_seed: int,
          log_every: int = 50, eval_every: int = 500) -> dict:
    import torch

    from vit_backend_plugin.harness.demo_model import (
        build_tokenizer,
        new_model,
        processor_for,
    )

    settings = dict(items_per_subject=items_per_subject, caption_steps=caption_steps, steps=steps,
                    batch=batch, caption_mix=caption_mix, lr=lr,
                    warmup=warmup, weight_decay=weight_decay, threads=threads, torch_seed=torch_seed)
    torch.set_num_threads(threads)
    torch.manual_seed(torch_seed)
    val = validation_docs(spec)
    docs = training_docs(spec, items_per_subject, exclude=val)
    assert not {item_digest(d) for d in docs} & {item_digest(d) for d in val}
    corpus = [t for d in docs for t in (d["question"], d["options"], d["answer"])]
    tokenizer = build_tokenizer(corpus, spec)
    processor = processor_for(tokenizer, spec)
    model = new_model(tokenizer, spec, init_std=None)
    model.train()
    examples = []
    for d in docs:
        prompt, images = lm_eval_context(d, processor)
        examples.append((prompt, images, d["answer"]))
    end = "<|im_end|>"
    banned = set().union(*(image_digests(d) for d in val))
    captions = caption_examples(spec, caption_steps * batch + steps * caption_mix, TRAIN_SEED + 1,
                                banned)
    mixed = captions[caption_steps * batch:]
    total = caption_steps + steps
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))

    def train_step(chunk) -> float:
        """One optimiser step on chunk; its loss."""
        enc, target = _encode(chunk, processor, end)
        loss = _loss(model, enc, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        return loss.item()

    order_rng = random.Random(torch_seed)
    order: list[int] = []
    t0 = time.monotonic()
    running = None
    history = []
    for step in range(total):
        if step < caption_steps:
            loss = train_step(captions[step * batch:(step + 1) * batch])
            running = loss if running is None else 0.95 * running + 0.05 * loss
            if (step + 1) % log_every == 0:
                print(f"caption step {step + 1}/{caption_steps} loss {running:.4f} "
                      f"{time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
            if step + 1 == caption_steps:
                running = None
            continue
        if len(order) < batch:
            more = list(range(len(examples)))
            order_rng.shuffle(more)
            order += more
        idx, order = order[:batch], order[batch:]
        k = step - caption_steps
        loss = train_step([examples[i] for i in idx] + mixed[k * caption_mix:(k + 1) * caption_mix])
        running = loss if running is None else 0.95 * running + 0.05 * loss
        if (step + 1) % log_every == 0:
            print(f"step {step + 1}/{total} loss {running:.4f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < total:
            model.eval()
            acc, _ = evaluate(model, processor, val)
            model.train()
            history.append({"step": step + 1, "val_acc": acc, "loss": running})
            print(f"step {step + 1}: validation acc {acc:.4f}", file=sys.stderr, flush=True)
            _save(out / f"step{step + 1}", model, tokenizer, spec, settings, history, len(docs),
                  len(val), t0)
    model.eval()
    acc, _ = evaluate(model, processor, val)
    history.append({"step": total, "val_acc": acc, "loss": running})
    print(f"final validation acc (transformers, lm-eval's mmmu scoring): {acc:.4f}", file=sys.stderr)
    return _save(out, model, tokenizer, spec, settings, history, len(docs), len(val), t0)


def _save(out: Path, model, tokenizer, spec, settings: dict, history: list, n_train: int,
          n_val: int, t0: float) -> dict:
    import torch
    from safetensors.torch import save_file

    from vit_backend_plugin.harness.demo_model import tokenizer_state

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
             if k != "lm_head.weight"}  # tied to the embeddings
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "tokenizer_bpe.json").write_text(json.dumps(tokenizer_state(tokenizer)) + "\n")
    args = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items()
                    if k in DEFAULTS and v != DEFAULTS[k])
    manifest = {
        "what": "the vit-parity demo model (tiny Qwen2-VL, vision head_dim 80), trained to see",
        "command": ("python -m vit_backend_plugin.harness.demo_train --out "
                    "vit_backend_plugin/data/demo_model" + (f" {args}" if args else "")),
        "settings": {**settings, "train_seed": TRAIN_SEED},
        "spec": {k: v for k, v in asdict(spec).items() if k in MODEL_FIELDS},
        "training_items": n_train,
        "validation": {"items": n_val, "acc": history[-1]["val_acc"], "history": history,
                       "how": "transformers greedy, max 8 new tokens, lm-eval's mmmu process_results"},
        "versions": {"torch": torch.__version__, **_versions()},
        "seconds": round(time.monotonic() - t0),
        "sha256": {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
                   for name in ("model.safetensors", "tokenizer_bpe.json")},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# the DemoSpec fields the weights depend on (a spec that differs in one cannot load them)
MODEL_FIELDS = ("min_pixels", "max_pixels", "vision_embed_dim", "vision_heads", "vision_depth",
                "text_hidden", "text_layers", "text_heads", "text_kv_heads", "bpe_vocab")


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("transformers", "tokenizers", "lm_eval", "pillow")}


def main(argv: list[str] | None = None) -> int:
    from vit_backend_plugin.harness.demo_assets import DemoSpec

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    for k, v in DEFAULTS.items():
        p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    p.add_argument("--eval-every", type=int, default=500)
    a = p.parse_args(argv)
    kw = {k: getattr(a, k) for k in DEFAULTS}
    manifest = train(DemoSpec(trained=False), a.out, eval_every=a.eval_every, **kw)
    print(json.dumps({"validation_acc": manifest["validation"]["acc"], "out": str(a.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
