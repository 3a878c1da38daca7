"""Synthetic run directories in the exact layout `vit-parity run` + lm-eval 0.4.13 write.

lm-eval's files are written by lm-eval itself: ``EvaluationTracker.save_results_aggregated`` /
``save_results_samples`` (file names, model-name sanitising, sample sanitising, task hashes),
with task numbers from lm-eval's own metric functions (``mean``, ``mean_stderr``, and for groups
``aggregate_subtask_metrics`` + ``pooled_sample_stderr`` as ``weight_by_size: true`` does).
The dict shapes mirror a real `vit-parity demo` run (results + groups + group_subtasks, ...).

The tests at the bottom check the generator against lm-eval's own file-finding helpers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vit_backend_plugin.common.files import atomic_write_json
from vit_backend_plugin.rundir.layout import ArmStatus, RunInfo

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.metrics import (  # noqa: E402
    aggregate_subtask_metrics,
    mean,
    mean_stderr,
    pooled_sample_stderr,
)
from lm_eval.loggers import EvaluationTracker  # noqa: E402
from lm_eval.utils import hash_string  # noqa: E402

MODEL = "Org/Tiny-VL-2B"  # sanitised by lm-eval to "Org__Tiny-VL-2B"
LETTERS = "ABCD"

# group -> (group alias, [(task, subject alias)]): a slice of lm-eval's mmmu_val tree
MMMU_SLICE = {
    "mmmu_val_art_and_design": ("Art and Design", [("mmmu_val_art", "Art"), ("mmmu_val_design", "Design")]),
    "mmmu_val_science": ("Science", [("mmmu_val_math", "Math"), ("mmmu_val_physics", "Physics")]),
}


def tasks_of(per_task: int) -> dict[str, int]:
    return {t: per_task for _, (_, subs) in MMMU_SLICE.items() for t, _ in subs}


def gold(task: str, doc_id: int) -> str:
    return LETTERS[(doc_id * 7 + len(task)) % 4]


def baseline_answers(n_per_task: int, accuracy: float = 0.7) -> dict[tuple[str, int], str]:
    """Deterministic answers, right on about ``accuracy`` of the items."""
    out = {}
    for task, n in tasks_of(n_per_task).items():
        for d in range(n):
            right = (d * 37 + len(task)) % 100 < accuracy * 100
            g = gold(task, d)
            out[(task, d)] = g if right else LETTERS[(LETTERS.index(g) + 1) % 4]
    return out


def flip_every(answers: dict, k: int, *, to: str = "wrong") -> dict:
    """Change the answer on every k-th item: to a different wrong letter, or to the right one."""
    out = dict(answers)
    for i, (key, a) in enumerate(sorted(answers.items())):
        if i % k == 0:
            g = gold(*key)
            if to == "right":
                out[key] = g
            else:
                out[key] = next(x for x in LETTERS if x != g and x != a)
    return out


def _doc(task: str, doc_id: int) -> dict:
    subject = task.removeprefix("mmmu_val_").title()
    return {
        "id": f"validation_{subject}_{doc_id + 1}", "question": f"<image 1> Question {doc_id} on {subject}?",
        "options": str(["circle", "square", "triangle", "cross"]), "explanation": "",
        "image_1": hash_string(f"{task}{doc_id}"), **{f"image_{k}": "None" for k in range(2, 8)},
        "img_type": "['Diagrams']", "answer": gold(task, doc_id), "topic_difficulty": "Easy",
        "question_type": "multiple-choice", "subfield": subject,
    }


def _sample(task: str, doc_id: int, answer: str) -> dict:
    doc = _doc(task, doc_id)
    prompt = f"{doc['question']}\n(A) circle\n(B) square\n(C) triangle\n(D) cross\nAnswer with the option's letter."
    gen_kwargs = {"until": ["<|endoftext|>"], "temperature": 0.0, "do_sample": False, "max_gen_toks": 8}
    text = f"The answer is ({answer})."
    return {
        "doc_id": doc_id, "doc": doc, "target": doc["answer"],
        "arguments": [(prompt, gen_kwargs, {"visual": [doc["image_1"]]})],
        "resps": [[text]], "filtered_resps": [text], "filter": "none", "metrics": ["acc"],
        "doc_hash": hash_string(json.dumps(doc, sort_keys=True)), "prompt_hash": hash_string(prompt),
        "target_hash": hash_string(doc["answer"]), "acc": float(answer == doc["answer"]),
    }


def _entry(name: str, alias: str, scores: list[float]) -> dict:
    return {"name": name, "alias": alias, "sample_len": len(scores), "acc,none": mean(scores),
            "acc_stderr,none": mean_stderr(scores) if len(scores) > 1 else "N/A"}


def write_lm_eval(lm_eval_dir: Path, answers: dict[tuple[str, int], str], model: str = MODEL) -> Path:
    """Write results_*.json + samples_*.jsonl through lm-eval's EvaluationTracker; returns results path."""
    samples: dict[str, list[dict]] = {}
    for (task, d), a in sorted(answers.items()):
        samples.setdefault(task, []).append(_sample(task, d, a))
    results, groups, group_subtasks = {}, {}, {"mmmu_val": []}
    configs, versions, n_shot, hib, n_samples = {}, {"mmmu_val": "0.0"}, {}, {"mmmu_val": None}, {}
    sizes_top, acc_top, se_top = [], [], []
    for group, (galias, subs) in MMMU_SLICE.items():
        present = [(t, a) for t, a in subs if t in samples]
        if not present:
            continue
        group_subtasks["mmmu_val"].append(group)
        group_subtasks[group] = [t for t, _ in present]
        sizes, accs, ses = [], [], []
        for task, alias in present:
            scores = [s["acc"] for s in samples[task]]
            results[task] = _entry(task, alias, scores)
            sizes.append(len(scores))
            accs.append(results[task]["acc,none"])
            ses.append(results[task]["acc_stderr,none"] if len(scores) > 1 else 0.0)
            configs[task] = {"task": task, "task_alias": alias, "dataset_path": "MMMU/MMMU",
                             "output_type": "generate_until", "num_fewshot": 0,
                             "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
            versions[task], n_shot[task], hib[task] = 0.0, 0, {"acc": True}
            n_samples[task] = {"original": 30, "effective": len(scores)}
        g = {"alias": galias, "name": group, "sample_len": sum(sizes),
             "acc,none": aggregate_subtask_metrics(accs, sizes, True),
             "acc_stderr,none": pooled_sample_stderr(ses, sizes), "sample_count": {"acc,none": sum(sizes)}}
        groups[group] = results[group] = g
        versions[group], n_shot[group], hib[group] = "0.0", 0, None
        sizes_top.append(sum(sizes))
        acc_top.append(g["acc,none"])
        se_top.append(g["acc_stderr,none"])
    top = {"alias": "mmmu_val", "name": "mmmu_val", "sample_len": sum(sizes_top),
           "acc,none": aggregate_subtask_metrics(acc_top, sizes_top, True),
           "acc_stderr,none": pooled_sample_stderr(se_top, sizes_top), "sample_count": {"acc,none": sum(sizes_top)}}
    groups["mmmu_val"] = results["mmmu_val"] = top
    out = {
        "results": results, "groups": groups, "group_subtasks": group_subtasks, "configs": configs,
        "versions": versions, "n-shot": n_shot, "higher_is_better": hib, "n-samples": n_samples,
        "config": {"model": "vllm-vlm", "model_args": f"pretrained={model}", "batch_size": "auto",
                   "batch_sizes": [], "limit": None, "bootstrap_iters": 100000, "gen_kwargs": None},
        "git_hash": None, "date": time.time(), "lm_eval_version": "0.4.13",
    }
    tracker = EvaluationTracker(output_path=str(lm_eval_dir))
    tracker.general_config_tracker.log_experiment_args(
        model_source="vllm-vlm", model_args=f"pretrained={model}", system_instruction=None,
        chat_template=None, fewshot_as_multiturn=False,
    )
    tracker.save_results_aggregated(results=out, samples=samples)
    for task in out["configs"]:  # as lm_eval's CLI does
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return lm_eval_dir / tracker.general_config_tracker.model_name_sanitized / f"results_{tracker.date_id}.json"


VLLM_SPEED = {"requests_per_s": 10.0, "input_tokens_per_s": 5000.0, "ttft_mean_ms": 100.0, "ttft_p99_ms": 200.0}


JITTER = (0.99, 1.0, 1.01)  # per-round factors: the median is the metric itself


def write_throughput(bdir: Path, metrics: dict[str, float], engine: str = "vllm") -> None:
    """Three timed rounds as the interleaved harness writes them, ±1% apart in an order that
    depends on the arm's name (so per-round ratios vary and intervals have a width)."""
    k = sum(map(ord, bdir.name)) % len(JITTER)
    factors = JITTER[k:] + JITTER[:k]
    repeats = [{**{m: v * f for m, v in metrics.items()}, "round": r, "slot": 2 * r}
               for r, f in enumerate(factors)]
    atomic_write_json(bdir / "throughput.json", {
        "engine": engine, "metrics": metrics, "repeats": repeats,
        "interleave": {"together": True, "rounds": len(repeats), "order": [[r, bdir.name] for r in range(len(repeats))]},
        "settings": {"num_prompts": 100, "output_len": 1, "warmup": 2, "repeats": 3},
    })


def write_control(run_dir: Path, of: str, metrics: dict[str, float] | None = None) -> None:
    """The A/A control's throughput.json (the baseline's settings timed by a second engine)."""
    from vit_backend_plugin.rundir.layout import AA_CONTROL

    (run_dir / AA_CONTROL).mkdir(parents=True, exist_ok=True)
    write_throughput(run_dir / AA_CONTROL, metrics or dict(VLLM_SPEED))
    path = run_dir / AA_CONTROL / "throughput.json"
    atomic_write_json(path, {**json.loads(path.read_text()), "control_of": of})


@dataclass
class Backend:
    answers: dict | None = None  # None: no lm-eval output
    speed: dict | None = field(default_factory=lambda: dict(VLLM_SPEED))
    phases: dict | None = None  # None: both complete
    errors: dict = field(default_factory=dict)
    exists: bool = True


def make_run(root: Path, backends: dict[str, Backend], *, baseline: str | None = None,
             parity: dict | None = None, engine: str = "vllm", run_id: str = "r1") -> Path:
    run_dir = root / run_id
    names = list(backends)
    config = {"engine": engine, "backends": names, "tasks": ["mmmu_val"]}
    if parity is not None:
        config["parity"] = parity
    RunInfo(run_id=run_id, engine=engine, arms=names, baseline=baseline or names[0],
            tasks=["mmmu_val"], model=MODEL, config=config).write(run_dir)
    for name, b in backends.items():
        if not b.exists:
            continue
        bdir = run_dir / name
        bdir.mkdir(parents=True, exist_ok=True)
        phases = b.phases or {"accuracy": "complete", "throughput": "complete"}
        ArmStatus(arm=name, phases=phases, errors=b.errors).write(bdir)
        if b.answers is not None:
            write_lm_eval(bdir / "lm_eval", b.answers)
        if b.speed is not None:
            write_throughput(bdir, b.speed)
    return run_dir


# --------------------------------------------------------------------------- the generator itself
def test_layout_is_what_lm_eval_finds(tmp_path):
    from lm_eval.utils import (
        get_latest_filename,
        get_results_filenames,
        get_sample_results_filenames,
    )

    res = write_lm_eval(tmp_path, baseline_answers(5))
    assert res.parent.name == "Org__Tiny-VL-2B"
    files = [str(p) for p in res.parent.iterdir()]
    assert get_latest_filename(get_results_filenames(files)) == str(res)
    assert len(get_sample_results_filenames(files)) == 4
    raw = json.loads(res.read_text())
    assert raw["model_name_sanitized"] == "Org__Tiny-VL-2B" and set(raw["task_hashes"]) == set(tasks_of(5))
    line = json.loads((res.parent / f"samples_mmmu_val_art_{res.stem.removeprefix('results_')}.jsonl")
                      .read_text().splitlines()[0])
    assert set(line) >= {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "acc"}
    assert line["arguments"]["gen_args_0"]["arg_0"].startswith("<image 1>")  # sanitised by lm-eval


def test_flip_every_changes_a_fifth():
    base = baseline_answers(25)
    flipped = flip_every(base, 5)
    assert sum(base[k] != flipped[k] for k in base) == len(base) // 5
