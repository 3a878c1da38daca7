"""``FLASHINFER_HOST``: vLLM's FlashInfer backend with the host-buffer metadata builder.

Same kernels, impl, KV-cache layout and capability checks as ``FLASHINFER``; only the
metadata builder differs. Imports flashinfer (through vLLM): vLLM resolves this class path
lazily, only when the backend is selected.
"""

from __future__ import annotations

from vllm.v1.attention.backends.flashinfer import FlashInferBackend

from vit_backend_plugin.flashinfer_host.builder import FlashInferHostMetadataBuilder


class FlashInferHostBackend(FlashInferBackend):
    @staticmethod
    def get_name() -> str:
        return "FLASHINFER_HOST"

    @staticmethod
    def get_builder_cls() -> type[FlashInferHostMetadataBuilder]:
        return FlashInferHostMetadataBuilder
