"""The run-directory layout shared by `vit-parity run` (writer) and `vit-parity report` (reader).

    reports/<run-id>/
        run.json                 RunInfo: config snapshot, arms in order (baseline first), each
                                 arm's effective settings
        <arm>/
            status.json          ArmStatus: state per phase, error text if any
            settings.json        the arm's effective settings as they ran (ARM_SETTINGS), and
                                 the versions (read by its interpreter) and GPU that ran it
            lm_eval/             lm-eval's --output_path (results_*.json, samples_*.jsonl as lm-eval writes them)
            throughput.json      Throughput (see below)
            command.json         the exact argv + env overrides each phase ran with
            env.json             versions and device
        report.md, report.html, summary.json   (written by the report)

An arm is one setting under test: a ViT backend, engine arguments, environment, an interpreter
(``harness.arms``). An arm is complete only when status.json says every phase is "complete";
anything else (missing, "running" from an interrupted process, "failed") is redone by a rerun,
and shown as such by the report.
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
RUN_INFO_SCHEMA = 2  # 1: "backends" (an arm per backend, named after it); 2: "arms" + "arm_settings"
STATUS = "status.json"
ARM_SETTINGS = "settings.json"
LM_EVAL_DIR = "lm_eval"
THROUGHPUT = "throughput.json"
COMMAND = "command.json"
ENV = "env.json"
AA_CONTROL = "aa_control"  # the A/A control's directory (and reserved arm name)


@dataclass
class RunInfo:
    run_id: str
    engine: Literal["vllm", "hf"]
    arms: list[str]  # arm names = directory names, baseline first
    baseline: str
    tasks: list[str]
    model: str
    config: dict[str, Any] = field(default_factory=dict)  # the validated config, as a dict
    # arm -> effective settings: {"backend", "engine_args", "env", "python"} (see harness.arms)
    arm_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema: int = RUN_INFO_SCHEMA

    def write(self, run_dir: Path) -> None:
        atomic_write_json(Path(run_dir) / RUN_INFO, asdict(self))

    @classmethod
    def read(cls, run_dir: Path) -> RunInfo:
        """Raises OSError, or ValueError for a file that is not a run.json (damaged, or of
        another shape). A schema-1 file (``backends``: one arm per backend) reads as arms."""
        data = json.loads((Path(run_dir) / RUN_INFO).read_text(encoding="utf-8"))
        if isinstance(data, dict) and "backends" in data and "arms" not in data:
            data = _from_schema_1(data)
        _check_shape(data, {"run_id": str, "engine": str, "arms": list, "baseline": str,
                            "tasks": list, "model": str, "config": dict, "arm_settings": dict,
                            "schema": int}, RUN_INFO)
        for key in ("arms", "tasks"):
            if not all(isinstance(x, str) for x in data.get(key, [])):
                raise ValueError(f"{RUN_INFO}: {key!r} is not a list of names")
        if not all(isinstance(v, dict) for v in data.get("arm_settings", {}).values()):
            raise ValueError(f"{RUN_INFO}: 'arm_settings' holds a non-object value")
        return cls(**data)


def _from_schema_1(data: dict) -> dict:
    """Run dirs written before arms: each backend was an arm of that name."""
    data = dict(data)
    names = data.pop("backends")
    data["arms"] = names
    if isinstance(names, list):
        data["arm_settings"] = {n: {"backend": n} for n in names if isinstance(n, str)}
    data["schema"] = 1
    return data


@dataclass
class ArmStatus:
    arm: str
    phases: dict[str, PhaseState] = field(default_factory=lambda: dict.fromkeys(PHASES, "pending"))
    errors: dict[str, str] = field(default_factory=dict)  # phase -> error text (last lines)
    notes: dict[str, str] = field(default_factory=dict)  # phase -> e.g. "terminated after results"

    @property
    def complete(self) -> bool:
        return all(self.phases.get(p) == "complete" for p in PHASES)

    def write(self, arm_dir: Path) -> None:
        atomic_write_json(Path(arm_dir) / STATUS, asdict(self))

    @classmethod
    def read(cls, arm_dir: Path) -> ArmStatus | None:
        """None when absent or unreadable (a corrupt status means: redo it)."""
        try:
            data = json.loads((Path(arm_dir) / STATUS).read_text(encoding="utf-8"))
            if isinstance(data, dict) and "backend" in data and "arm" not in data:
                data["arm"] = data.pop("backend")  # written before arms
            _check_shape(data, {"arm": str, "phases": dict, "errors": dict, "notes": dict}, STATUS)
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


# throughput.json (written atomically by the throughput phase, one per arm, and one in
# AA_CONTROL/ for the A/A control: the baseline's settings in a second engine):
# {
#   "engine": "vllm" | "hf", "mode": "offline" | "serve",
#   "arm": name, "backend": name,
#   "control_of": name,     # A/A control only: the arm it repeats (the baseline)
#   "arm_env": {...},       # the arm's environment variables as the child process had them
#   "engine_config": {...}, # vllm offline: the engine's configuration as vLLM parsed it
#   "metrics": {            # medians over rounds, warm-up excluded
#       vllm: "images_per_s", "encoder_images_per_s" (vLLM's encoder-forward timer, offline on a
#             GPU only), "requests_per_s", "input_tokens_per_s", "ttft_mean_ms", "ttft_p99_ms"
#       hf:   "images_per_s", "prefill_tokens_per_s"
#   },
#   "repeats": [ {same keys, "round": r, "slot": i}, ... ],  # one per timed round: "round" pairs
#                           # an arm's round r with the baseline's round r (same images); "slot"
#                           # is its place in the run's whole timing order
#   "interleave": {"together": bool, "order": [[round, arm], ...], "rounds": n},
#   "settings": {...},      # image sizes, num prompts, output len, concurrency, warmup, repeats
#   "engine_settings": {...}  # vllm: prefix caching and multimodal processor cache (both off)
# }
