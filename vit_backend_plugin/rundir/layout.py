"""The run-directory layout shared by `vit-parity run` (writer) and `vit-parity report` (reader).

    reports/<run-id>/
        run.json                 RunInfo: config snapshot, backends in order, baseline
        <backend>/
            status.json          BackendStatus: state per phase, error text if any
            lm_eval/             lm-eval's --output_path (results_*.json, samples_*.jsonl as lm-eval writes them)
            throughput.json      Throughput (see below)
            command.json         the exact argv + env overrides each phase ran with
            env.json             versions and device
        report.md, report.html, summary.json   (written by the report)

A backend is complete only when status.json says every phase is "complete";
anything else (missing, "running" from an interrupted process, "failed") is redone
by a rerun, and shown as such by the report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from vit_backend_plugin.common.files import atomic_write_json

PhaseState = Literal["pending", "running", "complete", "failed"]
PHASES = ("accuracy", "throughput")
_STATES = set(PhaseState.__args__)

RUN_INFO = "run.json"
STATUS = "status.json"
LM_EVAL_DIR = "lm_eval"
THROUGHPUT = "throughput.json"
COMMAND = "command.json"
ENV = "env.json"


@dataclass
class RunInfo:
    run_id: str
    engine: Literal["vllm", "hf"]
    backends: list[str]
    baseline: str
    tasks: list[str]
    model: str
    config: dict[str, Any] = field(default_factory=dict)  # the validated config, as a dict

    def write(self, run_dir: Path) -> None:
        atomic_write_json(Path(run_dir) / RUN_INFO, asdict(self))

    @classmethod
    def read(cls, run_dir: Path) -> RunInfo:
        """Raises OSError, or ValueError for a file that is not a run.json (damaged, or of
        another shape)."""
        data = json.loads((Path(run_dir) / RUN_INFO).read_text(encoding="utf-8"))
        _check_shape(data, {"run_id": str, "engine": str, "backends": list, "baseline": str,
                            "tasks": list, "model": str, "config": dict}, RUN_INFO)
        for key in ("backends", "tasks"):
            if not all(isinstance(x, str) for x in data[key]):
                raise ValueError(f"{RUN_INFO}: {key!r} is not a list of names")
        return cls(**data)


@dataclass
class BackendStatus:
    backend: str
    phases: dict[str, PhaseState] = field(default_factory=lambda: dict.fromkeys(PHASES, "pending"))
    errors: dict[str, str] = field(default_factory=dict)  # phase -> error text (last lines)
    notes: dict[str, str] = field(default_factory=dict)  # phase -> e.g. "terminated after results"

    @property
    def complete(self) -> bool:
        return all(self.phases.get(p) == "complete" for p in PHASES)

    def write(self, backend_dir: Path) -> None:
        atomic_write_json(Path(backend_dir) / STATUS, asdict(self))

    @classmethod
    def read(cls, backend_dir: Path) -> BackendStatus | None:
        """None when absent or unreadable (a corrupt status means: redo it)."""
        try:
            data = json.loads((Path(backend_dir) / STATUS).read_text(encoding="utf-8"))
            _check_shape(data, {"backend": str, "phases": dict, "errors": dict, "notes": dict}, STATUS)
            if not all(v in _STATES for v in data.get("phases", {}).values()):
                raise ValueError(f"{STATUS}: unknown phase state")
            for key in ("errors", "notes"):
                if not all(isinstance(v, str) for v in data.get(key, {}).values()):
                    raise ValueError(f"{STATUS}: {key!r} holds a non-text value")
            return cls(**data)
        except (OSError, ValueError, TypeError):  # TypeError: a required key is missing
            return None


def _check_shape(data: object, fields: dict[str, type], what: str) -> None:
    """A JSON object whose keys are among ``fields``, each of its type (missing ones are left to
    the dataclass): anything else is a damaged or foreign file, reported as ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} is not a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {', '.join(unknown)}")
    for key, kind in fields.items():
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"{what}: {key!r} is not a {kind.__name__}")


# throughput.json (written atomically by the throughput phase):
# {
#   "engine": "vllm" | "hf",
#   "metrics": {            # medians over repeats, warm-up excluded
#       vllm: "images_per_s", "encoder_images_per_s" (vLLM's encoder-forward timer), "requests_per_s", "input_tokens_per_s", "ttft_mean_ms", "ttft_p99_ms"
#       hf:   "images_per_s", "prefill_tokens_per_s"
#   },
#   "repeats": [ {same keys}, ... ],
#   "settings": {...},      # image sizes, num prompts, output len, concurrency, warmup, repeats
#   "engine_settings": {...}  # vllm: prefix caching and multimodal processor cache (both off)
# }
