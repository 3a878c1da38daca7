"""Out-of-tree MMEncoderAttention: stock backends run exactly as in vLLM; the plugin's own
backends (VIT_TRITON, VIT_AUTO, TORCH_SDPA_CUDNN, FLASH_ATTN_UPSTREAM, XFORMERS) run through one
registered custom op so torch.compile'd vision towers treat them like vLLM's own ViT wrappers
(every host read of max_seqlen / lengths happens inside that op, as in vLLM's wrappers).

A plugin kernel that fails at run time (missing file, compile error, unsupported shape) never
stops the engine when the plugin chose it: that layer switches to the backend vLLM itself would
have chosen, with one warning. A backend the user named explicitly raises instead.

No vLLM code is copied and no vLLM method patched here: layers are built by vLLM's own
``__init__``, the class is vLLM's out-of-tree replacement (``CustomOp.register_oot``), host
lengths come through vLLM's OOT classmethod hook (``maybe_recompute_cu_seqlens``), and a fallen
back layer takes its state from a layer vLLM builds itself. Registration: ``registration.py``.

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

import numpy as np
import torch
from vllm.config import get_current_vllm_config, set_current_vllm_config
from vllm.model_executor.layers.attention.mm_encoder_attention import MMEncoderAttention
from vllm.model_executor.models.vision import get_multimodal_config
from vllm.utils.gpu_sync_debug import gpu_sync_allowed

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


def plugin_backend_name(backend: object) -> str | None:
    name = getattr(backend, "name", None)
    return name if name in PLUGIN_BACKENDS else None


# The max length when the model passes none. vLLM's compute_max_seqlen gives 0 for backends it
# does not know (all of ours), so towers hand our layers max_seqlen 0; every tower that asks it
# also hands its host-side lengths to maybe_recompute_cu_seqlens, vLLM's out-of-tree hook, where
# PluginMMEncoderAttention notes the max for the tensor it returns: no device read then. Otherwise
# (Qwen2-VL-family towers compute no max for backends they don't know) the lengths are read from
# the device once per cu_seqlens tensor, not once per layer (a sync per layer stops the host from
# running ahead of the GPU). Keyed by the tensor object itself and its version counter; a few
# entries, as a tower may use more than one per forward (Qwen2.5-VL: full and windowed).
_MAX_LEN_CACHE: list[tuple] = []  # (weakref to cu_seqlens, its _version, max length), newest first
_MAX_LEN_CACHE_SIZE = 8
LENGTH_READS = 0  # device reads of the lengths, for tests and diagnostics


def _version(t: torch.Tensor) -> int | None:
    # Tensors made under inference_mode (vLLM's forward) have no version counter; those towers
    # build a new cu_seqlens every forward (and pass max_seqlen when they reuse a static buffer
    # for encoder CUDA graphs), so the object's identity is the key there.
    return None if t.is_inference() else t._version


def _cached_max_len(cu_seqlens: torch.Tensor) -> int | None:
    for ref, version, value in _MAX_LEN_CACHE:
        if ref() is cu_seqlens:
            return value if version == _version(cu_seqlens) else None
    return None


def remember_max_len(cu_seqlens: torch.Tensor, value: int) -> None:
    kept = [e for e in _MAX_LEN_CACHE if e[0]() is not None and e[0]() is not cu_seqlens]
    _MAX_LEN_CACHE[:] = [(weakref.ref(cu_seqlens), _version(cu_seqlens), value)] + kept[
        : _MAX_LEN_CACHE_SIZE - 1]


def _max_len_from_lengths(cu_seqlens: torch.Tensor, cu: torch.Tensor, backend: str = "VIT_TRITON",
                          capturing: bool = False) -> int:
    global LENGTH_READS
    # Refused while capturing even on a cache hit: the graph would keep a max from the capture's
    # lengths, not the replay's (and a static buffer is the same object on every replay).
    refuse_host_read(backend, "read max_seqlen from cu_seqlens (the model passed none)", capturing)
    value = _cached_max_len(cu_seqlens)
    if value is not None:
        return value
    with gpu_sync_allowed():  # only the read itself may sync (entering this costs host time)
        value = int((cu[1:] - cu[:-1]).max().item()) if cu.numel() > 1 else 0
    LENGTH_READS += 1
    remember_max_len(cu_seqlens, value)
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


def _interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# What every nn.Module carries (hooks, parameter and buffer dicts): never taken from a stock twin.
_MODULE_MACHINERY = frozenset(vars(torch.nn.Module()))
# Host lengths of one sequence of one token: vLLM's compute_max_seqlen answers > 0 for them only
# for the backends that take a max_seqlen.
_ONE_TOKEN = np.array([0, 1], dtype=np.int32)


def build_stock_layer(layer: PluginMMEncoderAttention) -> MMEncoderAttention:
    """A layer of vLLM's own class for ``layer``'s arguments, built by vLLM's own ``__init__``
    under the engine config ``layer`` was built under, with vLLM's own backend choice: whatever
    vLLM derives from the backend (FA version, FlashInfer workspace, fp8 state, and whatever a
    later vLLM adds) comes from vLLM, never from a copy."""
    # CustomOp.__new__ would hand back our OOT class; this is what it does when none is registered.
    stock = object.__new__(MMEncoderAttention)
    # vLLM builds CustomOps only while a config is current (not so in a forward).
    with set_current_vllm_config(layer.vit_vllm_config), selector.stock_selection():
        MMEncoderAttention.__init__(stock, layer.num_heads, layer.head_size, layer.scale,
                                    layer.num_kv_heads, prefix=layer.layer_name)
    return stock


class PluginMMEncoderAttention(MMEncoderAttention):
    """Registered with ``MMEncoderAttention.register_oot``: every ``MMEncoderAttention(...)``
    built by a model is one of these. Built by vLLM's own ``__init__`` (the platform answers with
    the plugin's choice); ours are only the plugin backends' forward, the host-lengths hook and
    the run-time fallback."""

    # After a run-time fallback: the stock backend takes a max_seqlen the model did not compute.
    _vit_stock_needs_max = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Recorded now: the engine config is only current while the model is built.
        self.vit_vllm_config = get_current_vllm_config()
        mm_cfg = get_multimodal_config()
        override = mm_cfg.mm_encoder_attn_backend if mm_cfg is not None else None
        self.vit_backend_source = selector.explicit_source(override)  # "" = chosen automatically

    @classmethod
    def maybe_recompute_cu_seqlens(cls, attn_backend, cu_seqlens, *args, **kwargs):
        """vLLM's OOT hook for the host lengths a tower prepares per forward (every tower that
        asks compute_max_seqlen calls it too): note the host max for the tensor it returns, so
        the op needs no device read for the max_seqlen 0 vLLM gives our backends."""
        out = super().maybe_recompute_cu_seqlens(attn_backend, cu_seqlens, *args, **kwargs)
        if (plugin_backend_name(attn_backend) is not None and isinstance(cu_seqlens, np.ndarray)
                and isinstance(out, torch.Tensor) and len(cu_seqlens) >= 2):
            remember_max_len(out, int(np.diff(cu_seqlens).max()))
        return out

    def forward_cuda(self, query, key, value, cu_seqlens=None, max_seqlen=None,
                     sequence_lengths=None):
        backend = plugin_backend_name(self.attn_backend)
        if backend is not None:
            return self.forward_plugin(backend, query, key, value, cu_seqlens, max_seqlen)
        if self._vit_stock_needs_max and cu_seqlens is not None:
            max_seqlen = self._stock_max_seqlen(cu_seqlens, max_seqlen)
        return super().forward_cuda(query, key, value, cu_seqlens, max_seqlen, sequence_lengths)

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

    def _stock_max_seqlen(self, cu_seqlens, max_seqlen):
        """The model computed max_seqlen for our backend (0 from vLLM's compute_max_seqlen, or
        none): give the stock backend the real one, from the host max noted for this tensor."""
        if torch.compiler.is_compiling():
            return max_seqlen  # a fallback happens in eager calls only; never trace a host read
        if isinstance(max_seqlen, torch.Tensor):
            if not (max_seqlen.is_cpu and max_seqlen.numel() == 1 and int(max_seqlen) <= 0):
                return max_seqlen  # a device max is read by stock's own wrapper, as without us
        elif max_seqlen is not None and int(max_seqlen) > 0:
            return max_seqlen
        value = _max_len_from_lengths(cu_seqlens, cu_seqlens, self.attn_backend.name,
                                      stream_capturing())
        return _max_seqlen_tensor(value)

    def _leave_plugin_backend(self, backend: str, error: Exception) -> None:
        cause = f"{type(error).__name__}: {error}"
        source = getattr(self, "vit_backend_source", "")
        if source:
            raise PluginBackendError(
                f"ViT attention backend {backend} ({source}) failed at run time: {cause}. It was "
                f"chosen explicitly, so the plugin does not switch to another backend; choose "
                f"another one or unset {source} to let the plugin choose."
            ) from error
        stock = build_stock_layer(self)
        if stock._parameters or stock._buffers or stock._modules:  # vLLM 0.32: only with fp8,
            # which no plugin backend runs; tensors would need this layer's device and loading
            raise RuntimeError(f"vLLM's {stock.layer_name or 'MMEncoderAttention'} layer for "
                               f"{stock.attn_backend.name} holds tensors or submodules; the "
                               f"plugin cannot switch this layer to it") from error
        # Take every attribute vLLM's __init__ gave the stock layer (the module machinery and
        # methods bound to it aside): this layer then is, attribute for attribute, the layer
        # stock vLLM builds, and vLLM's own forward runs it.
        for name, attr in vars(stock).items():
            if name not in _MODULE_MACHINERY and getattr(attr, "__self__", None) is not stock:
                setattr(self, name, attr)
        self._vit_stock_needs_max = MMEncoderAttention.compute_max_seqlen(
            self.attn_backend, _ONE_TOKEN) > 0
        if (backend, cause) not in _WARNED:  # one line per cause, not one per layer
            _WARNED.add((backend, cause))
            logger.warning(
                "vit-backend-plugin: ViT attention backend %s failed at run time (%s); this layer "
                "(and any other that hits the same error) now uses vLLM's own choice %s",
                backend, cause, self.attn_backend.name,
            )
