"""The output guard and atomic writes (``rewriter._files``): inputs are never replaced, existing files only
with force, and the temporary files of a killed write are cleaned on the next write to the same target."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rewriter import ModelFileError
from rewriter._files import atomic_path, check_target, check_targets, protected_inputs, write_json


def test_an_input_is_refused_even_with_force_through_a_symlink_and_a_hard_link(tmp_path):
    source = tmp_path / "in.pt"
    source.write_text("the user's model")
    (tmp_path / "link.pt").symlink_to(source)
    os.link(source, tmp_path / "hard.pt")
    for alias in ("in.pt", "link.pt", "hard.pt", "sub/../in.pt"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ModelFileError, match="is one of the command's inputs"):
            check_target(tmp_path / alias, force=True, inputs=[source])
    assert source.read_text() == "the user's model"


def test_a_write_during_a_command_cannot_replace_its_inputs(tmp_path):
    source = tmp_path / "in.pt"
    source.write_text("the user's model")
    with protected_inputs([source]), pytest.raises(ModelFileError, match="one of the command's inputs"):
        write_json(source, {"overwritten": True})
    assert source.read_text() == "the user's model"
    write_json(source, {"after": "the command"})  # outside the command the path is an ordinary file
    assert "after" in source.read_text()


def test_an_existing_file_needs_force_and_two_outputs_must_differ(tmp_path):
    existing = tmp_path / "report.json"
    existing.write_text("{}")
    with pytest.raises(ModelFileError, match="exists; pass --force"):
        check_target(existing)
    assert check_target(existing, force=True) == existing
    with pytest.raises(ModelFileError, match="--report and -o are the same file"):
        check_targets({"-o": tmp_path / "x.pt", "--report": tmp_path / "x.pt"})
    with pytest.raises(ModelFileError, match="exists"), atomic_path(existing, overwrite=False):
        pass


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_our_naming_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "out.pt"
    stale = tmp_path / f".out.pt.{_dead_pid()}-abcd1234.tmp"  # a write killed with SIGKILL left it
    live = tmp_path / f".out.pt.{os.getppid()}-efgh5678.tmp"  # a write in progress in another process
    old_style = tmp_path / ".out.pt.k3j2h1g0.tmp"  # the naming before the PID was in it, an hour old
    young_old_style = tmp_path / ".out.pt.a1b2c3d4.tmp"
    foreign = tmp_path / ".out.pt.notes.tmp"  # not our naming
    other = tmp_path / f".other.pt.{_dead_pid()}-abcd1234.tmp"  # another target's
    for path in (stale, live, old_style, young_old_style, foreign, other):
        path.write_text("partial")
    os.utime(old_style, (0, 0))
    write_json(target, {"ok": True})
    left = {p.name for p in tmp_path.iterdir()}
    assert stale.name not in left and old_style.name not in left
    assert {live.name, young_old_style.name, foreign.name, other.name, "out.pt"} <= left
