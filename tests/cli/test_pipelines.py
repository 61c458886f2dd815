"""The command line in a pipeline (issue 24.3): --quiet, --log-json, no progress bar where nobody watches,
--version without torch, and a model file named for what it is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rewriter._progress import progress_shown
from rewriter.cli._log import logging_to_stderr

from ..cli_runner import run

ANALYZE = ("analyze", "cifar_vgg11", "--input-size", "32", "--no-flops")


def test_version_answers_without_importing_torch():
    script = "import sys; from rewriter.cli import main; main(['--version']); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["rewriter", "0.1.0", "False"], done.stderr


def test_log_json_writes_one_json_object_a_line_on_stderr(capsys, tmp_path):
    code, out, err = run(capsys, *ANALYZE, "--plot", str(tmp_path / "rf.png"), "--log-json")
    assert code == 0 and out  # the table stays on stdout
    records = [json.loads(line) for line in err.splitlines()]
    assert records and {r["command"] for r in records} == {"analyze"}
    assert {"level": "info", "message": f"wrote {tmp_path / 'rf.png'}"}.items() <= records[-1].items()
    code, _, err = run(capsys, "analyze", str(tmp_path / "none.pt"), "--log-json")
    (record,) = [json.loads(line) for line in err.splitlines()]
    assert (
        code == 1 and record["level"] == "error" and record["message"].startswith(f"{tmp_path / 'none.pt'}")
    )


def test_quiet_leaves_stderr_to_warnings_and_errors(capsys, tmp_path):
    code, out, err = run(capsys, *ANALYZE, "--plot", str(tmp_path / "rf.png"), "--quiet")
    assert code == 0 and out and err == "" and (tmp_path / "rf.png").is_file()
    code, _, err = run(capsys, "analyze", str(tmp_path / "none.pt"), "--quiet")
    assert code == 1 and err.startswith("error: ")


class _Terminal:
    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


def test_the_command_line_shows_bars_only_on_a_terminal_and_never_with_quiet_or_log_json(monkeypatch):
    assert progress_shown()  # the library: as each caller asks (a notebook's stderr is no terminal)
    with logging_to_stderr(quiet=False, as_json=False, command="x"):
        assert not progress_shown()  # pytest's captured stderr is no terminal
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with logging_to_stderr(quiet=False, as_json=False, command="x"):
        assert progress_shown()
    for quiet, as_json in ((True, False), (False, True)):
        with logging_to_stderr(quiet=quiet, as_json=as_json, command="x"):
            assert not progress_shown()
    assert progress_shown()  # restored after


@pytest.mark.parametrize("name", ["x.txt", "model"])
def test_a_model_file_must_be_named_pt(capsys, tmp_path, name):
    target = tmp_path / name
    code, _, err = run(capsys, "rewrite", "cifar_vgg11", "--input-size", "32", "--strategy", "truncate", "-o",
                       str(target), "--no-latency")  # fmt: skip
    assert code == 1 and "a model file" in err and f"give {target.with_suffix('.pt')}" in err
    assert not target.exists()


def test_a_usage_error_is_a_json_line_too(capsys):
    code, _, err = run(capsys, "analyze", "resnet18", "--log-json", "--input-size", "0")
    (record,) = [json.loads(line) for line in err.splitlines()]
    assert code == 2 and record["level"] == "error" and record["message"].startswith("argument --input-size")
