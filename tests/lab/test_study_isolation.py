"""Failures that took neighbours down (issue 23, item 6): a killed pool worker fails its own cell only,
and a cell's file name stays under 255 bytes whatever the length of its model or recipe."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from rewriter.lab.study import Executor, Study, parse_variant, run_study
from rewriter.lab.study.grid import Cell

from .test_study import SETUP, TINY


def dies_in_a_worker(num_classes: int = 10) -> nn.Module:
    """A model builder that kills the process building it when that is a study worker (SIGKILL: no
    exception, no result; the pool breaks)."""
    if multiprocessing.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


@pytest.mark.slow
def test_a_killed_worker_fails_its_own_cell_and_its_neighbours_finish(tmp_path):
    killer = f"{__name__}:dies_in_a_worker"
    study = Study([TINY, killer], [parse_variant("baseline")], [0, 1], SETUP, tmp_path / "s")
    rows = run_study(study, executor=Executor("processes", workers=2), progress=False)
    status = {(r.model, r.seed): r.status for r in rows}
    assert status == {(TINY, 0): "ok", (TINY, 1): "ok", (killer, 0): "failed", (killer, 1): "failed"}
    for row in rows:
        if row.model == killer:
            assert "died (out of memory or killed) while it ran this cell" in row.error


def test_a_cell_file_name_is_bounded_and_long_names_stay_distinct(tmp_path):
    long_recipe = tmp_path / ("r" * 200 + "-a.yaml")
    other = tmp_path / ("r" * 200 + "-b.yaml")
    for path in (long_recipe, other):
        path.write_text("steps:\n  - truncate: {rule: output}\n")
    model = "tests.nets:" + "m" * 250
    study = Study([model], [parse_variant(str(long_recipe)), parse_variant(str(other))], [0], SETUP, tmp_path)
    names = [study.cell_path(cell).name for cell in study.cells]
    assert len(set(names)) == 2 and all(len(name.encode()) <= 200 for name in names)
    study.cell_path(study.cells[0]).parent.mkdir()
    study.cell_path(study.cells[0]).write_text("{}")  # the file system takes the name
    short = Cell("resnet18", parse_variant("truncate"), 3, "abcd1234")
    assert short.id == "resnet18-abcd1234__truncate__seed3"  # short names are as before (a study resumes)


@pytest.mark.slow
def test_the_last_line_after_a_lost_worker_is_the_studys_own(tmp_path):
    """Not the resource tracker's multi-line warning about the killed worker's semaphore."""
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "rewriter", "study", "--model", TINY, "--model", f"{__name__}:dies_in_a_worker",
            "--recipe", "baseline", "--data", "synthetic:32", "--epochs", "1", "--max-batches", "1", "--workers", "2",
            "--seeds", "1", "--out", str(tmp_path / "s")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1] == "1 of 2 cells failed; their errors are in summary.md"
    assert "resource_tracker" not in done.stderr


@pytest.mark.parametrize(
    "text",
    [b"[" * 100_000, b'{"x": ' + b"9" * 5000 + b"}", b"\xff\xfe{}"],
    ids=["nested", "5000-digits", "utf8"],
)
def test_a_hostile_cell_or_study_file_is_named_in_one_error(tmp_path, text):
    from rewriter.lab.study.errors import StudyError
    from rewriter.lab.study.folder import load_json
    from rewriter.lab.study.record import CellRow

    path = tmp_path / "c.json"
    path.write_bytes(text)
    for read in (CellRow.read, load_json):
        with pytest.raises(StudyError, match=r"c\.json"):
            read(path)
