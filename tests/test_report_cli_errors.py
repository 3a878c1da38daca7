"""`vit-parity report` at the edges of its command line: a file where the output directory
should be is a one-line error (exit 2); a reader that closes the pipe ends it quietly."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
from test_report_fixtures import Backend, baseline_answers, make_run

from vit_backend_plugin.report import cli as report_cli


def run_report(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    rc = report_cli.main(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_out_that_is_not_a_directory_is_a_one_line_error(tmp_path, capsys, where):
    run = make_run(tmp_path, {"x": Backend(baseline_answers(3)), "y": Backend(baseline_answers(3))})
    f = tmp_path / "existing.txt"
    f.write_text("keep me\n")
    out = f if where == "file" else f / "sub"
    rc, _, err = run_report(capsys, str(run), "--out", str(out))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("vit-parity report: error:"), err
    assert str(f) in err and "Traceback" not in err
    assert f.read_text() == "keep me\n"  # untouched


def test_a_closed_pipe_ends_it_quietly(tmp_path):
    run = make_run(tmp_path, {"x": Backend(baseline_answers(3)), "y": Backend(baseline_answers(3))})
    env = {**os.environ, "PYTHONUNBUFFERED": ""}  # block-buffered stdout, as in a shell pipe
    proc = subprocess.Popen([sys.executable, "-m", "vit_backend_plugin.cli", "report", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line (as `| head -0` would be)
    _, err = proc.communicate(timeout=300)
    err = err.decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
    assert proc.returncode == 1  # CPython's recipe for a broken pipe
    assert (run / "summary.json").is_file()  # the report itself was written before the output
