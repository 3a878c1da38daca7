"""How one arm is timed, in the worker process of :mod:`vit_backend_plugin.harness.speed_worker`.

A runner builds the arm's engine (``start``), runs untimed warm-up requests (``warmup``), then
times one round at a time on the parent's command (``round(r)``), so the rounds of all arms can
interleave; ``info`` is what throughput.json records of the process.

* engine ``vllm``, mode ``offline`` (:class:`OfflineRunner`): generation over random images
  exactly like ``vllm bench serve --dataset-name random-mm --backend openai-chat``: the prompts
  come from vLLM's own ``RandomMultiModalDataset`` (bucket config, items per request, random text
  of ``input_len`` tokens, ``output_len`` output tokens with ``ignore_eos``) as OpenAI-style chat
  messages, sent through ``LLM.chat``. Per round: requests/s, input tokens/s, mean and p99 time
  to first token (vLLM's per-request ``first_token_latency``). ``concurrency`` caps concurrent
  sequences (``max_num_seqs``). Images/s counts the images of a round over its wall time
  (host-side image preprocessing included); encoder images/s counts them over the time vLLM's
  own encoder timer (``enable_mm_processor_stats``) measured in encoder forwards. Every round
  draws new images (round r of every arm the same ones); prefix caching and the multimodal
  processor cache are off (recorded under ``engine_settings``), so rounds measure the encoder.
* engine ``vllm``, mode ``serve``: :class:`~vit_backend_plugin.harness.serve_bench.ServeRunner`.
* engine ``hf`` (:class:`HFRunner`): transformers with ``attn_implementation=<backend>``:
  vision-encoder images/s (``get_image_features`` on the processor's pixel values) and prefill
  tokens/s (one forward over the full multimodal prompt, no cache), in batches of ``concurrency``.

The warm-up (default: one full round's worth of requests) includes every image size, so
first-shape compiles and plan builds happen before the first timed round.
"""

from __future__ import annotations

import inspect
import platform
import statistics
import time
from typing import Any

from vit_backend_plugin.harness.engine_record import engine_config

# engine_args are lm-eval model_args; these are lm-eval's own (not vLLM / transformers) arguments.
LM_EVAL_ONLY_ARGS = frozenset({
    "max_images", "interleave", "image_width", "image_height", "image_max_side", "max_batch_size",
    "batch_size", "add_bos_token", "prefix_token_id", "lora_local_path", "max_gen_toks",
    "max_length", "chat_template_args", "enable_thinking", "think_end_token", "truncation",
    "logits_cache", "use_fast_tokenizer", "image_token_id", "image_string", "convert_img_format",
    "device_map", "parallelize", "backend", "peft", "delta", "autogptq", "gptqmodel", "device",
})
PROCESSOR_ARGS = ("min_pixels", "max_pixels")
# The throughput phase measures the encoder: identical images/prompts across repeats would hit
# vLLM's multimodal processor cache and prefix cache (repeats ran ~15x faster on CPU).
NO_CACHES = {"enable_prefix_caching": False, "mm_processor_cache_gb": 0}
VLLM_KEYS = ("images_per_s", "encoder_images_per_s", "requests_per_s", "input_tokens_per_s",
             "ttft_mean_ms", "ttft_p99_ms")
HF_KEYS = ("images_per_s", "prefill_tokens_per_s")


def warmup_requests(settings: dict[str, Any]) -> int:
    """The config's warm-up count; unset means one full round's worth."""
    w = settings.get("warmup")
    return settings["num_prompts"] if w is None else int(w)


def round_seed(spec: dict[str, Any], r: int) -> int:
    """Round r's random images and text: the same for every arm, new in every round."""
    return spec["seed"] + 1000 * (r + 1)


def median_metrics(repeats: list[dict[str, float | None]]) -> dict[str, float | None]:
    keys = repeats[0].keys() if repeats else []
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [r[k] for r in repeats if r.get(k) is not None]
        out[k] = float(statistics.median(vals)) if vals else None
    return out


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def image_plan(settings: dict[str, Any], n: int, seed: int) -> list[list[tuple[int, int]]]:
    """Per prompt, the (width, height) of each image, drawn from the size mix (seeded)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes = [tuple(s) for s in settings["image_sizes"]]
    mix = settings.get("image_mix") or [1.0] * len(sizes)
    p = np.asarray(mix, dtype=float) / float(sum(mix))
    k = settings.get("images_per_prompt", 1)
    return [[sizes[i] for i in rng.choice(len(sizes), size=k, p=p)] for _ in range(n)]


def random_image(rng, width: int, height: int):
    from PIL import Image

    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype="uint8"))


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor()}
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            idx = torch.cuda.current_device()
            info["device"] = torch.cuda.get_device_name(idx)
            info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(idx)))
        else:
            info["device"] = "cpu"
            info["cpu_threads"] = torch.get_num_threads()
    except Exception as e:  # pragma: no cover - device info is best effort
        info["error"] = str(e)
    return info


# --------------------------------------------------------------------------- vLLM
def vllm_prompts(tokenizer, settings: dict[str, Any], n: int, seed: int) -> list[list[dict]]:
    """``n`` chat conversations from vLLM's own random-mm data set (what
    ``vllm bench serve --dataset-name random-mm --backend openai-chat`` sends)."""
    from vllm.benchmarks.datasets import RandomMultiModalDataset

    k = settings["images_per_prompt"]
    mix = settings.get("image_mix") or [1.0] * len(settings["image_sizes"])
    # vLLM's bucket keys are (height, width, num_frames); ours are (width, height).
    bucket = {(h, w, 1): float(m) for (w, h), m in zip(settings["image_sizes"], mix, strict=True)}
    reqs = RandomMultiModalDataset(random_seed=seed).sample(
        tokenizer=tokenizer,
        num_requests=n,
        prefix_len=0,
        range_ratio=0.0,
        input_len=settings["input_len"],
        output_len=settings["output_len"],
        limit_mm_per_prompt={"image": k, "video": 0},
        base_items_per_request=k,
        num_mm_items_range_ratio=0.0,
        bucket_config=bucket,
        enable_multimodal_chat=True,
    )
    return [r.prompt for r in reqs]


class OfflineRunner:
    """vLLM's ``LLM`` in this process, timed one round at a time."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.s = spec["settings"]
        self.llm = None
        self.kwargs: dict[str, Any] = {}

    def start(self) -> None:
        from vllm import LLM, SamplingParams

        spec, s = self.spec, self.s
        k = s["images_per_prompt"]
        kwargs: dict[str, Any] = {
            "model": spec["model"],
            "trust_remote_code": spec["trust_remote_code"],
            "seed": spec["seed"],
            "disable_log_stats": False,  # per-request first_token_latency needs stats
            "limit_mm_per_prompt": {"image": k, "video": 0},
        }
        if spec["route"] == "engine_arg":
            kwargs["mm_encoder_attn_backend"] = spec["backend"]
        if s.get("concurrency"):
            kwargs["max_num_seqs"] = s["concurrency"]
        given = spec["engine_args"]
        kwargs.update({k2: v for k2, v in given.items()
                       if k2 not in LM_EVAL_ONLY_ARGS and k2 not in PROCESSOR_ARGS})
        proc = {a: given[a] for a in PROCESSOR_ARGS if a in given}  # as the serve mode passes them
        if proc:
            kwargs["mm_processor_kwargs"] = {**(kwargs.get("mm_processor_kwargs") or {}), **proc}
        kwargs.update(NO_CACHES)  # measure the encoder, not caches (after engine_args: always off)
        # vLLM's own encoder timer (synchronised wall time of each encoder forward, per request):
        # images/s of the ViT itself, free of host-side image preprocessing. It synchronises with
        # torch.accelerator, which a CUDA build of torch without a GPU cannot (vLLM's CPU platform).
        import torch

        kwargs["enable_mm_processor_stats"] = torch.cuda.is_available()
        self.kwargs = kwargs
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.params = SamplingParams(n=1, temperature=0.0, max_tokens=s["output_len"],
                                     ignore_eos=True, detokenize=False)

    def _prompts(self, n: int, seed: int, settings: dict[str, Any] | None = None):
        return vllm_prompts(self.tokenizer, settings or self.s, n, seed)

    def warmup(self) -> None:
        n = warmup_requests(self.s)
        if n == 0:
            return
        seed = self.spec["seed"] + 1
        # one request of every image size first (a size drawn only later would compile then)
        prompts = [p for i, size in enumerate(self.s["image_sizes"])
                   for p in self._prompts(1, seed + i, {**self.s, "image_sizes": [size],
                                                        "image_mix": None})]
        prompts += self._prompts(max(n - len(prompts), 1), seed)
        self.llm.chat(prompts, self.params, use_tqdm=False)
        encoder_forward_s(self.llm)  # reads and clears the engine's registry

    def round(self, r: int) -> dict[str, float | None]:
        s = self.s
        prompts = self._prompts(s["num_prompts"], round_seed(self.spec, r))
        n_images = s["num_prompts"] * s["images_per_prompt"]
        t0 = time.perf_counter()
        outs = self.llm.chat(prompts, self.params, use_tqdm=False)
        wall = time.perf_counter() - t0
        enc = encoder_forward_s(self.llm)
        in_tokens = sum(len(o.prompt_token_ids or []) for o in outs)
        ttft = [o.metrics.first_token_latency * 1000.0 for o in outs
                if getattr(o, "metrics", None) is not None and o.metrics.first_token_latency]
        return {
            "images_per_s": n_images / wall,
            "encoder_images_per_s": n_images / enc if enc else None,
            "encoder_forward_s": enc,
            "requests_per_s": len(outs) / wall,
            "input_tokens_per_s": in_tokens / wall,
            "input_tokens": in_tokens,
            "ttft_mean_ms": statistics.fmean(ttft) if ttft else None,
            "ttft_p99_ms": percentile(ttft, 99) if ttft else None,
            "wall_s": wall,
        }

    def info(self) -> dict[str, Any]:
        n_images = self.s["num_prompts"] * self.s["images_per_prompt"]
        engine_args = {k: v for k, v in self.kwargs.items() if k in self.spec["engine_args"]}
        return {
            "engine_settings": {**NO_CACHES, "images_per_repeat": n_images,
                                "encoder_timer": self.kwargs["enable_mm_processor_stats"],
                                "fresh_images_each_repeat": True,
                                "warmup_requests": warmup_requests(self.s)},
            "engine_config": engine_config(self.llm.llm_engine.vllm_config, engine_args),
        }

    def close(self) -> None:
        self.llm = None  # the engine core ends with this process


def encoder_forward_s(llm) -> float | None:
    """Seconds the engine's workers spent in encoder forwards since the last call (vLLM's
    ``enable_mm_processor_stats`` registry, which this read clears); None if not recorded."""
    if not llm.llm_engine.vllm_config.observability_config.enable_mm_processor_stats:
        return None
    per_worker = llm.llm_engine.collective_rpc("get_encoder_timing_stats")
    totals = [sum(float(v.get("encoder_forward_secs", 0.0)) for v in w.values()) for w in per_worker if w]
    return max(totals) if totals else None  # tensor-parallel workers run the encoder together


# --------------------------------------------------------------------------- transformers
def _torch_dtype(name: str | None):
    import torch

    if name in (None, "auto"):
        return "auto"
    return getattr(torch, {"bf16": "bfloat16", "fp16": "float16", "half": "float16",
                           "fp32": "float32", "float": "float32"}.get(name, name))


class HFRunner:
    """transformers in this process: the vision encoder and a full prefill, timed per round."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.s = spec["settings"]

    def start(self) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from vit_backend_plugin.harness import hf_attention

        spec = self.spec
        backend = spec["backend"]
        hf_attention.register(backend)
        torch.manual_seed(spec["seed"])
        self.device = spec.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        eargs = {k: v for k, v in spec["engine_args"].items() if k not in LM_EVAL_ONLY_ARGS}
        dtype = _torch_dtype(eargs.pop("dtype", None))
        proc_args = {k: eargs.pop(k) for k in PROCESSOR_ARGS if k in eargs}
        self.model = AutoModelForImageTextToText.from_pretrained(
            spec["model"], attn_implementation=backend, dtype=dtype,
            trust_remote_code=spec["trust_remote_code"], **eargs,
        ).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(
            spec["model"], trust_remote_code=spec["trust_remote_code"], **proc_args)
        self.batch = self.s.get("concurrency") or 1
        self.feat_params = set(inspect.signature(self.model.get_image_features).parameters)

    def _prompts(self, n: int, seed: int):
        import numpy as np

        rng = np.random.default_rng(seed)
        words = ["the", "image", "shows", "a", "figure", "with", "shapes", "and", "colors"]
        out = []
        for sizes in image_plan(self.s, n, seed):
            images = [random_image(rng, w, h) for (w, h) in sizes]
            k = self.s["input_len"]
            text = " ".join(rng.choice(words, size=k)) if k else "Describe the image."
            messages = [{"role": "user", "content": [{"type": "image"} for _ in images]
                         + [{"type": "text", "text": text}]}]
            chat = self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False)
            out.append((chat, images))
        return out

    def _pass(self, items) -> tuple[float, int, float, int]:
        """(encoder seconds, images, prefill seconds, tokens) over items, in batches."""
        import torch

        model, device = self.model, self.device
        enc_s = pre_s = 0.0
        n_img = n_tok = 0
        for i in range(0, len(items), self.batch):
            chunk = items[i: i + self.batch]
            enc = self.processor(text=[t for t, _ in chunk],
                                 images=[img for _, imgs in chunk for img in imgs],
                                 return_tensors="pt", padding=True).to(device)
            inputs = dict(enc)
            if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            vis = {k: v for k, v in inputs.items() if k in self.feat_params}
            with torch.inference_mode():
                _sync(device)
                t0 = time.perf_counter()
                model.get_image_features(**vis)
                _sync(device)
                t1 = time.perf_counter()
                model(**inputs, use_cache=False)
                _sync(device)
                t2 = time.perf_counter()
            enc_s += t1 - t0
            pre_s += t2 - t1
            n_img += sum(len(imgs) for _, imgs in chunk)
            n_tok += int(enc["attention_mask"].sum())
        return enc_s, n_img, pre_s, n_tok

    def warmup(self) -> None:
        n = warmup_requests(self.s)
        if n:
            self._pass(self._prompts(n, self.spec["seed"] + 1))

    def round(self, r: int) -> dict[str, float | None]:
        enc_s, n_img, pre_s, n_tok = self._pass(self._prompts(self.s["num_prompts"],
                                                              round_seed(self.spec, r)))
        return {"images_per_s": n_img / enc_s if enc_s > 0 else None,
                "prefill_tokens_per_s": n_tok / pre_s if pre_s > 0 else None,
                "encoder_s": enc_s, "prefill_s": pre_s}

    def info(self) -> dict[str, Any]:
        return {"batch_size": self.batch, "device_used": str(self.device)}

    def close(self) -> None:
        self.model = None


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def make_runner(spec: dict[str, Any], log_dir):
    """The runner for the spec's engine and mode."""
    if spec["engine"] == "hf":
        return HFRunner(spec)
    if spec["settings"].get("mode") == "serve":
        from vit_backend_plugin.harness.serve_bench import ServeRunner

        return ServeRunner(spec, log_dir)
    return OfflineRunner(spec)


def metric_keys(engine: str) -> tuple[str, ...]:
    return VLLM_KEYS if engine == "vllm" else HF_KEYS
