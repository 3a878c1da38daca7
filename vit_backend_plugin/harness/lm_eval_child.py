"""Child process for the accuracy phase: ``python -m vit_backend_plugin.harness.lm_eval_child ARGS``.

Runs lm-eval's own CLI (``lm_eval.__main__.cli_evaluate``) with exactly ``ARGS`` (the same
arguments as ``lm_eval ARGS``). Before that it:

* honours ``VIT_PARITY_FAULT=backend:phase`` (fault injection for tests: raise in this child);
* for lm-eval's ``hf-multimodal`` with an ``attn_implementation`` that is one of this plugin's
  kernels (``vit_triton``, ...), registers it with transformers' ``AttentionInterface``;
* with ``VIT_PARITY_DP_REPLICA_GPUS=N`` (an arm with ``data_parallel_size`` > 1 placed on GPUs),
  makes each of ``vllm-vlm``'s Ray replicas reserve N GPUs (see :func:`reserve_replica_gpus`).

The vLLM engine needs nothing here: vLLM loads the plugin through its entry point in every
process and reads ``VIT_ATTN_BACKEND`` / ``mm_encoder_attn_backend`` itself.
"""

from __future__ import annotations

import json
import os
import sys


def _arg(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def backend_of(argv: list[str]) -> str | None:
    raw = _arg(argv, "--model_args")
    try:
        margs = json.loads(raw) if raw else {}
    except ValueError:
        return None
    return (
        margs.get("mm_encoder_attn_backend")
        or margs.get("attn_implementation")
        or os.environ.get("VIT_ATTN_BACKEND")
    )


def check_fault(backend: str | None, phase: str) -> None:
    spec = os.environ.get("VIT_PARITY_FAULT", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        b, _, p = item.partition(":")
        if b == backend and (p or phase) == phase:
            raise RuntimeError(f"injected fault for backend {backend} in phase {phase} (VIT_PARITY_FAULT)")


def reserve_replica_gpus(n: int) -> None:
    """lm-eval's ``vllm-vlm`` starts its data-parallel replicas as ``@ray.remote`` tasks that
    reserve no GPU, so Ray leaves every replica all of the arm's GPUs and each engine takes the
    first one. Its text-only ``vllm`` class reserves ``num_gpus=tensor_parallel_size`` for that
    reason; do the same for the VLM class (unverified on GPUs: no multi-GPU machine yet)."""
    import lm_eval.models.vllm_vlms as vlms

    real = vlms.ray

    class _Ray:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def remote(*args, **kwargs):
            if len(args) == 1 and callable(args[0]) and not kwargs:
                return real.remote(num_gpus=n)(args[0])
            return real.remote(*args, **kwargs)

    vlms.ray = _Ray()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    backend = backend_of(argv)
    check_fault(backend, "accuracy")
    if _arg(argv, "--model") == "hf-multimodal" and backend:
        from vit_backend_plugin.harness import hf_attention

        hf_attention.register(backend)
    replica_gpus = os.environ.get("VIT_PARITY_DP_REPLICA_GPUS")
    if replica_gpus and _arg(argv, "--model") == "vllm-vlm":
        reserve_replica_gpus(int(replica_gpus))
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
