"""summary.json's schema: the report's machine-readable contract (CI reads verdicts from here).

``schema_version`` changes when a field is removed or renamed, or its meaning or type changes;
adding a field keeps it. Version 1 (before arms) had ``backends`` and ``backend_order`` and no
``schema_version``; version 2 speaks of arms and adds versions, settings and warnings; version 3
adds speed verdicts with intervals (``speed``, ``speed_control``, ``speed_timing``) and each
parity's ``min_detectable_delta``, and an arm's ``throughput`` is the median over its timed
rounds as the report takes it (version 2 copied throughput.json's ``metrics``).

The JSON Schema exported from :class:`Summary` ships as ``vit_backend_plugin/data/
summary.schema.json``; regenerate it with ``python -m vit_backend_plugin.report.summary_schema``
(a test checks it equals the model's export).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vit_backend_plugin.report.parity import ParityThresholds, ReportVerdict
from vit_backend_plugin.report.speed_stats import SpeedVerdict

SCHEMA_VERSION = 3
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "data" / "summary.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResultRow(_Strict):
    """One task or group line of lm-eval's results, copied (never recomputed)."""

    name: str
    alias: str
    depth: int = Field(description="0: a requested task/group; 1: its subgroups; 2: subjects")
    is_group: bool
    metric: str | None = Field(description='"metric,filter", e.g. "acc,none"')
    value: float | None
    stderr: float | None = Field(description='None where lm-eval wrote "N/A"')
    n: int | None
    version: Any = None
    n_shot: Any = None


class Environment(_Strict):
    source: Literal["env.json", "lm-eval results"] | None = Field(
        description="where the versions come from; None: not recorded")
    versions: dict[str, str | None] = Field(
        description='"python" and package -> version as recorded (None: not installed)')
    gpu: str | None = Field(description='GPU names joined by ", "; "none": no GPU; None: unknown')
    driver: str | None = Field(description="NVIDIA driver version(s); None: unknown")
    platform: str | None


class LmEvalRecord(_Strict):
    """What lm-eval wrote about the run beside its scores (``rundir.lm_eval_output.Recorded``)."""

    model: Any = Field(description='lm-eval model type, e.g. "vllm-vlm"')
    model_name: Any = Field(description="pretrained model path or name")
    model_args: Any
    limit: Any
    gen_kwargs: Any
    batch_size: Any
    tasks: list[str]
    task_versions: dict[str, Any]
    n_shot: dict[str, Any]
    n_samples: dict[str, Any] = Field(description="task -> effective item count")
    chat_template_sha: Any
    system_instruction_sha: Any
    fewshot_as_multiturn: Any
    lm_eval_version: Any
    transformers_version: Any


class Arm(_Strict):
    state: Literal["complete", "failed", "incomplete", "missing"]
    problems: list[str] = Field(description="everything wrong with this arm's data, in words")
    errors: dict[str, str] = Field(description="phase -> error text (run dirs)")
    accuracy: float | None = Field(description="lm-eval's value of the first requested task")
    stderr: float | None
    metric: str | None
    task: str | None
    n_items: int | None
    results: list[ResultRow]
    results_file: str | None
    samples_logged: int
    throughput: dict[str, float] = Field(
        description="speed metric (report/metrics.py) -> median over the timed rounds (warm-up "
                    "excluded); throughput.json's value where it has no rounds")
    throughput_engine: str | None
    throughput_file: str | None
    speedup: dict[str, float | None] = Field(description="metric -> speedup over the baseline (> 1: faster)")
    settings: dict[str, Any] = Field(description="run.json's arm_settings: backend, engine_args, env, python")
    environment: Environment
    lm_eval: LmEvalRecord | None


class DifferingItem(_Strict):
    task: str
    doc_id: int
    subject: str
    target: str
    baseline_answer: str
    answer: str
    baseline_correct: bool
    correct: bool


class Parity(_Strict):
    """An arm against the baseline on the items both answered (report/parity.py). Statistics
    are None for ERROR (no per-item data to compare)."""

    verdict: ReportVerdict
    reason: str
    n: int | None = None
    agreement: float | None = None
    b: int | None = Field(None, description="baseline right, arm wrong")
    c: int | None = Field(None, description="baseline wrong, arm right")
    mcnemar_p: float | None = None
    acc_baseline: float | None = None
    acc_candidate: float | None = None
    delta_acc: float | None = Field(None, description="fraction, arm - baseline")
    ci_low: float | None = None
    ci_high: float | None = None
    only_baseline: int | None = None
    only_candidate: int | None = None
    min_detectable_delta: float | None = Field(
        None, description="smallest |delta_acc| (fraction) McNemar's exact test detects with 80% "
                          "power at the thresholds' alpha, given n and the observed discordance "
                          "(report/power.py); None: no change could be detected with n items")
    differing_items: list[DifferingItem]


class SpeedRatio(_Strict):
    """One speed metric of an arm against the baseline over the timed rounds (report/speed_stats.py)."""

    metric: str
    higher_is_better: bool = Field(description="rates: true; latencies (TTFT): false")
    method: Literal["paired", "unpaired"] = Field(
        description="paired: round r against the baseline's round r (same images); unpaired: "
                    "repeats without rounds (older run dirs), Welch's t on log values")
    rounds: int = Field(description="pairs compared (paired); the smaller arm's count (unpaired)")
    n_baseline: int
    n_candidate: int
    ratio: float | None = Field(description="arm / baseline of the metric (geometric mean of the "
                                            "per-round ratios); for TTFT < 1 is faster")
    ci_low: float | None = Field(description="interval at speed_timing.confidence; None below 2 rounds")
    ci_high: float | None
    resolution: float | None = Field(
        description="the interval's half-width as a factor (0.021: ratios within x(1 ± 2.1%) of 1 "
                    "are not resolved by this run)")
    verdict: SpeedVerdict


class ArmSpeed(_Strict):
    """An arm's speed verdict: its primary metric's. Never changes the exit code."""

    verdict: SpeedVerdict
    primary_metric: str | None = Field(
        description="encoder_images_per_s when both arms have it, else requests_per_s (vLLM) or "
                    "images_per_s (HF); None: not measured")
    reason: str
    metrics: dict[str, SpeedRatio] = Field(description="headline metric -> comparison")
    within_control: bool | None = Field(
        description="the primary ratio lies inside the A/A control's interval or its mirror image "
                    "about 1 (not told apart from two engines of one setting); None: no control")


class SpeedControl(ArmSpeed):
    """The A/A control: the baseline's settings in a second engine, against the baseline
    (expected: no detectable difference; anything else measures the setup's own drift)."""

    control_of: str | None = Field(description="the arm it repeats, as its throughput.json says")
    state: Literal["complete", "failed", "missing"]
    problems: list[str]
    throughput: dict[str, float] = Field(description="as an arm's throughput")
    throughput_file: str | None


class SpeedTiming(_Strict):
    """How the speed was timed (from the baseline's throughput.json)."""

    confidence: float = Field(description="level of every speed interval")
    interleaved: bool | None = Field(
        description="rounds interleaved across arms (A B, B A, ...); false: each arm timed in one "
                    "block; None: no timed rounds recorded")
    together: bool | None = Field(description="all arms' engines alive at once; None: not recorded")
    rounds: int | None = Field(description="timed rounds per arm; None: not recorded")


class ArmWarning(_Strict):
    """A difference from the baseline the arms did not ask for; shown, never a verdict change."""

    arm: str
    kind: Literal["version", "config", "pairing"]
    key: str = Field(description='what differs: a package, "gpu", a config field, "items"; "*": all')
    message: str


class Summary(_Strict):
    schema_version: Literal[3] = Field(description="changes when a field is removed, renamed or changes meaning")
    source: Literal["run_dir", "lm_eval"] = Field(
        description="a `vit-parity run` directory, or lm-eval output folders (--lm-eval)")
    run_id: str
    model: str
    engine: str
    tasks: list[str]
    baseline: str
    arm_order: list[str] = Field(description="arms in order, baseline included")
    thresholds: ParityThresholds
    problems: list[str] = Field(description="problems of the run as a whole")
    accuracy_measured: bool = Field(
        description="false: a throughput-only run (config accuracy: false); parity is empty")
    warnings: list[ArmWarning]
    arms: dict[str, Arm]
    parity: dict[str, Parity] = Field(
        description="every arm but the baseline -> its verdict (none where accuracy_measured is false)")
    speed: dict[str, ArmSpeed] = Field(description="every arm but the baseline -> its speed verdict")
    speed_control: SpeedControl | None = Field(description="the A/A control; None: not run")
    speed_timing: SpeedTiming


def json_schema() -> dict[str, Any]:
    schema = Summary.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"vit-parity report summary.json, schema_version {SCHEMA_VERSION}"
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
