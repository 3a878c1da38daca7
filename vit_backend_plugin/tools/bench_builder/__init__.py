"""``vit-parity bench-builder``: FlashInfer metadata ``build()``, stock vs FLASHINFER_HOST.

Default ("full") mode (needs vLLM + flashinfer + a CUDA GPU): builds vLLM's stock
``FlashInferMetadataBuilder`` and our ``FlashInferHostMetadataBuilder`` from the same
VllmConfig (a tiny local Llama config, no weights; one pair per number of speculative
tokens), builds every batch's ``CommonAttentionMetadata`` once, then per mode and batch size
times ``build()`` of both on that same object (alternating call by call, each from an idle GPU;
and, as ``*_queued_us``, back to back without synchronising) and counts the synchronising CUDA operations
of each (:func:`.sync_count.count_syncs`, torch's detector in "warn" mode).

``--planner-only`` (needs only torch + numpy + a CUDA GPU; vLLM optional): what our builder
does per step without FlashInfer: the pure numpy planner into persistent pinned buffers,
a non-blocking indptr copy and the page-index gather on the device (vLLM's
``_copy_page_indices_kernel`` when vLLM imports, else a torch gather that needs no host
sync), side by side with a stock-like baseline that reads ``seq_lens`` back from the device
(what vLLM 0.32's builder does under speculative decoding) and pins fresh host tensors.

Neither mode counts ``non_blocking`` copies from pageable host memory (the driver stages
them synchronously; torch's detector does not instrument them).
"""

from vit_backend_plugin.tools.bench_builder.cli import add_arguments, main, parse_modes
from vit_backend_plugin.tools.bench_builder.common import MODES, SYNC_STEPS, make_batch
from vit_backend_plugin.tools.bench_builder.full import (
    _make_builders,
    builder_facts,
    make_cam,
    run_full,
)
from vit_backend_plugin.tools.bench_builder.planner_only import (
    gather_page_indices_torch,
    page_index_gather,
    run_planner_only,
)

__all__ = ["MODES", "SYNC_STEPS", "_make_builders", "add_arguments", "builder_facts", "gather_page_indices_torch",
           "main", "make_batch", "make_cam", "page_index_gather", "parse_modes", "run_full", "run_planner_only"]
