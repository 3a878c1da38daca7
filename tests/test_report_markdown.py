"""report.md with hostile run data: model output, lm-eval names, backend names, config values and
error texts are text, never markup. Checked by rendering the markdown with a CommonMark parser
(markdown-it, with GitHub's tables and strikethrough) and looking at the HTML it makes."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from test_report_fixtures import Backend, baseline_answers, make_run

from vit_backend_plugin.report import build_report
from vit_backend_plugin.report.render import md_code, md_escape

markdown_it = pytest.importorskip("markdown_it")
MD = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])

HOSTILE = [
    "[x](javascript:alert(1))",
    "![img](http://evil.example/t.png)",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<http://evil.example>",
    "a`b``c",
    "`",
    "x | y",
    "line1\nline2\n# heading\r\n---",
    "_em_ *strong* __b__ ~~del~~ ~one~",
    "&lt;b&gt; &#60;i&#62;",
    "\\[x\\](y) back\\slash",
    "text ##",
]


def one_line(s: str) -> str:
    return " ".join(s.splitlines())


@pytest.mark.parametrize("s", HOSTILE)
def test_escaped_text_renders_as_itself(s):
    out = MD.render(md_escape(s))
    assert out.startswith("<p>") and out.endswith("</p>\n"), out
    inner = out[len("<p>"):-len("</p>\n")]
    assert "<" not in inner  # no tag: no link, image, script, emphasis, code
    assert html.unescape(inner) == one_line(s).strip()
    # and as a table cell: one cell, the same text
    table = MD.render(f"| h | k |\n|---|---|\n| {md_escape(s)} | end |\n")
    cells = table.split("<td>")[1:]
    assert len(cells) == 2 and html.unescape(cells[0].split("</td>")[0]) == one_line(s).strip()
    assert cells[1].startswith("end</td>")


@pytest.mark.parametrize("s", HOSTILE + [" padded ", "``x``"])
def test_code_span_holds_any_text(s):
    out = MD.render("model " + md_code(s))
    assert out.startswith("<p>model <code>") and out.endswith("</code></p>\n"), out
    code = out[len("<p>model <code>"):-len("</code></p>\n")]
    assert html.unescape(code) == one_line(s)


def test_underscores_inside_names_are_left_alone():
    assert md_escape("FLASH_ATTN mmmu_val_art") == "FLASH_ATTN mmmu_val_art"


ATTACK = "<script>alert(1)</script> [x](javascript:alert(1)) `tick"
NAMES = ["[x](javascript:alert(1))", "<img src=x onerror=alert(1)>", "a`b|c", "$\\frac{$x"]


def hostile_run(tmp_path: Path) -> Path:
    a = baseline_answers(5)
    backends = {"base": Backend(a), **{n: Backend(a) for n in NAMES}}
    err = f"Traceback (most recent call last):\nRuntimeError: {ATTACK}"
    backends["crash<b>"] = Backend(None, speed=None, phases={"accuracy": "failed", "throughput": "pending"},
                                   errors={"accuracy": err})
    run = make_run(tmp_path, backends, run_id="r<i>1</i>")
    info = json.loads((run / "run.json").read_text())
    info.update(model="evil`<b>m</b>` [x](javascript:alert(1))", engine="vllm<img src=y>",
                tasks=["mmmu_val", "<script>t</script>"])
    (run / "run.json").write_text(json.dumps(info))
    # model output: a few responses of one backend, and the targets the baseline logged
    for name, field in ((NAMES[0], "filtered_resps"), ("base", "target")):
        f = sorted((run / name / "lm_eval").rglob("samples_mmmu_val_art_*.jsonl"))[0]
        lines = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()]
        for rec in lines[:3]:
            rec[field] = [ATTACK] if field == "filtered_resps" else ATTACK
        f.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return run


def test_hostile_run_data_is_text_in_report_md(tmp_path):
    paths = build_report(hostile_run(tmp_path))  # "$" in a name does not break the plots either
    md = paths["md"].read_text()
    rendered = MD.render(md)
    for tag in ("<script", "<img", "<a ", "<b>", "<i>", "href="):
        assert tag not in rendered, tag
    # everything is still there, as text
    assert rendered.count("&lt;script&gt;alert(1)&lt;/script&gt; [x](javascript:alert(1)) `tick") >= 4
    assert "<code>evil`&lt;b&gt;m&lt;/b&gt;` [x](javascript:alert(1))</code>" in rendered
    assert "<code>vllm&lt;img src=y&gt;</code>" in rendered
    assert "<code>&lt;script&gt;t&lt;/script&gt;</code>" in rendered
    assert "<h1>ViT backend parity: r&lt;i&gt;1&lt;/i&gt;</h1>" in rendered
    for name in NAMES:
        assert f"<strong>{html.escape(name, quote=False)}</strong>" in rendered, name
    assert '<td style="text-align:left">a`b|c</td>' in rendered  # the pipe stayed inside its cell
    # the HTML report is escaped by jinja2
    page = paths["html"].read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "&lt;script&gt;alert(1)" in page


def test_normal_report_md_is_unchanged_in_its_markup(tmp_path):
    a = baseline_answers(3)
    md = build_report(make_run(tmp_path, {"FLASH_ATTN": Backend(a), "TORCH_SDPA": Backend(a)}))["md"].read_text()
    assert "model `Org/Tiny-VL-2B` · engine `vllm` · tasks `mmmu_val` · baseline **FLASH_ATTN**" in md
    assert "against baseline **FLASH_ATTN**." in md
