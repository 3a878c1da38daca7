"""vit-backend-plugin: a vLLM general plugin for ViT attention.

vLLM calls :func:`register` in every process (API server, engine core, workers)
through the ``vllm.general_plugins`` entry point. It must be idempotent, cheap,
and must never take vLLM down.
"""

__version__ = "0.1.0"


def register() -> None:
    """Entry point for ``vllm.general_plugins``. See :mod:`vit_backend_plugin.plugin`."""
    from vit_backend_plugin.plugin import register as _register

    _register()
