"""The output guard and atomic writes (``rewriter._files``): inputs are never replaced, existing files only
with force, and the temporary files of a killed write are cleaned on the next write to the same target."""

from __future__ import annotations

import os
import signal
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
    with pytest.raises(ModelFileError, match="exists; pass overwrite=True"):
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


# ---- claims: two commands never write the same file (issue 23, item 4) -----------------------------------


def test_a_second_claimant_of_an_output_is_refused_until_the_first_is_done(tmp_path):
    from rewriter._files import claims

    target = tmp_path / "tt.pt"
    with claims():
        check_target(target)
        check_target(target)  # the same command may check its own output again
        with claims(), pytest.raises(ModelFileError, match=r"being written by another process \(pid"):
            check_target(target, force=True)
        assert (tmp_path / ".tt.pt.claim").read_text() == str(os.getpid())
    assert not (tmp_path / ".tt.pt.claim").exists()
    with claims():
        check_target(target)  # free again


def test_a_claim_of_a_live_process_is_refused_and_one_of_a_dead_process_taken_over(tmp_path):
    from rewriter._files import claims

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".tt.pt.claim").write_text(str(holder.pid))
        with claims(), pytest.raises(ModelFileError, match=f"pid {holder.pid}"):
            check_target(tmp_path / "tt.pt")
    finally:
        holder.kill()
        holder.wait()
    with claims():
        check_target(tmp_path / "tt.pt")  # the holder is gone: its claim is taken over
        assert (tmp_path / ".tt.pt.claim").read_text() == str(os.getpid())


def test_the_final_rename_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "tt.pt"
    appeared = pytest.raises(ModelFileError, match="appeared while this command ran")
    with appeared, atomic_path(target, overwrite=False) as tmp:
        tmp.write_text("ours")
        target.write_text("another process's model")  # written after the check, before the rename
    assert target.read_text() == "another process's model"
    assert [p.name for p in tmp_path.iterdir()] == ["tt.pt"]  # no temporary left
    with atomic_path(tmp_path / "new.pt", overwrite=False) as tmp:
        tmp.write_text("ours")
    assert (tmp_path / "new.pt").read_text() == "ours"


def test_two_trainings_to_one_output_started_together_one_is_refused(tmp_path):
    """Two processes: the second claimant stops at once with one line; the first's claims end with it."""
    argv = [sys.executable, "-m", "rewriter", "train", "cifar_vgg11", "--data", "synthetic:64", "--epochs", "1000",
            "--batch-size", "8", "-o", str(tmp_path / "tt.pt")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert first.stderr is not None
        while "training" not in first.stderr.readline():  # the first holds its claims now
            assert first.poll() is None
        second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        assert second.returncode == 1 and f"pid {first.pid}" in second.stderr
        assert "tt.pt is being written by another process" in second.stderr and second.stderr.count("\n") == 1
        assert first.poll() is None  # untouched by the second
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130 and not list(tmp_path.glob(".*.claim"))
