"""Out-of-tree MMEncoderAttention: stock backends run exactly as in vLLM; the plugin's own
backends (VIT_TRITON, TORCH_SDPA_CUDNN, FLASH_ATTN_UPSTREAM, XFORMERS) run through one
registered custom op so torch.compile'd vision towers treat them like vLLM's own ViT wrappers.
"""

from __future__ import annotations

import os

import torch
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vllm.utils.torch_utils import direct_register_custom_op
from vllm.v1.attention.backends.registry import AttentionBackendEnum

from vit_backend_plugin.plugin_kernels import NEEDS_MAX_SEQLEN, PLUGIN_BACKENDS, get_kernel


class PluginVitBackend:
    """Class path behind the plugin's AttentionBackendEnum members. They are ViT-only: vLLM's
    decoder selector never lists them, and this says so if someone asks."""

    @classmethod
    def get_name(cls) -> str:
        return "VIT_PLUGIN"

    @classmethod
    def supports_head_size(cls, head_size: int) -> bool:
        return False  # not a decoder backend; the plugin's resolver owns ViT choices


def register_enum_members() -> None:
    for name in PLUGIN_BACKENDS:
        if name not in AttentionBackendEnum.__members__:
            AttentionBackendEnum.register(name, f"{__name__}.PluginVitBackend")


def plugin_backend_name(backend: object) -> str | None:
    name = getattr(backend, "name", None)
    return name if name in PLUGIN_BACKENDS else None


def _vit_plugin_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str, scale: float,
    cu_seqlens: torch.Tensor, max_seqlen: int,
) -> torch.Tensor:
    return get_kernel(backend)(q, k, v, cu_seqlens, max_seqlen, scale)


def _vit_plugin_attention_fake(q, k, v, backend, scale, cu_seqlens, max_seqlen):
    return torch.empty_like(q, memory_format=torch.contiguous_format)


_OP_REGISTERED = False


def register_custom_op() -> None:
    global _OP_REGISTERED
    if _OP_REGISTERED or hasattr(torch.ops.vllm, "vit_plugin_attention"):
        _OP_REGISTERED = True
        return
    direct_register_custom_op(
        op_name="vit_plugin_attention",
        op_func=_vit_plugin_attention,
        fake_impl=_vit_plugin_attention_fake,
    )
    _OP_REGISTERED = True


def _as_int(max_seqlen, cu_seqlens: torch.Tensor) -> int:
    if isinstance(max_seqlen, torch.Tensor):
        max_seqlen = int(max_seqlen.item()) if max_seqlen.numel() else 0
    if not max_seqlen:
        # A model that computed no max for a backend it doesn't know: derive it (one sync).
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max().item()) if cu_seqlens.numel() > 1 else 0
    return int(max_seqlen)


def _interpreted_explicit_choice(layer, backend: str) -> bool:
    """True when Triton's interpreter is on and ``backend`` is not what the resolver picks
    automatically for this layer on CPU (so the user chose it). Decided once per layer."""
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return False
    explicit = layer.__dict__.get("_vit_plugin_cpu_explicit")
    if explicit is None:
        from vit_backend_plugin import resolver
        from vit_backend_plugin.backends import normalize_dtype
        from vit_backend_plugin.probe import runtime_features

        auto = resolver.resolve(resolver.ResolveRequest(
            head_size=layer.head_size, dtype=normalize_dtype(layer.dtype), platform="cpu",
            features=runtime_features("cpu"))).chosen
        explicit = layer.__dict__["_vit_plugin_cpu_explicit"] = auto != backend
    return explicit


class PluginMMEncoderAttention(MMEncoderAttention):
    """Registered with ``MMEncoderAttention.register_oot``: every ``MMEncoderAttention(...)``
    built by a model is one of these."""

    def forward_cuda(self, query, key, value, cu_seqlens=None, max_seqlen=None,
                     sequence_lengths=None):
        backend = plugin_backend_name(self.attn_backend)
        if backend is None:
            return super().forward_cuda(query, key, value, cu_seqlens, max_seqlen, sequence_lengths)
        return self.forward_plugin(backend, query, key, value, cu_seqlens, max_seqlen)

    def forward_cpu(self, query, key, value, cu_seqlens=None, max_seqlen=None,
                    sequence_lengths=None):
        """Stock on CPU, except a plugin backend the user chose explicitly with Triton's
        interpreter on (TRITON_INTERPRET=1): then our kernel runs, interpreted (slow; never
        automatic), so CPU runs exercise it inside a real engine."""
        backend = plugin_backend_name(self.attn_backend)
        if backend is not None and _interpreted_explicit_choice(self, backend):
            return self.forward_plugin(backend, query, key, value, cu_seqlens, max_seqlen)
        return super().forward_cpu(query, key, value, cu_seqlens, max_seqlen, sequence_lengths)

    def forward_plugin(self, backend: str, query, key, value, cu_seqlens=None, max_seqlen=None):
        """Same input/output contract as vLLM's ViT wrappers: (b, s, hidden) or (b, s, h, d)."""
        bsz, q_len = query.shape[:2]
        is_reshaped = query.dim() != 4
        query, key, value = self.view_qkv_to_4d(query, key, value, bsz, q_len, key.shape[1])
        q, k, v = (x.reshape(-1, x.shape[-2], x.shape[-1]) for x in (query, key, value))
        if cu_seqlens is None:
            cu_seqlens = torch.arange(0, (bsz + 1) * q_len, q_len, dtype=torch.int32, device=q.device)
            max_len = q_len
        else:
            cu_seqlens = cu_seqlens.to(device=q.device, dtype=torch.int32)
            max_len = _as_int(max_seqlen, cu_seqlens)
        out = torch.ops.vllm.vit_plugin_attention(
            q, k, v, backend, float(self.scale), cu_seqlens, max_len
        )
        out = out.view(bsz, q_len, self.num_heads, self.head_size)
        return out.reshape(bsz, q_len, -1) if is_reshaped else out


_ORIG_COMPUTE_MAX_SEQLEN = None


def patch_compute_max_seqlen() -> None:
    """Models ask MMEncoderAttention.compute_max_seqlen for the max length only for backends it
    knows; give the plugin's kernels that need it the same treatment as TRITON_ATTN."""
    global _ORIG_COMPUTE_MAX_SEQLEN
    if _ORIG_COMPUTE_MAX_SEQLEN is not None:
        return
    orig = MMEncoderAttention.__dict__["compute_max_seqlen"].__func__

    def compute_max_seqlen(cls, attn_backend, cu_seqlens):
        if getattr(attn_backend, "name", None) in NEEDS_MAX_SEQLEN:
            attn_backend = AttentionBackendEnum.TRITON_ATTN
        return orig(cls, attn_backend, cu_seqlens)

    MMEncoderAttention.compute_max_seqlen = classmethod(compute_max_seqlen)
    _ORIG_COMPUTE_MAX_SEQLEN = orig


def unpatch_compute_max_seqlen() -> None:
    global _ORIG_COMPUTE_MAX_SEQLEN
    if _ORIG_COMPUTE_MAX_SEQLEN is not None:
        MMEncoderAttention.compute_max_seqlen = classmethod(_ORIG_COMPUTE_MAX_SEQLEN)
        _ORIG_COMPUTE_MAX_SEQLEN = None


def register_oot() -> None:
    from vllm.model_executor.custom_op import op_registry_oot

    if op_registry_oot.get("MMEncoderAttention") is PluginMMEncoderAttention:
        return
    if "MMEncoderAttention" in op_registry_oot:
        raise RuntimeError(
            f"another plugin already replaced MMEncoderAttention with "
            f"{op_registry_oot['MMEncoderAttention'].__qualname__}"
        )
    MMEncoderAttention.register_oot(PluginMMEncoderAttention)


def unregister_oot() -> None:
    from vllm.model_executor.custom_op import op_registry_oot

    if op_registry_oot.get("MMEncoderAttention") is PluginMMEncoderAttention:
        del op_registry_oot["MMEncoderAttention"]
