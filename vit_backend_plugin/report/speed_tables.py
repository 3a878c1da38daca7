"""The report's speed tables from the summary: the verdicts with intervals (speed_stats.py) and
the medians over the timed rounds. Cells are plain text; render.py escapes them."""

from __future__ import annotations

from typing import Any

from vit_backend_plugin.report.metrics import BENCH_SERVE_ENGINE, SPEED_METRICS
from vit_backend_plugin.report.speed_stats import fmt_resolution
from vit_backend_plugin.report.table import Table
from vit_backend_plugin.rundir.layout import AA_CONTROL


def _label(metric: str) -> str:
    return SPEED_METRICS.get(metric, (metric, True))[0]


def fmt_num(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 10000 else f"{v:.4g}"


def control_label(ctl: dict[str, Any]) -> str:
    return f"{AA_CONTROL} (A/A control of {ctl['control_of'] or 'the baseline'})"


def fmt_speed(sp: dict[str, Any] | None) -> str:
    """An arm's speed verdict for the verdict list: "speed: faster (encoder images/s ×1.08 ...)"."""
    return "" if sp is None else f"speed: {sp['verdict']} ({sp['reason']})"


def _comparisons(s: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = list(s["speed"].items())
    if s["speed_control"] is not None:
        out.append((control_label(s["speed_control"]), s["speed_control"]))
    return out


def _rounds(r: dict[str, Any]) -> str:
    if r["method"] == "paired":
        return str(r["rounds"])
    return f"{r['n_candidate']} vs {r['n_baseline']} (unpaired)"


def _smallest(comparisons: list[tuple[str, dict[str, Any]]]) -> str:
    """The finest resolution among the arms' verdict metrics, as a sentence."""
    finest = min(((sp["metrics"][sp["primary_metric"]]["resolution"], name, sp["primary_metric"])
                  for name, sp in comparisons if sp["primary_metric"]
                  and sp["metrics"][sp["primary_metric"]]["resolution"] is not None), default=None)
    if finest is None:
        return ""
    res, name, metric = finest
    return f"The smallest ratio this run resolves: {fmt_resolution(res)} ({_label(metric)}, {name}). "


def timing_text(timing: dict[str, Any], methods: set[str]) -> str:
    """How the rounds were timed and compared, in words."""
    if timing["interleaved"] is None:
        return "No timed rounds were recorded: one measurement per arm gives no interval."
    if timing["interleaved"]:
        how = "Rounds were interleaved across arms (A B, B A, …)" + {
            True: ", every arm's engine alive at once",
            False: ", one arm's engine at a time in alternating visits",
        }.get(timing["together"], "")
    else:
        how = "Rounds were not interleaved (each arm timed in its own block)"
    if timing["rounds"] is not None:
        how += f", {timing['rounds']} per arm"
    if methods == {"paired"}:
        return how + "; each round paired with the baseline's round on the same images."
    if "paired" in methods:
        return how + ("; paired by round where both arms recorded rounds, unpaired (Welch's t "
                      "on log values) elsewhere.")
    return how + ("; the repeats record no round (an older run), so they are compared unpaired "
                  "(Welch's t on log values), which is less sensitive than pairing.")


def verdict_table(s: dict[str, Any]) -> Table | None:
    """Ratio [interval], verdict, rounds and resolution per arm and headline metric."""
    comparisons = _comparisons(s)
    if not any(sp["metrics"] for _, sp in comparisons):
        return None
    timing = s["speed_timing"]
    conf = f"{timing['confidence']:.0%}"
    head = ["Arm", "Metric", "Ratio (arm / baseline)", f"{conf} interval", "Verdict", "Rounds",
            "Resolves"]
    rows = []
    for name, sp in comparisons:
        for k, r in sp["metrics"].items():
            ci = "—" if r["ci_low"] is None else f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            rows.append([name, _label(k) + (" ◆" if k == sp["primary_metric"] else ""),
                         "—" if r["ratio"] is None else f"×{r['ratio']:.3f}", ci, r["verdict"],
                         _rounds(r), "—" if r["resolution"] is None else fmt_resolution(r["resolution"])])
    methods = {r["method"] for _, sp in comparisons for r in sp["metrics"].values()}
    note = (f"{_smallest(comparisons)}Ratio: the arm's metric over the baseline's, the geometric "
            f"mean of the per-round ratios, with its {conf} t-interval; for TTFT < 1 is faster. "
            "faster / slower: the whole interval on one side of 1; otherwise no detectable "
            "difference. Resolves: the interval's half-width as a factor (×/÷), the smallest "
            "ratio this run could tell from 1. ◆: the metric of the arm's speed verdict. Speed verdicts never change "
            "the exit code. " + timing_text(timing, methods))
    return Table(f"Speed verdicts vs baseline {s['baseline']}", head, rows, note=note, numeric_from=2)


def medians_table(s: dict[str, Any]) -> Table | None:
    order = s["arm_order"]
    ctl = s["speed_control"]
    present = {k for n in order for k in s["arms"][n]["throughput"]}
    if not present:
        return None
    keys = [k for k in SPEED_METRICS if k in present] + sorted(present - set(SPEED_METRICS))
    head = ["Arm", *[_label(k) for k in keys]]
    rows = []
    for n in order:
        b = s["arms"][n]
        row = [n + (" (baseline)" if n == s["baseline"] else "")]
        for k in keys:
            v, x = b["throughput"].get(k), b["speedup"].get(k)
            row.append(f"{fmt_num(v)} (×{x:.2f})" if v is not None and x is not None
                       else fmt_num(v) if v is not None else b["state"])
        rows.append(row)
    if ctl is not None and ctl["throughput"]:
        rows.append([control_label(ctl), *[fmt_num(ctl["throughput"].get(k)) for k in keys]])
    engines = {s["arms"][n]["throughput_engine"] for n in order if s["arms"][n]["throughput"]}
    where = ("`vllm bench serve --save-result` files (--bench-serve): one measurement per arm"
             if engines == {BENCH_SERVE_ENGINE}
             else "Medians over each arm's timed rounds, warm-up excluded (throughput.json)")
    note = (f"{where}. (×N) is the ratio of medians as a speedup over the baseline: "
            "candidate/baseline for rates, baseline/candidate for latencies; > 1 is faster. "
            "Whether a difference is real: the speed verdicts.")
    return Table("Speed", head, rows, note=note)


def speed_tables(s: dict[str, Any]) -> list[Table]:
    return [t for t in (verdict_table(s), medians_table(s)) if t]
