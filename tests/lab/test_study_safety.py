"""A study never loses a file and never reads a bad one silently: folders that hold something else, broken
records in the folder, out-of-range settings, pickled models, and workers that outlive a killed study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from rewriter.cli import main
from rewriter.lab.study import Cell, Study, StudyError, parse_variant, run_cell, run_study

from .test_study import SETUP, TINY

ROOT = Path(__file__).resolve().parents[2]


def study_command(out: Path, *extra: str) -> list[str]:
    return ["study", "--model", TINY, "--recipe", "baseline", "--data", "synthetic:64", "--epochs", "1",
            "--seeds", "1", "--max-batches", "1", "--out", str(out), *extra]  # fmt: skip


def test_a_folder_of_other_files_is_refused_unless_forced(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.csv").write_text("my own table\n")
    assert main(study_command(out)) == 1
    err = capsys.readouterr().err
    assert "holds no study (study.json is missing) but other files (results.csv)" in err and "--force" in err
    assert (out / "results.csv").read_text() == "my own table\n" and not (out / "cells").exists()
    Study([TINY], [parse_variant("baseline")], [0], SETUP, out, force=True).recorded()  # taken with force
    empty = tmp_path / "empty"
    empty.mkdir()
    Study([TINY], [parse_variant("baseline")], [0], SETUP, empty).recorded()  # an empty folder is taken
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(StudyError, match="is a file; give a folder"):
        Study([TINY], [parse_variant("baseline")], [0], SETUP, afile).recorded()


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--epochs", "-1"], "argument --epochs: expected an integer from 1 to 100000, got -1"),
     (["--max-batches", "0"], "argument --max-batches: expected an integer >= 1, got 0"),
     (["--lr", "-0.1"], "argument --lr: expected a finite number in (0, 10], got -0.1"),
     (["--lr", "nan"], "argument --lr: expected a finite number in (0, 10], got nan"),
     (["--seeds", "0"], "argument --seeds: expected an integer from 1 to 1000, got 0"),
     (["--workers", "0"], "argument --workers: expected an integer from 1 to 1024, got 0")],
)  # fmt: skip
def test_a_setting_outside_its_range_is_refused_before_any_work(tmp_path, capsys, flags, message):
    """A usage error: exit code 2, the flag, its range and the value, and nothing written."""
    command = study_command(tmp_path / "s")
    if flags[0] in command:
        at = command.index(flags[0])
        command[at : at + 2] = flags
    else:
        command += flags
    with pytest.raises(SystemExit) as stop:
        main(command)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_broken_study_json_is_named_and_force_records_a_new_one(tmp_path):
    study = Study([TINY], [parse_variant("baseline")], [0], SETUP, tmp_path)
    (tmp_path / "study.json").write_text('{"setup": {"data": ')
    with pytest.raises(StudyError, match=r"study\.json: not valid JSON \(line 1: .*pass force=True"):
        study.recorded()
    (tmp_path / "study.json").write_text('{"setup": {}, "grid": {"models": "all"}}')
    with pytest.raises(StudyError, match=r"study\.json: 'grid\.models' must be a JSON list"):
        study.recorded()
    forced = Study([TINY], [parse_variant("baseline")], [0], SETUP, tmp_path, force=True)
    forced.prepare()
    assert json.loads((tmp_path / "study.json").read_text())["setup"] == SETUP.to_json()


def test_bad_files_in_cells_are_named_a_bad_cell_fails_and_retry_recovers(tmp_path):
    study = Study([TINY], [parse_variant("baseline")], [0, 1], SETUP, tmp_path)
    study.prepare()
    cells = tmp_path / "cells"
    (cells / "notes.json").write_text('{"hello": 1}')  # a foreign file: no cell of this grid
    (cells / f"{study.cells[0].id}.json").write_text("")  # one of the grid's cells, empty
    (cells / f"{study.cells[1].id}.json").write_text('{"model": 3}')  # another, not a cell record
    rows = {r.seed: r for r in run_study(study, progress=False)}
    assert (
        not rows[0].ok and f"{study.cells[0].id}.json: empty; run again with --retry-failed" in rows[0].error
    )
    assert not rows[1].ok and "not a cell record (no recipe, seed, status)" in rows[1].error
    summary = (tmp_path / "summary.md").read_text()
    assert (
        "Files in cells/ that are no cell record (ignored):" in summary
        and "notes.json: not a cell record" in summary
    )
    again = Study([TINY], [parse_variant("baseline")], [0, 1], SETUP, tmp_path, retry_failed=True)
    assert len(again.pending()) == 2
    assert all(r.ok and r.test_accuracy is not None for r in run_study(again, progress=False))


def test_a_pickled_model_fails_its_cell_without_the_hint_of_a_flag_study_lacks(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)), path
    )
    row = run_cell(Cell(str(path), parse_variant("baseline"), 0), SETUP)
    assert not row.ok and "--trust-pickle" not in row.error
    assert "holds a whole pickled model, and `rewriter study` never unpickles one" in row.error


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its entry waits to be reaped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_workers_end_with_a_killed_study(tmp_path, how):
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REWRITER_TEST_PIDS": str(pids), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rewriter", "study", "--model", "tests.nets:sleeps", "--recipe", "baseline",
               "--data", "synthetic:32", "--epochs", "1", "--seeds", "2", "--workers", "2",
               "--out", str(tmp_path / "s")]  # fmt: skip
    study = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline and study.poll() is None:
            time.sleep(0.1)
        workers = [int(p.stem) for p in pids.iterdir()]
        assert len(workers) == 2, study.stderr.read() if study.poll() is not None else "no workers started"
        if how == "SIGINT":  # Ctrl-C in a terminal: the whole process group
            os.killpg(study.pid, signal.SIGINT)
        else:
            os.kill(study.pid, getattr(signal, how))
        code = study.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), f"workers left behind after {how}"
        if how == "SIGINT":
            err = study.stderr.read()
            assert code == 130 and "interrupted" in err and "Traceback" not in err, err[-2000:]
    finally:
        if study.poll() is None:
            os.killpg(study.pid, signal.SIGKILL)
        study.wait()
