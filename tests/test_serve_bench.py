"""The serve mode of the throughput phase against real vLLM on its CPU platform: a real
``vllm serve`` of the demo model measured by ``vllm bench serve``, and a server that fails to
start. No mocks: the processes, ports and result files are vLLM's own."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

pytest.importorskip("vllm")
psutil = pytest.importorskip("psutil")

from vit_backend_plugin.harness.commands import throughput_spec  # noqa: E402
from vit_backend_plugin.harness.config import parse_config  # noqa: E402
from vit_backend_plugin.harness.serve_bench import (  # noqa: E402
    ServeError,
    ServeRunner,
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


@pytest.fixture(scope="module")
def demo_model() -> str:
    from vit_backend_plugin.harness.demo_assets import ensure_demo_assets

    return str(ensure_demo_assets().model_dir)


@pytest.fixture
def cpu_env(monkeypatch):
    # What the demo config gives vLLM's CPU engine (data/demo.yaml's env).
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.mark.slow
def test_serve_rounds_on_cpu_engine_then_nothing_left(demo_model, cpu_env, tmp_path):
    spec = spec_for(demo_model, tmp_path / "arm")
    with TreeWatch() as watch:
        with ServeRunner(spec, tmp_path / "arm") as runner:
            port = runner.port
            assert not port_free(port)  # the server listens there
            runner.warmup()
            rounds = [runner.round(r) for r in range(2)]
            info = runner.info()
            assert len(watch.seen) >= 2  # the server and its engine process at least
        runner.close()  # idempotent
    assert port_free(port), f"port {port} still taken after close()"
    assert watch.alive() == []

    for m in rounds:
        assert all(m[k] > 0 for k in METRICS), m
        assert m["encoder_images_per_s"] is None
        assert m["images_per_s"] == pytest.approx(4 / m["wall_s"])  # 4 prompts, 1 image each
    # the server as configured: backend, caches off, concurrency, image limit, engine args
    argv = info["server_argv"]
    assert argv[argv.index("serve") + 1] == demo_model and argv[argv.index("--port") + 1] == str(port)
    for flag in ("--no-enable-prefix-caching", "--enforce-eager"):
        assert flag in argv
    for flag, value in (("--mm-encoder-attn-backend", "TORCH_SDPA"), ("--max-num-seqs", "2"),
                        ("--mm-processor-cache-gb", "0"), ("--dtype", "float32"),
                        ("--limit-mm-per-prompt", '{"image": 1, "video": 0}')):
        assert argv[argv.index(flag) + 1] == value, flag
    # warm-up: one bench per image size; then the two rounds, each with its own seed
    results = [json.loads(Path(p).read_text()) for p in info["bench_results"]]
    assert [r["phase"] for r in results] == ["warmup-56x56", "warmup-112x84", "round-0", "round-1"]
    assert [r["seed"] for r in results[2:]] == ["1007", "2007"]
    for r in results[2:]:
        assert r["completed"] == r["num_prompts"] == 4 and r["max_concurrency"] == 2
        assert r["backend"] == "openai-chat" and r["model_id"] == demo_model
    bench = info["bench_argv"]
    assert bench[bench.index("--seed") + 1] == "2007"
    assert bench[bench.index("--random-mm-bucket-config") + 1] == "{(56, 56, 1): 1.0, (84, 112, 1): 1.0}"
    assert "Application startup complete" in Path(info["server_log"]).read_text()


@pytest.mark.slow
def test_server_that_fails_to_start_raises_root_cause_and_leaves_nothing(demo_model, cpu_env,
                                                                         tmp_path):
    spec = spec_for(demo_model, tmp_path / "arm")
    spec["backend"] = "NOT_A_BACKEND"  # vLLM rejects it while building its config
    runner = ServeRunner(spec, tmp_path / "arm")
    with TreeWatch() as watch, pytest.raises(ServeError) as err:
        runner.start()
    first = str(err.value).splitlines()[0]
    assert first.startswith("vllm serve exited with code 1 before it was ready: ")
    assert "Unknown attention backend: 'NOT_A_BACKEND'" in first
    assert f"log: {runner.server_log}" in str(err.value)
    assert watch.seen, "the server process was never seen"
    assert watch.alive() == []
    assert port_free(runner.info()["port"])
    runner.close()  # safe after a failed start
