"""This plugin's ViT kernels as transformers attention implementations (engine ``hf``).

``register(name)`` adds ``name`` (e.g. ``vit_triton``) to transformers' ``AttentionInterface``,
so ``from_pretrained(..., attn_implementation="vit_triton")`` (lm-eval's ``hf-multimodal``
passes ``attn_implementation`` from ``--model_args``) routes the *vision tower's* bidirectional,
mask-free attention to the plugin's varlen kernel (:func:`vit_backend_plugin.kernels.registry.get_kernel`).
Every other call (the causal language model, masked attention, non-CUDA tensors) goes to
transformers' own SDPA implementation with SDPA's masks, so only the ViT attention changes
between ``sdpa`` and a plugin backend.
"""

from __future__ import annotations


def _is_bidirectional(module, is_causal) -> bool:
    if is_causal is not None:
        return not is_causal
    return not getattr(module, "is_causal", True)


def make_attention(kernel_name: str):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from vit_backend_plugin.kernels.registry import get_kernel

    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                  is_causal=None, **kwargs):
        if (
            attention_mask is not None
            or not _is_bidirectional(module, is_causal)
            or not query.is_cuda
            or dropout
        ):
            return sdpa_attention_forward(
                module, query, key, value, attention_mask,
                dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs,
            )
        # transformers: [batch, heads, seq, head_dim]; the varlen contract: [tokens, heads, head_dim]
        b, h, s, d = query.shape
        q = query.transpose(1, 2).reshape(b * s, h, d).contiguous()
        k = key.transpose(1, 2).reshape(b * s, key.shape[1], d).contiguous()
        v = value.transpose(1, 2).reshape(b * s, value.shape[1], d).contiguous()
        cu = torch.arange(0, (b + 1) * s, s, dtype=torch.int32, device=query.device)
        scale = scaling if scaling is not None else d ** -0.5
        out = get_kernel(kernel_name)(q, k, v, cu, s, scale)
        return out.reshape(b, s, h, d), None  # transformers expects [batch, seq, heads, head_dim]

    attention.__name__ = f"{kernel_name.lower()}_attention"
    return attention


def hf_plugin_backends() -> dict[str, str]:
    """lower-case transformers attn_implementation name -> plugin kernel name."""
    from vit_backend_plugin.kernels.registry import PLUGIN_BACKENDS

    return {name.lower(): name for name in PLUGIN_BACKENDS}


def register(name: str) -> bool:
    """Register ``name`` if it is one of the plugin's kernels; False when it is not ours."""
    kernel = hf_plugin_backends().get(name)
    if kernel is None:
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(name, make_attention(kernel))
    # Without a mask function transformers treats an unknown implementation as mask-free (like
    # vLLM/TGI): padded batches would then attend to padding. Ours falls back to SDPA for every
    # masked/causal call, so it takes exactly SDPA's masks.
    AttentionMaskInterface.register(name, sdpa_mask)
    return True
