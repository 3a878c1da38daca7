"""vLLM 0.32 ``FlashInferMetadataBuilder`` whose ``build()`` plans from host state only.

Imports vLLM's FlashInfer backend (and therefore flashinfer): import this module only where
that is wanted (the backend class path is resolved lazily by vLLM's registry).

What differs from the stock ``build()`` on the paths this builder claims
(causal attention; native FlashInfer prefill and/or decode, or XQA/trtllm-gen decode):

* host KV lengths come from ``seq_lens_cpu_upper_bound`` (= ``num_computed_tokens_cpu +
  num_scheduled_tokens``, exact in the modes we claim; see ``planning`` for the derivation).
  The stock builder calls ``seq_lens.cpu()`` (a device-to-host copy that waits for the GPU)
  whenever ``num_speculative_tokens > 0``;
* qo/paged-KV indptr, last-page lengths and KV lengths are computed by the pure numpy
  functions in :mod:`.planning` into a small ring of persistent pinned host buffers sized
  once from ``max_num_seqs`` (the stock builder allocates and pins fresh tensors with
  ``.pin_memory()`` and ``get_seq_lens`` on every build);
* the only copies are host-to-device, non-blocking, from pinned memory: our indptr copy for
  the page-index gather, and the ones FlashInfer's plan() makes from the arrays we pass.

Everything else falls back to the stock ``build()`` (one INFO line per reason, then silent);
see ``FALLBACK_REASONS``.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from vllm.utils.flashinfer import use_trtllm_attention
from vllm.utils.torch_utils import PIN_MEMORY
from vllm.v1.attention.backends.flashinfer import (
    FIDecode,
    FIPrefill,
    FlashInferMetadata,
    FlashInferMetadataBuilder,
    FlashInferTrtllmAPIDecode,
    _copy_page_indices_kernel,
    fast_plan_decode,
)

from vit_backend_plugin.flashinfer_host import planning

logger = logging.getLogger("vllm.vit_backend_plugin.flashinfer_host")

# The V2 model runner's host lengths (num_computed_tokens_np + num_scheduled_tokens) are exact
# under synchronous scheduling without adaptive verification, by the same scheduler bookkeeping as
# V1's (see planning's docstring); the H100 engine check showed greedy parity and 0 syncs there
# (reports/flashinfer/). On by default; =0 sends those steps to stock.
V2_SPEC_ENV = "VIT_FLASHINFER_HOST_V2_SPEC"

# reason key -> what the log line says. Static ones are decided at __init__.
FALLBACK_REASONS = {
    "dcp": "decode context parallelism (DCP-local lengths, BatchDCPPrefillWrapper)",
    "sinks": "attention sinks (sink prefill wrappers)",
    "nvfp4": "NVFP4 KV cache",
    "mixed_hparams": "layers with different window/soft-cap/scale (stock raises its own error)",
    "non_causal": "non-causal attention (e.g. the DFlash drafter)",
    "trtllm_prefill": "TRT-LLM (trtllm-gen) prefill in a batch with native FlashInfer decode",
    "xqa_ragged": "ragged XQA speculative decode (its draft mask is built with a blocking copy)",
    "no_upper_bound": "CommonAttentionMetadata.seq_lens_cpu_upper_bound is absent",
    "async_spec": "async scheduling with speculative decoding (host lengths are optimistic)",
    "v2_runner_spec": f"the V2 model runner with speculative decoding ({V2_SPEC_ENV}=0)",
    "adaptive_verification": "adaptive draft verification (the V2 runner re-allocates drafts on the device)",
    "padded_draft_step": "EAGLE padded drafter steps >= 1 (rejections applied on device only)",
    "decode_tokens_gt_reqs": "native decode with more decode tokens than requests",
}

# Every private vLLM name this module uses (``self._x`` inherited from the stock builder, or
# ``from vllm... import _x``) -> why it is not derived from public config/metadata instead.
# tests/test_flashinfer_host_privates.py scans this file's AST: a new one that is not listed
# here fails, and so does a listed one that the installed vLLM no longer defines.
# Derived from public config instead (stock's expressions, compared with stock's values in
# the tests): _num_speculative_tokens (vllm_config.num_speculative_tokens),
# _decode_cudagraph_max_bs (speculative/scheduler/compilation config) and
# _compute_decode_query_lens (planning.decode_query_lens on query_start_loc_cpu).
VLLM_PRIVATES = {
    "_get_prefill_wrapper": "owns the lazily created FlashInfer prefill wrapper and its workspace "
                            "buffer, shared with stock build() (which this builder falls back to)",
    "_get_decode_wrapper": "owns the decode wrappers, incl. one CUDA-graph wrapper per batch size "
                           "built over the builder's persistent indptr/indices buffers; a second "
                           "cache of ours would double workspace and graph state",
    "_get_decode_mask": "XQA draft-mask cache with stable addresses for CUDA graphs, built by "
                        "vLLM's private _make_xqa_draft_block_mask",
    "_copy_page_indices_kernel": "vLLM's Triton kernel that gathers block-table rows into page "
                                 "indices on the device, exactly as stock build() does",
}
# Public-but-internal stock builder state this module relies on (checked the same way).
# Buffers it writes: shared with stock's CUDA-graph decode wrappers, which plan from them.
VLLM_BUILDER_BUFFERS = {
    "paged_kv_indptr": "CpuGpuBuffer; .gpu is the device indptr the page-index kernel reads "
                       "and the CUDA-graph decode wrappers' indptr buffer",
    "paged_kv_indices": "device page indices; CUDA-graph decode wrappers plan over this very "
                        "buffer (fast_plan_decode does not copy indices in graph mode)",
    "paged_kv_last_page_len": "CpuGpuBuffer; .gpu is the CUDA-graph decode wrappers' last-page "
                              "buffer, which FlashInfer's fast_decode_plan does not fill in graph "
                              "mode (stock's _compute_flashinfer_kv_metadata does)",
}
# Resolved settings read from the stock builder (set by its __init__ from the config, the KV
# spec and the platform; re-deriving them would copy vLLM's selection logic).
VLLM_BUILDER_STATE = frozenset({
    "attention_config", "cache_dtype", "compilation_config", "dcp_world_size",
    "decode_fixed_split_size", "disable_split_kv", "enable_cuda_graph",
    "flashinfer_trtllm_api_decode_kernel", "global_hyperparameters", "has_sinks", "head_dim",
    "is_kvcache_nvfp4", "kv_cache_dtype", "kv_cache_layout", "logits_soft_cap", "max_num_reqs",
    "model_config", "num_kv_heads", "num_qo_heads", "page_size", "prefill_fixed_split_size",
    "q_data_type_decode", "q_data_type_prefill", "reorder_batch_threshold", "sm_scale", "use_dcp",
    "use_trtllm_decode_attention", "use_trtllm_gen_varlen_decode", "use_xqa", "window_left",
})

RING_SLOTS = 4
_ARRAYS = ("indptr", "last_page_len", "qo_indptr_prefill", "kv_lens_prefill", "kv_lens_decode")


class _HostSlot:
    """One set of pinned host planning buffers, plus the event that marks when the
    host-to-device copies enqueued from it have run (so it is never overwritten early)."""

    def __init__(self, n: int, pin: bool):
        flat = torch.zeros(len(_ARRAYS) * n, dtype=torch.int32, pin_memory=pin)
        self.t = {k: flat[i * n : (i + 1) * n] for i, k in enumerate(_ARRAYS)}
        self.np = {k: v.numpy() for k, v in self.t.items()}
        self.event = torch.cuda.Event() if pin else None
        self.in_flight = False

    def free(self) -> bool:
        # Event.query() is cudaEventQuery: it never waits, so it is not a synchronisation.
        return not self.in_flight or self.event is None or self.event.query()


class FlashInferHostMetadataBuilder(FlashInferMetadataBuilder):
    def __init__(self, kv_cache_spec, layer_names, vllm_config, device):
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)
        n = self.max_num_reqs + 1
        self._pin = bool(PIN_MEMORY) and torch.device(device).type == "cuda"
        self._slots = [_HostSlot(n, self._pin) for _ in range(RING_SLOTS)]
        self._slot_idx = -1
        self._seq_scratch = np.zeros(n, dtype=np.int32)
        self._pages_scratch = np.zeros(n, dtype=np.int32)
        spec = vllm_config.speculative_config
        # Public config for what stock keeps in private attributes (same expressions as
        # stock's __init__; tests compare both with stock's values and plan() arguments).
        self._num_spec = vllm_config.num_speculative_tokens  # stock: _num_speculative_tokens
        self._decode_cg_max_bs = planning.decode_cudagraph_max_bs(  # stock: _decode_cudagraph_max_bs
            self._num_spec, self.max_num_reqs, self.compilation_config.max_cudagraph_capture_size,
        )
        self._padded_drafter = spec is not None and not spec.disable_padded_drafter_batch
        self._async = bool(getattr(vllm_config.scheduler_config, "async_scheduling", False))
        self._v2_runner = bool(getattr(vllm_config, "use_v2_model_runner", False))
        self._v2_spec_host = os.environ.get(V2_SPEC_ENV, "1") != "0"
        self._adaptive = spec is not None and bool(getattr(spec, "enable_adaptive_verification", False))
        self._max_model_len = self.model_config.max_model_len
        self._draft_index: int | None = None
        self.fallback_counts: dict[str, int] = {}
        self.host_builds = 0
        self.last_plan: planning.PlanArrays | None = None  # for tests and the bench
        gp = self.global_hyperparameters
        self._static_reason = (
            "dcp" if self.use_dcp
            else "sinks" if self.has_sinks
            else "nvfp4" if self.is_kvcache_nvfp4
            else "mixed_hparams" if not (gp.has_same_window_lefts and gp.has_same_all_params)
            else None
        )

    # -- entry points -------------------------------------------------------------------
    def build_for_drafting(self, common_attn_metadata, draft_index: int):
        self._draft_index = draft_index
        try:
            return super().build_for_drafting(common_attn_metadata, draft_index)
        finally:
            self._draft_index = None

    def build(self, common_prefix_len, common_attn_metadata, fast_build=False):
        cam = common_attn_metadata
        decision = self._decide(cam)
        if isinstance(decision, str):
            if decision != "stock_sync_free":
                self._fall_back(decision)
            return super().build(common_prefix_len, cam, fast_build)
        return self._build_host(cam, *decision)

    # -- decisions (host data only) -----------------------------------------------------
    def _decide(self, cam):
        if self._static_reason:
            return self._static_reason
        if cam.causal is not True:
            return "non_causal"
        qo = cam.query_start_loc_cpu.numpy()
        split = planning.split_decodes_and_prefills(
            qo, cam.num_actual_tokens, cam.max_query_len, self.reorder_batch_threshold,
            require_uniform=not (self.use_xqa or self.use_trtllm_gen_varlen_decode),
        )
        nd, npf, ndt, npt = split
        prefill_trtllm = npf > 0 and use_trtllm_attention(
            self.num_qo_heads, self.num_kv_heads, npt, cam.max_seq_len, self.dcp_world_size,
            self.cache_dtype, self.q_data_type_prefill, is_prefill=True,
            force_use_trtllm=True if self.page_size >= 128 else self.attention_config.use_trtllm_attention,
            has_sinks=self.has_sinks, has_spec=self.reorder_batch_threshold > 1,
        )
        decode_trtllm = nd > 0 and self.use_trtllm_decode_attention
        if (npf == 0 or prefill_trtllm) and (nd == 0 or decode_trtllm):
            # Stock needs no host lengths here (all device tensors): it is sync-free already.
            return "stock_sync_free"
        if prefill_trtllm:
            return "trtllm_prefill"
        qlens = None
        if decode_trtllm:
            qlens = planning.decode_query_lens(qo, nd, ndt, xqa=self.use_xqa)
            if qlens.ragged_q_lens is not None:
                return "xqa_ragged"
        elif nd and ndt > cam.num_reqs:
            return "decode_tokens_gt_reqs"
        if cam.seq_lens_cpu_upper_bound is None:
            return "no_upper_bound"
        if self._num_spec > 0:
            if self._v2_runner and self._adaptive:
                return "adaptive_verification"
            if self._v2_runner and not self._v2_spec_host:
                return "v2_runner_spec"
            if self._async:
                return "async_spec"
            if self._draft_index and self._padded_drafter:
                return "padded_draft_step"
        return split, decode_trtllm, qlens

    def _fall_back(self, reason: str) -> None:
        if reason not in self.fallback_counts:
            logger.info("FLASHINFER_HOST: stock FlashInfer build() used for %s", FALLBACK_REASONS[reason])
        self.fallback_counts[reason] = self.fallback_counts.get(reason, 0) + 1

    def _next_slot(self) -> _HostSlot:
        for _ in range(len(self._slots)):
            self._slot_idx = (self._slot_idx + 1) % len(self._slots)
            if self._slots[self._slot_idx].free():
                return self._slots[self._slot_idx]
        # Every slot still feeds an in-flight copy (GPU far behind): take fresh pinned
        # memory from torch's caching host allocator rather than wait.
        return _HostSlot(self.max_num_reqs + 1, self._pin)

    # -- the host-planned build ---------------------------------------------------------
    def _build_host(self, cam, split, decode_trtllm, qlens) -> FlashInferMetadata:
        nd, npf, ndt, npt = split
        n = cam.num_reqs
        qo = cam.query_start_loc_cpu.numpy()
        seq = cam.seq_lens_cpu_upper_bound.numpy()[:n]
        if self._draft_index and self._num_spec > 0:
            seq = planning.draft_step_seq_lens(seq, self._max_model_len, out=self._seq_scratch[:n])
        slot = self._next_slot()
        plan = planning.plan_batch(
            qo, seq, self.page_size, split,
            indptr_out=slot.np["indptr"], last_page_len_out=slot.np["last_page_len"],
            qo_indptr_prefill_out=slot.np["qo_indptr_prefill"],
            kv_lens_prefill_out=slot.np["kv_lens_prefill"],
            kv_lens_decode_out=slot.np["kv_lens_decode"], pages_scratch=self._pages_scratch,
        )
        self.last_plan = plan
        t = slot.t
        md = FlashInferMetadata(
            kv_cache_layout=self.kv_cache_layout, num_actual_tokens=cam.num_actual_tokens,
            slot_mapping=cam.slot_mapping, q_data_type_prefill=self.q_data_type_prefill,
            q_data_type_decode=self.q_data_type_decode, num_decodes=nd,
            num_decode_tokens=ndt, num_prefills=npf, num_prefill_tokens=npt, causal=True,
            prefill=None, decode=None,
        )
        indices = None
        if npf or not decode_trtllm:
            indices = self._page_indices(t["indptr"][: n + 1], int(plan.paged_kv_indptr[n]), cam.block_table_tensor)
            # The CUDA-graph decode wrappers read the indptr and last-page lengths from these
            # device buffers, and in graph mode FlashInfer's fast_decode_plan copies neither
            # (stock fills both in _compute_flashinfer_kv_metadata): without this, graph replays
            # attend over stale last-page lengths.
            self.paged_kv_last_page_len.gpu[:n].copy_(t["last_page_len"][:n], non_blocking=True)
        common = dict(
            num_qo_heads=self.num_qo_heads, num_kv_heads=self.num_kv_heads,
            page_size=self.page_size, sm_scale=self.sm_scale, window_left=self.window_left,
            logits_soft_cap=self.logits_soft_cap, kv_data_type=self.kv_cache_dtype,
            o_data_type=self.model_config.dtype, disable_split_kv=self.disable_split_kv,
        )
        if npf:
            wrapper = self._get_prefill_wrapper(causal=True)
            wrapper.plan(
                qo_indptr=t["qo_indptr_prefill"][: npf + 1],
                paged_kv_indptr=t["indptr"][nd : n + 1],
                paged_kv_indices=indices,
                paged_kv_last_page_len=t["last_page_len"][nd:n],
                seq_lens=t["kv_lens_prefill"][:npf],
                head_dim_qk=self.head_dim, causal=True, q_data_type=self.q_data_type_prefill,
                fixed_split_size=self.prefill_fixed_split_size, **common,
            )
            md.prefill = FIPrefill(wrapper=wrapper)
        if nd and decode_trtllm:
            md.decode = self._trtllm_api_decode(cam, nd, qlens)
        elif nd:
            use_cg = self.enable_cuda_graph and npf == 0 and ndt <= self._decode_cg_max_bs
            wrapper = self._get_decode_wrapper(ndt, use_cg)
            fast_plan_decode(
                wrapper, indptr_cpu=t["indptr"][: ndt + 1], indices=indices,
                last_page_len_cpu=t["last_page_len"][:ndt], seq_lens_cpu=t["kv_lens_decode"][:ndt],
                head_dim=self.head_dim, pos_encoding_mode="NONE", q_data_type=self.q_data_type_decode,
                fixed_split_size=self.decode_fixed_split_size, **common,
            )
            md.decode = FIDecode(wrapper=wrapper)
        if slot.event is not None:
            slot.event.record()
            slot.in_flight = True
        self.host_builds += 1
        return md

    def _page_indices(self, indptr_host: torch.Tensor, num_pages: int, block_table: torch.Tensor):
        out = self.paged_kv_indices[:num_pages]
        n = indptr_host.shape[0] - 1
        indptr_dev = self.paged_kv_indptr.gpu[: n + 1]
        indptr_dev.copy_(indptr_host, non_blocking=True)  # pinned -> device, async
        if block_table.device.type == "cpu":  # CPU tests: the gather on the host, same arrays
            planning.paged_kv_indices(block_table.numpy(), indptr_host.numpy(), out.numpy())
            return out
        _copy_page_indices_kernel[(n,)](out, block_table, block_table.stride(0), indptr_dev, BLOCK_SIZE=1024)
        return out

    def _trtllm_api_decode(self, cam, nd: int, qlens) -> FlashInferTrtllmAPIDecode:
        """Stock's XQA / trtllm-gen decode branch (device tensors + host query lengths)."""
        q_len_per_req = qlens.q_len_per_req
        q_cu = cam.query_start_loc[: nd + 1] if qlens.device_offsets else None
        mask = None
        if self.use_xqa:
            mask = self._get_decode_mask(q_len_per_req, None, nd, True)
        elif self.use_trtllm_gen_varlen_decode:
            q_len_per_req = min(cam.max_query_len, self.reorder_batch_threshold)
            q_cu = cam.query_start_loc[: nd + 1]
        return FlashInferTrtllmAPIDecode(
            kernel=self.flashinfer_trtllm_api_decode_kernel,
            block_tables=cam.block_table_tensor[:nd], seq_lens=cam.seq_lens[:nd],
            max_seq_len=cam.max_seq_len, q_len_per_req=q_len_per_req, q_cu_seq_lens=q_cu,
            mask=mask, dcp_query_start_loc=None,
        )
