"""Engine-faithful candidates for `vit-parity bench-kernels`: every backend exactly as vLLM 0.32
runs it inside a vision tower.

* vLLM's CUDA platform is imported first, as in every engine process: ``vllm/platforms/cuda.py``
  disables cuDNN SDPA globally at import, so torch SDPA dispatches as it does in the engine.
* The plugin is loaded the way vLLM loads it (``load_general_plugins``), so the plugin's
  backends run through its ``MMEncoderAttention`` replacement and its custom op.
* One ``MMEncoderAttention`` per backend, built with the backend named (``VIT_ATTN_BACKEND``,
  which the plugin's resolver honours like ``--mm-encoder-attn-backend``); ``PICK`` is built
  with none: the resolver's per-process choice.
* Called as Qwen2.5-VL's vision blocks call it: q/k/v ``[1, tokens, heads, head_dim]`` (q and k
  contiguous after RoPE, v a strided view of the packed qkv tensor), ``cu_seqlens`` int32 on the
  GPU, ``max_seqlen`` a CPU int32 scalar from ``MMEncoderAttention.compute_max_seqlen``.
  TORCH_SDPA therefore runs one SDPA call per sequence after a host ``.tolist()``, FLASH_ATTN
  runs ``vllm.vllm_flash_attn`` with the FA version vLLM picks (FA3 on Hopper), TRITON_ATTN runs
  the installed vLLM's kernel.
"""

from __future__ import annotations

# Backends measured as vLLM layers. FLASHINFER needs a cuDNN workspace and bucketed lengths
# (vLLM's own); it is listed when flashinfer imports.
LAYER_BACKENDS = ("TORCH_SDPA", "FLASH_ATTN", "TRITON_ATTN", "FLASHINFER",
                  "VIT_TRITON", "VIT_AUTO", "TORCH_SDPA_CUDNN")


def stock_choices(torch, heads_dtypes: set[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """What stock vLLM picks per (head_size, dtype): asked BEFORE the plugin patches the platform."""
    from vllm.platforms import current_platform

    from vit_backend_plugin import plugin

    if plugin.status()["attempted"]:
        raise RuntimeError("stock_choices must run before the plugin is loaded")
    return {(h, d): current_platform.get_vit_attn_backend(h, getattr(torch, d)).name
            for h, d in heads_dtypes}


def load_plugin() -> dict:
    import vllm.plugins

    vllm.plugins.load_general_plugins()
    from vit_backend_plugin.plugin import status

    return status()


def build_layer(torch, backend: str | None, heads: int, kv_heads: int, head_dim: int, dtype):
    """The layer a model builds; ``backend`` named through the plugin's ``VIT_ATTN_BACKEND`` (the
    resolver honours it like ``--mm-encoder-attn-backend``; the layer comes out the same)."""
    import os

    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention

    old_dtype, old_env = torch.get_default_dtype(), os.environ.pop("VIT_ATTN_BACKEND", None)
    torch.set_default_dtype(dtype)  # models build their layers under the model dtype
    if backend is not None:
        os.environ["VIT_ATTN_BACKEND"] = backend
    try:
        with set_current_vllm_config(VllmConfig()):
            return MMEncoderAttention(num_heads=heads, head_size=head_dim, num_kv_heads=kv_heads)
    finally:
        torch.set_default_dtype(old_dtype)
        os.environ.pop("VIT_ATTN_BACKEND", None)
        if old_env is not None:
            os.environ["VIT_ATTN_BACKEND"] = old_env


def layer_candidate(torch, layer, lens: list[int]):
    """fn(inputs) -> out [tokens, heads, head_dim], calling the layer as a vision block does."""
    import numpy as np
    from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention

    cu_np = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    max_seqlen = torch.tensor(MMEncoderAttention.compute_max_seqlen(layer.attn_backend, cu_np),
                              dtype=torch.int32)  # CPU scalar, as Qwen2.5-VL keeps it

    def fn(x):
        out = layer(x["q"][None], x["k"][None], x["v"][None], cu_seqlens=x["cu"], max_seqlen=max_seqlen)
        return out[0]

    return fn


def engine_candidates(torch, shape, dtype, names: list[str], cache: dict) -> dict:
    """name -> (fn | None, note) for the layer backends in ``names`` plus ``PICK``."""
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    out = {}
    for name in [n for n in names if n in LAYER_BACKENDS] + ["PICK"]:
        key = (name, shape.heads, shape.kv_heads, shape.head_dim, dtype)
        try:
            if key not in cache:
                if name != "PICK" and name not in AttentionBackendEnum.__members__:
                    raise LookupError(f"{name} is not a vLLM backend name here")
                cache[key] = build_layer(torch, None if name == "PICK" else name,
                                         shape.heads, shape.kv_heads, shape.head_dim, dtype)
            layer = cache[key]
            note = "vllm layer" + (f": {layer.attn_backend.name}" if name == "PICK" else "")
            out[name] = (layer_candidate(torch, layer, shape.lens), note)
        except Exception as e:  # noqa: BLE001 -- an unusable backend is a result, not a crash
            msg = str(e).splitlines()[0][:160] if str(e) else ""
            out[name] = (None, f"unavailable: {type(e).__name__}: {msg}")
    return out


def picked_backend(cache: dict, shape, dtype) -> str | None:
    layer = cache.get(("PICK", shape.heads, shape.kv_heads, shape.head_dim, dtype))
    return layer.attn_backend.name if layer is not None else None
