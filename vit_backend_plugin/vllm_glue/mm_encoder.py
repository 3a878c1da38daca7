"""Out-of-tree MMEncoderAttention: stock backends run exactly as in vLLM; the plugin's own
backends (VIT_TRITON, VIT_AUTO, TORCH_SDPA_CUDNN, FLASH_ATTN_UPSTREAM, XFORMERS) run through one
registered custom op so torch.compile'd vision towers treat them like vLLM's own ViT wrappers
(every host read of max_seqlen / lengths happens inside that op, as in vLLM's wrappers).

A plugin kernel that fails at run time (missing file, compile error, unsupported shape) never
stops the engine when the plugin chose it: that layer switches to the backend vLLM itself would
have chosen, with one warning. A backend the user named explicitly raises instead.

Under vLLM's encoder CUDA graphs (``cudagraph_mm_encoder``) the op is captured: its inputs are
padded to a token budget (cu_seqlens[-1] may be below the token count; max_seqlen an upper
bound). While capturing, the rows past cu_seqlens[-1] come out 0, as vLLM's FA wrapper makes them
(uninitialised memory there can hold NaNs on replay), and a plugin path that would read device
data on the host raises CaptureSyncError first, so the fallback above takes that layer to stock.
"""

from __future__ import annotations

import logging
import os
import weakref

import torch
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vllm.model_executor.models.vision import get_multimodal_config
from vllm.platforms import current_platform
from vllm.utils.gpu_sync_debug import gpu_sync_allowed
from vllm.utils.torch_utils import direct_register_custom_op
from vllm.v1.attention.backends.fa_utils import get_flash_attn_version
from vllm.v1.attention.backends.registry import AttentionBackendEnum

from vit_backend_plugin.kernels.capture import refuse_host_read, stream_capturing
from vit_backend_plugin.kernels.registry import PLUGIN_BACKENDS, TAKES_OUT, get_kernel
from vit_backend_plugin.vllm_glue import selector

logger = logging.getLogger("vllm.vit_backend_plugin")
_WARNED: set[tuple[str, str]] = set()


class PluginBackendError(RuntimeError):
    """An explicitly chosen plugin backend failed at run time (no silent fallback)."""


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


# The max length when the model passes none (Qwen2-VL-family towers compute it only for the
# backends they know): every layer of one forward gets the same cu_seqlens tensor, so it is read
# from the device once per forward, not once per layer (a sync per layer stops the host from
# running ahead of the GPU). Keyed by the tensor object itself and its version counter.
_MAX_LEN_CACHE: list = [None, -1, 0]  # [weakref to cu_seqlens, its _version, max length]
LENGTH_READS = 0  # device reads of the lengths, for tests and diagnostics


def _version(t: torch.Tensor) -> int | None:
    # Tensors made under inference_mode (vLLM's forward) have no version counter; those towers
    # build a new cu_seqlens every forward (and pass max_seqlen when they reuse a static buffer
    # for encoder CUDA graphs), so the object's identity is the key there.
    return None if t.is_inference() else t._version


def _max_len_from_lengths(cu_seqlens: torch.Tensor, cu: torch.Tensor, backend: str = "VIT_TRITON",
                          capturing: bool = False) -> int:
    global LENGTH_READS
    # Refused while capturing even on a cache hit: the graph would keep a max from the capture's
    # lengths, not the replay's (and a static buffer is the same object on every replay).
    refuse_host_read(backend, "read max_seqlen from cu_seqlens (the model passed none)", capturing)
    ref, version, value = _MAX_LEN_CACHE
    now = _version(cu_seqlens)
    if ref is not None and ref() is cu_seqlens and now == version:
        return value
    value = int((cu[1:] - cu[:-1]).max().item()) if cu.numel() > 1 else 0
    LENGTH_READS += 1
    _MAX_LEN_CACHE[:] = [weakref.ref(cu_seqlens), now, value]
    return value


def _vit_plugin_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str, scale: float,
    cu_seqlens: torch.Tensor | None, max_seqlen: torch.Tensor | None,
) -> torch.Tensor:
    """q/k/v (b, s, h, d), possibly strided views of a packed qkv; returns (b, s, hq, d)."""
    bsz, q_len = q.shape[:2]
    q, k, v = _tokens_first(q), _tokens_first(k), _tokens_first(v)
    # Asked once per call (the op body runs eagerly, never traced); every host read below checks
    # it before reading.
    capturing = stream_capturing()
    # Host reads of max_seqlen / lengths live here, inside the op, so the traced graph has none.
    # Only the reads that may sync run under gpu_sync_allowed (entering it costs host time).
    if cu_seqlens is None:
        cu = torch.arange(0, (bsz + 1) * q_len, q_len, dtype=torch.int32, device=q.device)
        max_len = q_len
    else:
        cu = cu_seqlens
        if not (cu.dtype == torch.int32 and cu.device == q.device and cu.is_contiguous()):
            if cu.device != q.device:
                refuse_host_read(backend, "copy cu_seqlens to q's device", capturing)
            with gpu_sync_allowed():  # a host-to-device copy waits for the device
                cu = cu.to(device=q.device, dtype=torch.int32).contiguous()
        max_len = _given_max_len(max_seqlen, backend, capturing)
        if max_len <= 0:  # a model that computed no max for a backend it doesn't know
            with gpu_sync_allowed():
                max_len = _max_len_from_lengths(cu_seqlens, cu, backend, capturing)
    kernel = get_kernel(backend)
    if not capturing:
        out = kernel(q, k, v, cu, max_len, scale)
    elif backend in TAKES_OUT:
        # Rows past cu_seqlens[-1] (padding) are never written: zeros, as vLLM's FA wrapper does.
        out = kernel(q, k, v, cu, max_len, scale, capturing=True,
                     out=torch.zeros(q.shape, dtype=q.dtype, device=q.device))
    else:
        out = _zero_padding_rows(kernel(q, k, v, cu, max_len, scale, capturing=True), cu)
    return out.view(bsz, q_len, *out.shape[1:])


def _zero_padding_rows(out: torch.Tensor, cu: torch.Tensor) -> torch.Tensor:
    """Zero the rows of a callee-allocated output past cu[-1], on the device (no host read)."""
    rows = torch.arange(out.shape[0], device=out.device)
    return out.masked_fill_((rows >= cu[-1]).view(-1, *([1] * (out.dim() - 1))), 0)


def _tokens_first(x: torch.Tensor) -> torch.Tensor:
    """(b, s, h, d) -> (b * s, h, d): x.reshape, without its extra cost when a view does it
    (reshape returns exactly that view then; it copies only where no view exists)."""
    try:
        return x.view(-1, x.shape[-2], x.shape[-1])
    except RuntimeError:
        return x.reshape(-1, x.shape[-2], x.shape[-1])


def _given_max_len(max_seqlen: torch.Tensor | None, backend: str = "VIT_TRITON",
                   capturing: bool = False) -> int:
    """The caller's max_seqlen (0 when absent); reading a device tensor waits for the device."""
    if max_seqlen is None or max_seqlen.numel() != 1:
        return 0
    if max_seqlen.is_cpu:  # vLLM's capture inputs keep it here: a host value, no sync
        return int(max_seqlen.item())
    refuse_host_read(backend, "read max_seqlen from a device tensor", capturing)
    with gpu_sync_allowed():
        return int(max_seqlen.item())


# CPU int32 scalars for the int max_seqlen a model passes (the op takes a tensor): one per value,
# made once, instead of a torch.tensor per call and layer. Read-only by contract (the op reads it).
_MAX_SEQLEN_TENSORS: dict[int, torch.Tensor] = {}
_MAX_SEQLEN_TENSORS_CAP = 4096


def _max_seqlen_tensor(value: int) -> torch.Tensor:
    t = _MAX_SEQLEN_TENSORS.get(value)
    if t is None:
        with torch.inference_mode(False):  # a normal tensor: usable in and out of inference mode
            t = torch.tensor(value, dtype=torch.int32)
        if len(_MAX_SEQLEN_TENSORS) < _MAX_SEQLEN_TENSORS_CAP:
            _MAX_SEQLEN_TENSORS[value] = t
    return t


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


def _interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


class PluginMMEncoderAttention(MMEncoderAttention):
    """Registered with ``MMEncoderAttention.register_oot``: every ``MMEncoderAttention(...)``
    built by a model is one of these."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Recorded now: the engine config is only current while the model is built.
        mm_cfg = get_multimodal_config()
        override = mm_cfg.mm_encoder_attn_backend if mm_cfg is not None else None
        self.vit_backend_source = selector.explicit_source(override)  # "" = chosen automatically

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
        if backend is not None and self.vit_backend_source and _interpreter_on():
            return self.forward_plugin(backend, query, key, value, cu_seqlens, max_seqlen)
        return super().forward_cpu(query, key, value, cu_seqlens, max_seqlen, sequence_lengths)

    def forward_plugin(self, backend: str, query, key, value, cu_seqlens=None, max_seqlen=None):
        """Same input/output contract as vLLM's ViT wrappers: (b, s, hidden) or (b, s, h, d)."""
        try:
            return self._plugin_attention(backend, query, key, value, cu_seqlens, max_seqlen)
        except Exception as e:
            self._leave_plugin_backend(backend, e)  # raises when the user chose `backend`
            # attn_backend is stock now: vLLM's own dispatch for this platform runs the call.
            return self._forward_method(query, key, value, cu_seqlens, max_seqlen)

    def _plugin_attention(self, backend, query, key, value, cu_seqlens, max_seqlen):
        bsz, q_len = query.shape[:2]
        is_reshaped = query.dim() != 4
        query, key, value = self.view_qkv_to_4d(query, key, value, bsz, q_len, key.shape[1])
        if max_seqlen is not None and not isinstance(max_seqlen, torch.Tensor):
            if torch.compiler.is_compiling():  # traced: a constant in the graph, no global cache
                max_seqlen = torch.tensor(int(max_seqlen), dtype=torch.int32)
            else:
                max_seqlen = _max_seqlen_tensor(int(max_seqlen))
        out = torch.ops.vllm.vit_plugin_attention(
            query, key, value, backend, float(self.scale), cu_seqlens, max_seqlen
        )
        return out.reshape(bsz, q_len, -1) if is_reshaped else out

    def _leave_plugin_backend(self, backend: str, error: Exception) -> None:
        cause = f"{type(error).__name__}: {error}"
        source = getattr(self, "vit_backend_source", "")
        if source:
            raise PluginBackendError(
                f"ViT attention backend {backend} ({source}) failed at run time: {cause}. It was "
                f"chosen explicitly, so the plugin does not switch to another backend; choose "
                f"another one or unset {source} to let the plugin choose."
            ) from error
        stock = selector.stock_backend(current_platform, self.head_size, self.dtype)
        if plugin_backend_name(stock) is not None:  # never loop back into a plugin kernel
            stock = AttentionBackendEnum.TORCH_SDPA
        # What MMEncoderAttention.__init__ derives from attn_backend, for the stock backend.
        self.attn_backend = stock
        self.is_flash_attn_backend = stock in (AttentionBackendEnum.FLASH_ATTN,
                                               AttentionBackendEnum.ROCM_AITER_FA)
        self._fa_version = (get_flash_attn_version(head_size=self.head_size)
                            if self.is_flash_attn_backend else None)
        if (backend, cause) not in _WARNED:  # one line per cause, not one per layer
            _WARNED.add((backend, cause))
            logger.warning(
                "vit-backend-plugin: ViT attention backend %s failed at run time (%s); this layer "
                "(and any other that hits the same error) now uses vLLM's own choice %s",
                backend, cause, stock.name,
            )


_ORIG_COMPUTE_MAX_SEQLEN = None


def patch_compute_max_seqlen() -> None:
    """Models ask MMEncoderAttention.compute_max_seqlen (a host max over numpy cu_seqlens) only
    for backends it knows; treat every plugin backend like TRITON_ATTN, so our kernels and a
    run-time fallback to FLASH_ATTN / TRITON_ATTN get the real max without a device read."""
    global _ORIG_COMPUTE_MAX_SEQLEN
    if _ORIG_COMPUTE_MAX_SEQLEN is not None:
        return
    orig = MMEncoderAttention.__dict__["compute_max_seqlen"].__func__

    def compute_max_seqlen(cls, attn_backend, cu_seqlens):
        if getattr(attn_backend, "name", None) in PLUGIN_BACKENDS:
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
