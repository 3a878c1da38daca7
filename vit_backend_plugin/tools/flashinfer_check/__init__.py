"""``vit-parity check-flashinfer-host``: FLASHINFER vs FLASHINFER_HOST inside a real vLLM engine.

Each (backend, phase) runs ``vllm.LLM`` in its own child process, on a decoder with dummy
weights (a Qwen2.5-0.5B-shaped ``config.json`` plus the demo tokenizer, ``load_format="dummy"``,
weights re-drawn from a seeded N(0, 0.02) so greedy text is not degenerate):

* ``parity``: greedy generation over prompts of mixed lengths with a small token budget, so
  steps mix chunked prefills and decodes; once without and once with n-gram speculative
  decoding. The engine core runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so every
  ``build()`` of the FlashInfer metadata builder in use is wrapped by a counter of the host
  synchronisations torch sees (:mod:`vit_backend_plugin.tools.sync_count`). The parent compares
  token ids and counts.
* ``decode``: seed 003's shape, 256 input tokens and 128 output tokens at batch sizes 1..256:
  wall time of ``max_tokens=128`` and ``max_tokens=1`` generations give TPOT and output tokens/s.
  No counter is installed in this phase (it costs host time).
* ``decode_paired``: the same shape, with both engines alive in ONE child (each with its own
  engine-core process, vLLM's multiprocess client) and timed alternately, stock then ours in
  even pairs and ours then stock in odd ones, on the same prompts; the ratio is taken per pair
  so drift between engines started at different times cancels
  (:func:`vit_backend_plugin.tools.decode_stats.paired_decode_stats`).

One module per part: ``cli`` (options, phases asked for, summary.json), ``phases`` (the parent's
side of each phase), ``runner`` (child processes), ``engine`` (each phase's engine code, in the
child), ``counter`` (the build() counter), ``model`` (the decoder and prompts), ``results``
(comparisons and pooled rows).
"""

from vit_backend_plugin.tools.flashinfer_check.cli import add_arguments, main

__all__ = ["add_arguments", "main"]
