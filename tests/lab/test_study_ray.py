"""The Ray executor: each cell a Ray task on a local instance started by the test (2 CPUs), the same cells
as a serial run bit for bit, and a lost worker recorded as a failed cell that a resumed run retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.lab.study import Executor, Study, parse_variant, run_study

from .test_study import PARALLEL, SETUP, TINY, same_cells, serial_rows

ray = pytest.importorskip("ray", reason="the Ray executor needs the extra: pip install 'rewriter[ray]'")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance of this test process with 2 CPUs; its workers import the tests' models."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # fmt: skip
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_tasks_give_the_same_cells_as_a_serial_run(local_ray, tmp_path):
    study = Study(
        [TINY], [parse_variant("baseline"), parse_variant("truncate")], [0, 1], PARALLEL, tmp_path / "r"
    )
    rows = run_study(study, executor=Executor("ray", cpus_per_cell=1), progress=False)
    same_cells(rows, serial_rows(tmp_path / "s", PARALLEL, threads=1))
    assert {r.device for r in rows} == {"cpu"} and all(r.latency_ms_b1 is not None for r in rows)


@pytest.mark.slow
def test_a_lost_ray_worker_is_a_failed_cell_and_the_study_goes_on(local_ray, tmp_path):
    study = Study(["tests.nets:dies", TINY], [parse_variant("baseline")], [0], SETUP, tmp_path)
    rows = {r.model: r for r in run_study(study, executor=Executor("ray"), progress=False)}
    assert not rows["tests.nets:dies"].ok
    assert "the Ray worker running this cell was lost" in rows["tests.nets:dies"].error
    assert rows[TINY].ok and rows[TINY].test_accuracy is not None  # a task of its own: untouched
    again = Study(study.models, study.variants, [0], SETUP, tmp_path, retry_failed=True)
    assert [cell.model for cell in again.pending()] == ["tests.nets:dies"]
