"""The serve mode's parts: the engine arguments as `vllm serve` flags, and the root cause read
from lines of a real failing server's log (the runs themselves: test_speed_serve_run.py)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

pytest.importorskip("vllm")
psutil = pytest.importorskip("psutil")

from vit_backend_plugin.harness.commands import throughput_spec  # noqa: E402
from vit_backend_plugin.harness.config import parse_config  # noqa: E402
from vit_backend_plugin.harness.serve_bench import (  # noqa: E402
    bucket_config,
    cli_flags,
    engine_args,
    root_cause,
)

METRICS = ("requests_per_s", "input_tokens_per_s", "ttft_mean_ms", "ttft_p99_ms", "images_per_s",
           "wall_s")


def spec_for(model: str, arm_dir: Path, backend: str = "TORCH_SDPA", **throughput) -> dict:
    cfg = parse_config({
        "model": model, "engine": "vllm", "backends": [backend],
        "engine_args": {"dtype": "float32", "max_model_len": 4096, "enforce_eager": True},
        "throughput": {"mode": "serve", "image_sizes": [[56, 56], [112, 84]], "num_prompts": 4,
                       "concurrency": 2, "warmup": 2, "repeats": 2, "seed": 7, **throughput},
    })
    return throughput_spec(cfg, backend, arm_dir)


# ------------------------------------------------------------------ pure: no processes
def test_engine_args_mirror_offline_mode_and_reach_serve_as_flags():
    spec = {"seed": 3, "route": "engine_arg", "backend": "TORCH_SDPA", "trust_remote_code": True,
            "settings": {"images_per_prompt": 2, "concurrency": 4},
            "engine_args": {"dtype": "float32", "enforce_eager": True, "max_images": 2,
                            "enable_prefix_caching": True, "min_pixels": 3136,
                            "mm_processor_kwargs": {"fps": 1}, "compilation_config": {"mode": 0}}}
    args = engine_args(spec)
    assert "max_images" not in args and "min_pixels" not in args  # lm-eval's own
    assert args["mm_processor_kwargs"] == {"fps": 1, "min_pixels": 3136}
    assert args["enable_prefix_caching"] is False and args["mm_processor_cache_gb"] == 0  # always
    flags = cli_flags(args)
    assert " ".join(flags[flags.index("--limit-mm-per-prompt"):][:2]) == \
        '--limit-mm-per-prompt {"image": 2, "video": 0}'
    for pair in (["--mm-encoder-attn-backend", "TORCH_SDPA"], ["--max-num-seqs", "4"],
                 ["--compilation-config", '{"mode": 0}'], ["--seed", "3"]):
        i = flags.index(pair[0])
        assert flags[i:i + 2] == pair
    # a false boolean is passed, not dropped (what `--config file.yaml` would do under serve)
    assert "--no-enable-prefix-caching" in flags and "--enforce-eager" in flags
    assert "--trust-remote-code" in flags
    # (width, height) sizes become vLLM's (height, width, frames) buckets
    assert bucket_config({"image_sizes": [[112, 84], [56, 56]], "image_mix": [3, 1]}) == \
        {(84, 112, 1): 3.0, (56, 56, 1): 1.0}


def test_root_cause_is_the_engine_processs_exception_not_the_api_servers_summary():
    # Lines of a real CPU server log (a model dir without weights), shortened.
    log = """\
(APIServer pid=1) WARNING 12-06 23:07:31 [system_utils.py:255] Found ulimit of 20000 and failed to automatically increase with error current limit exceeds maximum limit. This can cause fd limit errors like `OSError: [Errno 24] Too many open files`.
(Worker pid=3) ERROR 12-06 23:08:31 [multiproc_executor.py:953]     raise RuntimeError(
(Worker pid=3) ERROR 12-06 23:08:31 [multiproc_executor.py:953] RuntimeError: Cannot find any model weights with `/tmp/noweights`
(EngineCore pid=2) ERROR 12-06 23:08:35 [core.py:1510] Exception: WorkerProc initialization failed due to an exception in a background process. See stack trace for root cause.
    raise RuntimeError(
RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"""
    assert root_cause(log.splitlines()) == "RuntimeError: Cannot find any model weights with `/tmp/noweights`"
    assert root_cause(["usage: vllm serve [model_tag] [options]",
                       "vllm serve: error: unrecognized arguments: --bogus 1"]) == \
        "vllm serve: error: unrecognized arguments: --bogus 1"


# ------------------------------------------------------------------ real vLLM servers
class TreeWatch:
    """Every process below this one, sampled while the body runs (a failed server's tree lives
    a few seconds only), so the test can check none is left afterwards."""

    def __init__(self):
        self.seen: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.wait(0.2):
            try:
                for p in me.children(recursive=True):
                    self.seen.setdefault(p.pid, p)
            except psutil.Error:
                pass

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def alive(self) -> list[str]:
        out = []
        for p in self.seen.values():
            try:  # psutil.Process compares create times: a reused pid is not the same process
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"{p.pid} {' '.join(p.cmdline())[:200]}")
            except psutil.Error:
                pass
        return out


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no listener
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# The runner with a real `vllm serve` (rounds, a server that cannot start, nothing left behind)
# is exercised end to end through `vit-parity run` in tests/test_speed_serve_run.py.
