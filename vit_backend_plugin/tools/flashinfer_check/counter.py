"""The instrument inside an engine: a counter around the FlashInfer metadata builders' ``build()``
(host time per build, host syncs in the parity phase, mixed steps, the builders' own counts)."""

from __future__ import annotations

import threading
import time


class BuildCounter:
    """Wraps ``build()`` of the builder classes in use; per outermost build: host seconds and,
    with ``count_syncs`` (parity phase), host syncs. Timing alone costs two perf_counter calls,
    so the decode phase keeps it on: it says whether ``build()`` explains a throughput gap."""

    def __init__(self, count_syncs: bool = True):
        self.count_syncs = count_syncs
        self.builds = 0
        self.build_host_s = 0.0
        self.syncs = 0
        self.builds_with_sync = 0
        self.first_message: str | None = None
        self.mixed_builds = 0  # steps with both decode rows and longer (prefill) rows
        self.max_reqs = 0
        self._depth = threading.local()
        self._builders: dict[int, object] = {}  # every builder seen (the engine keeps them alive)

    def wrap(self, cls) -> None:
        from vit_backend_plugin.tools.sync_count import count_syncs

        original = cls.build
        counter = self

        def build(self_b, *args, **kwargs):  # vLLM passes positionally or by keyword
            depth = getattr(counter._depth, "v", 0)
            if depth:  # our builder's fallback calls stock build(): count once
                return original(self_b, *args, **kwargs)
            cam = kwargs["common_attn_metadata"] if "common_attn_metadata" in kwargs else args[1]
            counter._depth.v = 1
            counter._builders[id(self_b)] = self_b
            t0 = time.perf_counter()
            try:
                if counter.count_syncs:
                    md, n, msg = count_syncs(lambda: original(self_b, *args, **kwargs))
                else:
                    md, n, msg = original(self_b, *args, **kwargs), 0, None
            finally:
                counter._depth.v = 0
            counter.build_host_s += time.perf_counter() - t0
            counter.record(cam, n, msg, getattr(self_b, "reorder_batch_threshold", 1) or 1)
            return md

        cls.build = build

    def record(self, cam, n: int, msg: str | None, threshold: int) -> None:
        q = cam.query_start_loc_cpu[: cam.num_reqs + 1]
        lens = (q[1:] - q[:-1]).tolist()
        self.builds += 1
        self.syncs += n
        self.builds_with_sync += bool(n)
        self.first_message = self.first_message or msg
        self.max_reqs = max(self.max_reqs, cam.num_reqs)
        short = [x for x in lens if x <= threshold]
        self.mixed_builds += bool(short) and len(short) < len(lens)

    def builder_stats(self) -> dict:
        """host_builds / fallback_counts of the FLASHINFER_HOST builders seen (zeros for stock)."""
        out = {"builders": len(self._builders), "host_builds": 0, "fallback_counts": {}}
        for b in self._builders.values():
            out["host_builds"] += getattr(b, "host_builds", 0)
            for k, v in getattr(b, "fallback_counts", {}).items():
                out["fallback_counts"][k] = out["fallback_counts"].get(k, 0) + v
        return out

    def as_dict(self) -> dict:
        d = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        d["mean_build_host_us"] = self.build_host_s / self.builds * 1e6 if self.builds else None
        return d


def wrap_builders(backend: str, count_syncs: bool) -> BuildCounter:
    """A counter around the stock builder and, for FLASHINFER_HOST, ours (its fallback calls
    stock's build(): counted once)."""
    from vllm.v1.attention.backends.flashinfer import FlashInferMetadataBuilder

    counter = BuildCounter(count_syncs=count_syncs)
    counter.wrap(FlashInferMetadataBuilder)
    if backend == "FLASHINFER_HOST":
        from vit_backend_plugin.flashinfer_host.builder import FlashInferHostMetadataBuilder

        counter.wrap(FlashInferHostMetadataBuilder)
    return counter
