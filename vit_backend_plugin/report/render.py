"""summary dict -> report.md and report.html (same tables: built once here as lists of strings).

Every string in a view is plain text unless built with a :class:`Markup` (the header and the
table notes, which mix our markup with run data). Much of it comes from the run dir and the
model (arm names, versions, model_args, config values, lm-eval's names, responses, error texts): the HTML is
escaped by jinja2, the markdown by :func:`md_escape` / :func:`md_code`, applied to every plain
string as it is written out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vit_backend_plugin.report.arm_tables import arm_tables
from vit_backend_plugin.report.speed_tables import control_label, fmt_speed, speed_tables
from vit_backend_plugin.report.table import Table

ICON = {"PASS": "✅", "FAIL": "❌", "INCONCLUSIVE": "⚠️", "ERROR": "💥"}
# verdict-list entries that carry no verdict word: the baseline, the A/A control, and the arms
# of a throughput-only run (speed verdict only)
UNLABELLED = ("BASELINE", "CONTROL", "SPEED")
MAX_MD_DIFF_ROWS = 100  # per arm in report.md; summary.json has them all


@dataclass
class View:
    title: str
    header: list[str]  # model, engine, tasks, thresholds
    verdicts: list[tuple[str, str, str, str]]  # (arm, verdict, text, speed verdict or "")
    warnings: list[str]  # differences from the baseline nobody asked for (provenance.py)
    problems: list[str]
    tables: list[Table] = field(default_factory=list)
    differing: list[Table] = field(default_factory=list)


# --------------------------------------------------------------------------- escaping
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
# What could start markup (links, images, HTML, entities, code, emphasis, strikethrough, table
# cells, closing heading marks); "_" only where it can delimit emphasis: FLASH_ATTN stays as is.
_MD_SPECIAL = re.compile(r"[\\`*\[\]<>|~&#]|(?<![^\W_])_|_(?![^\W_])")


def _one_line(x: Any) -> str:
    return _LINE_BREAKS.sub(" ", str(x))


def md_escape(x: Any) -> str:
    """Untrusted text as literal markdown text on one line (safe in a table cell too)."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), _one_line(x))


def md_code(x: Any) -> str:
    """Untrusted text as an inline code span: the fence is longer than any backtick run inside,
    padded where the text starts or ends with a backtick or a space (CommonMark strips one)."""
    text = _one_line(x)
    if not text.strip():
        return md_escape(text)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


@dataclass(frozen=True)
class Markup:
    """How run data goes into the few strings that carry markup of our own."""

    text: Callable[[Any], str]
    code: Callable[[Any], str]
    bold: Callable[[str], str]


MARKDOWN = Markup(text=md_escape, code=md_code, bold=lambda x: f"**{x}**")
PLAIN = Markup(text=str, code=str, bold=str)  # HTML: jinja2 escapes what the template prints


# --------------------------------------------------------------------------- formatting
def fmt_acc(value: float | None, stderr: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f} ± {stderr:.4f}" if stderr is not None else f"{value:.4f} ± N/A"


def fmt_p(p: float | None) -> str:
    return "—" if p is None else (f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}")


def fmt_pts(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:+.2f}"


def fmt_detectable(x: float | None) -> str:
    return "none at this n" if x is None else f"±{x * 100:.2f} pts"


def _metric_parts(metric: str | None) -> tuple[str, str]:
    m, _, f = (metric or "").partition(",")
    return m, f


def _label(row: dict[str, Any]) -> str:
    # lm-eval's table style: the requested task by name, subgroups/subjects indented by alias
    return row["name"] if row["depth"] == 0 else "  " * (row["depth"] - 1) + " - " + row["alias"]


# --------------------------------------------------------------------------- tables
def _accuracy_tables(s: dict[str, Any]) -> list[Table]:
    order = s["arm_order"]
    by_arm = {n: {r["name"]: r for r in s["arms"][n]["results"]} for n in order}
    ref = next((s["arms"][n]["results"] for n in order if s["arms"][n]["results"]), [])
    head = ["Groups", "Version", "Filter", "n-shot", "Metric", *order]

    def cells(row: dict[str, Any], label: str) -> list[str]:
        m, f = _metric_parts(row["metric"])
        vals = []
        for n in order:
            r = by_arm[n].get(row["name"])
            vals.append(fmt_acc(r["value"], r["stderr"]) if r else s["arms"][n]["state"])
        ver = "" if row["version"] is None else str(row["version"])
        shot = "" if row["n_shot"] is None else str(row["n_shot"])
        return [label, ver.removesuffix(".0"), f, shot, m, *vals]

    groups = [cells(r, _label(r)) for r in ref if r["is_group"] or r["depth"] == 0]
    subjects = [cells(r, r["alias"]) for r in ref if not r["is_group"] and r["depth"] > 0]
    out = [Table("Accuracy (lm-eval, value ± stderr)", head, groups, numeric_from=5)]
    if subjects:
        head_s = ["Subject", *head[1:]]
        out.append(Table("Accuracy per subject", head_s, subjects, numeric_from=5, collapsed=True))
    return out


def _parity_table(s: dict[str, Any], m: Markup) -> Table:
    t = s["thresholds"]
    head = ["Arm", "Items", "Agreement", "b (base ✓, cand ✗)", "c (base ✗, cand ✓)",
            "McNemar p", "Δacc (pts)", f"{t['confidence']:.0%} CI (pts)", "Detectable (80% power)",
            "Verdict", "Speed"]
    rows = []
    for name, p in s["parity"].items():
        speed = s["speed"][name]["verdict"]
        if p["verdict"] == "ERROR":
            rows.append([name, *["—"] * 8, f"{ICON['ERROR']} ERROR", speed])
            continue
        agree = "—" if p["agreement"] is None else f"{p['agreement']:.1%}"
        ci = "—" if p["ci_low"] is None else f"[{fmt_pts(p['ci_low'])}, {fmt_pts(p['ci_high'])}]"
        rows.append([name, str(p["n"]), agree, str(p["b"]), str(p["c"]), fmt_p(p["mcnemar_p"]),
                     fmt_pts(p["delta_acc"]), ci, fmt_detectable(p["min_detectable_delta"]),
                     f"{ICON[p['verdict']]} {p['verdict']}", speed])
    note = (f"Paired on the same items against baseline {m.bold(m.text(s['baseline']))}. PASS: McNemar exact "
            f"p ≥ {t['alpha']:g} and the whole CI of Δacc within ±{t['max_abs_delta_points']:g} pts "
            f"(≥ {t['min_items']} items); FAIL: p < {t['alpha']:g} or the CI entirely outside; "
            "otherwise INCONCLUSIVE. Agreement: same parsed answer (lm-eval's MMMU parser). "
            f"Detectable: the smallest change in accuracy McNemar's exact test at α={t['alpha']:g} "
            "would have caught with 80% power, given the items and the discordance observed (a "
            "change beyond the observed discordance taken as moving items one way): a change this "
            "large would have been caught 4 times in 5, a smaller one may pass unnoticed. "
            "Speed: the arm's speed verdict (below).")
    return Table(f"Parity vs baseline {s['baseline']}", head, rows, note=note)


def _differing_tables(s: dict[str, Any], limit: int | None) -> list[Table]:
    base = s["baseline"]
    out = []
    for name, p in s["parity"].items():
        items = p.get("differing_items") or []
        if p["verdict"] == "ERROR":
            continue
        mark = {True: "✓", False: "✗"}
        shown = items if limit is None else items[:limit]
        rows = [[d["subject"], str(d["doc_id"]), d["target"],
                 f"{d['baseline_answer']} {mark[d['baseline_correct']]}",
                 f"{d['answer']} {mark[d['correct']]}"] for d in shown]
        note = "" if len(shown) == len(items) else f"… and {len(items) - len(shown)} more (all in summary.json)"
        if not items:
            note = "none: every item got the same parsed answer and score"
        head = ["Subject", "Doc id", "Target", f"{base} (baseline)", name]
        out.append(Table(f"{name} vs {base}: {len(items)} item(s) differ", head, rows, note=note,
                         numeric_from=99))
    return out


def _verdicts(s: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    out = []
    b0 = s["arms"][s["baseline"]]
    if not s["accuracy_measured"]:
        base_text = f"baseline ({b0['state']})"
    elif b0["accuracy"] is None:
        base_text = f"baseline: no accuracy ({b0['state']})"
    else:
        base_text = (f"baseline: {b0['task']} {_metric_parts(b0['metric'])[0]} "
                     f"{fmt_acc(b0['accuracy'], b0['stderr'])} (n={b0['n_items']})")
    if b0["problems"]:
        base_text += " — " + "; ".join(b0["problems"])
    out.append((s["baseline"], "BASELINE", base_text, ""))
    if not s["accuracy_measured"]:  # speed verdicts only: no accuracy was measured
        for name in s["arm_order"]:
            if name != s["baseline"]:
                b = s["arms"][name]
                text = ("throughput only (the config's accuracy: false): no accuracy verdict"
                        + "".join(f" — {p}" for p in b["problems"]))
                out.append((name, "SPEED", text, fmt_speed(s["speed"].get(name))))
    for name, p in s["parity"].items():
        b = s["arms"][name]
        extra = ""
        if b["accuracy"] is not None:
            extra = f" ({_metric_parts(b['metric'])[0]} {fmt_acc(b['accuracy'], b['stderr'])})"
        if p["verdict"] in ("PASS", "INCONCLUSIVE"):  # what "no difference found" rules out
            d = p["min_detectable_delta"]
            extra += ("; no change in accuracy was detectable with these items" if d is None else
                      f"; 80% power to detect a change of {d * 100:.2f} pts or more")
        out.append((name, p["verdict"], p["reason"] + extra, fmt_speed(s["speed"].get(name))))
    ctl = s["speed_control"]
    if ctl is not None:
        text = "no accuracy: times the baseline's settings in a second engine"
        if ctl["problems"]:
            text += " — " + "; ".join(ctl["problems"])
        out.append((control_label(ctl), "CONTROL", text, fmt_speed(ctl)))
    return out


def build_view(s: dict[str, Any], diff_limit: int | None, m: Markup = PLAIN) -> View:
    t = s["thresholds"]
    header = [
        f"model {m.code(s['model'])}", f"engine {m.code(s['engine'])}",
        "tasks " + ", ".join(m.code(x) for x in s["tasks"]), f"baseline {m.bold(m.text(s['baseline']))}",
        f"thresholds: α={t['alpha']:g}, |Δacc| ≤ {t['max_abs_delta_points']:g} pts, "
        f"{t['confidence']:.0%} CI, ≥ {t['min_items']} items",
    ]
    if s["source"] == "lm_eval":
        header.append("arms read from lm-eval output folders")
    if not s["accuracy_measured"]:
        header.append("throughput only (accuracy: false)")
    problems = list(s["problems"]) + [
        f"{n}: {p}" for n in s["arm_order"] for p in s["arms"][n]["problems"]
    ]
    tables = _accuracy_tables(s) + [_parity_table(s, m)] if s["accuracy_measured"] else []
    tables += speed_tables(s)
    tables += arm_tables(s)
    return View(f"ViT backend parity: {s['run_id']}", header, _verdicts(s),
                [w["message"] for w in s["warnings"]], problems, tables,
                _differing_tables(s, diff_limit))


# --------------------------------------------------------------------------- markdown
def _md_table(t: Table, level: str = "##") -> str:
    """Title, headers and cells are plain text (escaped here); the note is markdown already."""
    lines = [f"{level} {md_escape(t.title)}", ""]
    if t.rows:
        align = [":---" if i < t.numeric_from else "---:" for i in range(len(t.headers))]
        lines.append("| " + " | ".join(map(md_escape, t.headers)) + " |")
        lines.append("|" + "|".join(align) + "|")
        lines += ["| " + " | ".join(map(md_escape, r)) + " |" for r in t.rows]
        lines.append("")
    if t.note:
        lines += [t.note, ""]
    return "\n".join(lines)


def render_markdown(s: dict[str, Any]) -> str:
    v = build_view(s, MAX_MD_DIFF_ROWS, MARKDOWN)
    out = [f"# {md_escape(v.title)}", "", " · ".join(v.header), ""]
    for name, verdict, text, speed in v.verdicts:
        icon = ICON.get(verdict, "🔹")
        label = "" if verdict in UNLABELLED else f" {verdict}"
        out.append(f"- {icon} **{md_escape(name)}**{label}: {md_escape(text)}")
        if speed:
            out.append(f"  - ⏱️ {md_escape(speed)}")
    out.append("")
    if v.warnings:
        out += ["## ⚠️ Warnings: differences from the baseline the arms did not ask for", ""]
        out += [f"- ⚠️ {md_escape(w)}" for w in v.warnings] + [""]
    if v.problems:
        out += ["## Problems", ""] + [f"- {md_escape(p)}" for p in v.problems] + [""]
    for t in v.tables:
        if t.collapsed:
            out += [f"<details><summary>{html.escape(t.title)}</summary>", "",
                    _md_table(t, "###"), "</details>", ""]
        else:
            out.append(_md_table(t))
    if v.differing:
        out += ["## Items whose answers differ", ""]
        out += [_md_table(t, "###") for t in v.differing]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- html
def render_html(s: dict[str, Any]) -> str:
    import jinja2

    from vit_backend_plugin.report import plots

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("vit_backend_plugin.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True, lstrip_blocks=True,
    )
    # emoji need an emoji font (headless browsers often lack one); the HTML colours verdicts instead
    icons = [*ICON.values(), "🔹"]
    env.filters["noicon"] = lambda x: str(x).replace(icons[0], "").replace(icons[1], "").replace(
        icons[2], "").replace(icons[3], "").replace(icons[4], "").strip()
    view = build_view(s, None, PLAIN)
    images = [img for img in (plots.accuracy_png(s), plots.speed_png(s)) if img]
    return env.get_template("report.html.j2").render(v=view, icons=ICON, images=images,
                                                       unlabelled=UNLABELLED)
