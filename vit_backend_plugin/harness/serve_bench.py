"""The serve mode of the throughput phase: per arm a real ``vllm serve`` on a free local port,
measured by vLLM's own ``vllm bench serve --dataset-name random-mm`` (its result JSON is read).

The engine settings mirror the offline mode (:mod:`.throughput`): prefix caching and
the multimodal processor cache off, ``max_num_seqs = concurrency`` (and ``--max-concurrency`` in
the bench), ``limit_mm_per_prompt {"image": k, "video": 0}``, the same random-mm bucket config.

Engine args reach ``vllm serve`` as explicit flags, not ``--config file.yaml``: under
``vllm serve`` vLLM expands the file with the top-level parser, which knows no ``--no-<flag>``,
so a ``false`` there (``enable_prefix_caching: false``) would be dropped without a word.

The server runs in the caller's process group (a parent that ends the worker's group ends the
server too); :meth:`ServeRunner.close` ends the server's whole process tree itself, and runs at
exit and on SIGTERM (turned into SystemExit so ``with`` blocks and ``finally`` clauses unwind).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from vit_backend_plugin.harness.children import exception_lines
from vit_backend_plugin.harness.throughput import (
    LM_EVAL_ONLY_ARGS,
    NO_CACHES,
    PROCESSOR_ARGS,
    round_seed,
    warmup_requests,
)

CLI = "vllm.entrypoints.cli.main"  # what the `vllm` console script runs
DEFAULT_TIMEOUT_S = 600.0
STOP_GRACE_S = 10.0
_TAIL = 20


class ServeError(RuntimeError):
    """The first line says what failed and the root cause; the rest: the log and its last lines."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_args(spec: dict[str, Any]) -> dict[str, Any]:
    """The server's engine arguments, built like the offline mode's ``LLM`` kwargs (the config's
    engine_args over the phase's defaults; the caches always off)."""
    s = spec["settings"]
    k = s["images_per_prompt"]
    args: dict[str, Any] = {"seed": spec["seed"], "limit_mm_per_prompt": {"image": k, "video": 0}}
    if spec["trust_remote_code"]:
        args["trust_remote_code"] = True
    if spec["route"] == "engine_arg":
        args["mm_encoder_attn_backend"] = spec["backend"]
    if s.get("concurrency"):
        args["max_num_seqs"] = s["concurrency"]
    given = spec["engine_args"]
    args.update({a: v for a, v in given.items() if a not in LM_EVAL_ONLY_ARGS and a not in PROCESSOR_ARGS})
    proc = {a: given[a] for a in PROCESSOR_ARGS if a in given}  # lm-eval's; vLLM's processor takes them
    if proc:
        args["mm_processor_kwargs"] = {**(args.get("mm_processor_kwargs") or {}), **proc}
    args.update(NO_CACHES)
    return args


def cli_flags(args: dict[str, Any]) -> list[str]:
    """Engine args as ``vllm serve`` flags: booleans as ``--x`` / ``--no-x``, dicts as JSON, lists
    as one item per word (like vLLM's own config-file expansion); ``None`` leaves vLLM's default."""
    out: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, dict):
            out += [flag, json.dumps(value)]
        elif isinstance(value, (list, tuple)):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def bucket_config(settings: dict[str, Any]) -> dict[tuple[int, int, int], float]:
    """vLLM's random-mm buckets: keys (height, width, num_frames); our sizes are (width, height)."""
    mix = settings.get("image_mix") or [1.0] * len(settings["image_sizes"])
    return {(h, w, 1): float(m) for (w, h), m in zip(settings["image_sizes"], mix, strict=True)}


def root_cause(lines: list[str]) -> str | None:
    """The first exception line of a log (vLLM's engine logs the reason far above the API
    server's "Engine core initialization failed"), else argparse's ``error:`` line."""
    for i, line in enumerate(lines):
        found = exception_lines([line])
        if found:
            cause = found[0]
            if "validation error" in cause:  # pydantic: the field and its message follow
                cause = ": ".join([cause, *(ln.strip() for ln in lines[i + 1:i + 3])])
            return cause[:1000]
    return next((ln.strip() for ln in reversed(lines) if ": error: " in ln), None)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _local_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # the log is read for the root cause
    # Requests to our own server must not go through a proxy (aiohttp and urllib honour these).
    for var in ("NO_PROXY", "no_proxy"):
        env[var] = ",".join(filter(None, [env.get(var), "127.0.0.1", "localhost"]))
    return env


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_tree(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the server (vLLM then stops its engine processes), SIGTERM what it leaves behind,
    SIGKILL whatever is still alive after ``grace`` seconds; reap the server."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        tree = {root, *root.children(recursive=True)}
        root.terminate()
    except psutil.Error:
        root, tree = None, set()
    orphans_termed = False
    deadline = time.monotonic() + grace
    while True:
        proc.poll()  # reap the server itself (a zombie is no process, but it holds its pid)
        if root is not None and _alive(root):
            try:
                tree |= set(root.children(recursive=True))  # engine processes started meanwhile
            except psutil.Error:
                pass
        alive = [p for p in tree if _alive(p)]
        if not alive or time.monotonic() >= deadline:
            break
        if not orphans_termed and (root is None or not _alive(root)):
            for p in alive:  # the server is gone but left processes behind
                try:
                    p.terminate()
                except psutil.Error:
                    pass
            orphans_termed = True
        time.sleep(0.1)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _sigterm_to_exit(signum, frame):
    raise SystemExit(128 + signum)


def _exit_on_sigterm() -> None:
    """A bare SIGTERM would end this process without unwinding, leaving the server behind."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_exit)


class ServeRunner:
    """One arm's ``vllm serve`` and its ``vllm bench serve`` rounds (see the module doc)."""

    def __init__(self, spec: dict[str, Any], log_dir: Path):
        self.spec = spec
        self.settings = spec["settings"]
        self.log_dir = Path(log_dir)
        self.timeout = float(self.settings.get("timeout_s") or DEFAULT_TIMEOUT_S)
        self.port: int | None = None
        self.server_argv: list[str] = []
        self.bench_argv: list[str] = []
        self.results: list[str] = []  # bench result JSON paths, in order
        self.server_pid: int | None = None  # kept after close(): info() records it
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._tag = ""

    # ------------------------------------------------------------------ server
    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        n = 1
        while (self.log_dir / f"serve-{n}.log").exists():  # a later visit of the same arm
            n += 1
        self._tag = f"serve-{n}"
        self.port = free_port()
        self.server_argv = [sys.executable, "-m", CLI, "serve", self.spec["model"],
                            "--host", "127.0.0.1", "--port", str(self.port),
                            "--disable-uvicorn-access-log", *cli_flags(engine_args(self.spec))]
        self._log = open(self.server_log, "w", encoding="utf-8")
        self._log.write("$ " + " ".join(self.server_argv) + "\n")
        self._log.flush()
        _exit_on_sigterm()
        atexit.register(self.close)
        try:
            # Same process group as the caller (no new session): ending the worker's group ends it.
            self._proc = subprocess.Popen(self.server_argv, stdout=self._log, stdin=subprocess.DEVNULL,
                                          stderr=subprocess.STDOUT, env=_local_env())
            self.server_pid = self._proc.pid
            self._wait_healthy()
        except BaseException:
            self.close()
            raise

    @property
    def server_log(self) -> Path:
        return self.log_dir / f"{self._tag}.log"

    def _wait_healthy(self) -> None:
        url = f"http://127.0.0.1:{self.port}/health"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self.timeout
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise self._log_error(f"vllm serve exited with code {rc} before it was ready")
            try:
                with opener.open(url, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass  # not listening yet, or the engine is still starting
            if time.monotonic() >= deadline:
                raise self._log_error(f"vllm serve not ready after {self.timeout:.0f}s")
            time.sleep(1.0)

    def _log_error(self, what: str, log: Path | None = None) -> ServeError:
        lines = _read_lines(log or self.server_log)
        cause = root_cause(lines[1:]) or "no error line in its log"
        tail = "\n".join(lines[-_TAIL:])
        return ServeError(f"{what}: {cause}\nlog: {log or self.server_log}\n{tail}")

    def close(self) -> None:
        if self._proc is not None:
            stop_tree(self._proc)
            self._proc = None  # only now: a close() interrupted by a signal runs again at exit
        log, self._log = self._log, None
        if log is not None:
            log.close()
        atexit.unregister(self.close)

    def __enter__(self) -> ServeRunner:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ bench
    def _bench(self, name: str, n: int, seed: int, buckets: dict) -> dict[str, Any]:
        """One ``vllm bench serve`` of ``n`` prompts; its result JSON."""
        if self._proc is None:
            raise ServeError(f"vllm bench serve ({name}): the server is not running (start() first)")
        s = self.settings
        k = s["images_per_prompt"]
        out = self.log_dir / f"{self._tag}-{name}.json"
        log = out.with_suffix(".log")
        argv = [sys.executable, "-m", CLI, "bench", "serve",
                "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
                "--host", "127.0.0.1", "--port", str(self.port), "--model", self.spec["model"],
                "--dataset-name", "random-mm", "--num-prompts", str(n), "--seed", str(seed),
                "--random-input-len", str(s["input_len"]), "--random-output-len", str(s["output_len"]),
                "--random-range-ratio", "0",
                "--random-mm-base-items-per-request", str(k),
                "--random-mm-num-mm-items-range-ratio", "0",
                "--random-mm-limit-mm-per-prompt", json.dumps({"image": k, "video": 0}),
                "--random-mm-bucket-config", repr(buckets),
                "--ignore-eos", "--temperature", "0",
                "--percentile-metrics", "ttft", "--metric-percentiles", "99",
                "--disable-tqdm", "--save-result", "--save-detailed",
                "--result-dir", str(self.log_dir), "--result-filename", out.name,
                "--metadata", f"arm={self.spec.get('arm', self.spec['backend'])}", f"phase={name}",
                f"seed={seed}"]
        if s.get("concurrency"):
            argv += ["--max-concurrency", str(s["concurrency"])]
        if self.spec["trust_remote_code"]:
            argv += ["--trust-remote-code"]
        self.bench_argv = argv
        out.unlink(missing_ok=True)
        with open(log, "w", encoding="utf-8") as f:
            f.write("$ " + " ".join(argv) + "\n")
            f.flush()
            try:  # run() kills the bench on a timeout or Ctrl-C
                rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=_local_env(), timeout=self.timeout).returncode
            except subprocess.TimeoutExpired:
                raise ServeError(f"vllm bench serve ({name}) did not finish within "
                                 f"{self.timeout:.0f}s\nlog: {log}") from None
        if self._proc.poll() is not None:
            raise self._log_error(f"vllm serve exited with code {self._proc.returncode} "
                                  f"during vllm bench serve ({name})")
        if rc != 0 or not out.is_file():
            raise self._log_error(f"vllm bench serve ({name}) failed with exit code {rc}", log)
        self.results.append(str(out))
        result = json.loads(out.read_text())
        if result.get("completed") != n:
            errors = [e for e in result.get("errors") or [] if e]
            first = errors[0].strip().splitlines()[-1] if errors else "no error recorded"
            raise ServeError(f"vllm bench serve ({name}): {result.get('completed')} of {n} "
                             f"requests completed: {first}\nresult: {out}")
        return result

    def warmup(self) -> None:
        """Untimed: ``warmup_requests()`` prompts, split over one bench per image size so that
        every size's first-shape costs (compiles, plan builds) are paid here, not in a round."""
        total = warmup_requests(self.settings)
        sizes = self.settings["image_sizes"]
        if total <= 0:
            return
        for i, (w, h) in enumerate(sizes):
            n = max(1, total // len(sizes) + (i < total % len(sizes)))
            self._bench(f"warmup-{w}x{h}", n, self.spec["seed"] + 1 + i, {(h, w, 1): 1.0})

    def round(self, r: int) -> dict[str, float | None]:
        """One timed bench; new random images every round (seed + 1000 * (r + 1))."""
        s = self.settings
        n = s["num_prompts"]
        res = self._bench(f"round-{r}", n, round_seed(self.spec, r), bucket_config(s))
        dur = float(res["duration"])
        return {
            "requests_per_s": float(res["request_throughput"]),
            "input_tokens_per_s": res["total_input_tokens"] / dur,
            "input_tokens": res["total_input_tokens"],
            "ttft_mean_ms": res.get("mean_ttft_ms"),
            "ttft_p99_ms": res.get("p99_ttft_ms"),
            "images_per_s": n * s["images_per_prompt"] / dur,
            "encoder_images_per_s": None,  # the encoder timer is in the server, out of reach
            "wall_s": dur,
        }

    def info(self) -> dict[str, Any]:
        return {
            "server_argv": self.server_argv,
            "port": self.port,
            "server_pid": self.server_pid,
            "bench_argv": self.bench_argv,
            "server_log": str(self.server_log) if self._tag else None,
            "bench_results": list(self.results),
            "engine_settings": {**NO_CACHES, "fresh_images_each_repeat": True,
                                "warmup": "one bench per image size"},
        }
