"""No hangs (issue 23, item 5): cells no node can run are refused with what the cluster has, an address
that does not answer is refused within --connect-timeout, and special files are refused before reading."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from rewriter import ModelFileError, RecipeError, WeightsError
from rewriter.engine.recipe import Recipe
from rewriter.lab.study import Executor
from rewriter.lab.study.errors import StudyError
from rewriter.lab.study.executors import check_feasible, check_reachable
from rewriter.models.sources import load_model

from ..cli_runner import run


def test_cells_that_no_node_can_hold_are_refused_with_what_the_cluster_has():
    laptop = [{"CPU": 8.0, "memory": 1e10}]
    with pytest.raises(StudyError, match=r"needs 0.5 CPUs and 1 GPUs.*1 nodes: 8 CPUs, 0 GPUs"):
        check_feasible(Executor("ray", cpus_per_cell=0.5, gpus_per_cell=1), laptop)
    with pytest.raises(StudyError, match=r"needs 1024 CPUs.*8 CPUs"):
        check_feasible(Executor("ray", cpus_per_cell=1024), laptop)
    with pytest.raises(StudyError, match="none"):
        check_feasible(Executor("ray"), [])
    check_feasible(Executor("ray", cpus_per_cell=8), laptop)  # exactly what a node has
    # a node with the GPU and one with the CPUs are not one node with both
    split = [{"CPU": 1.0, "GPU": 1.0}, {"CPU": 16.0}]
    with pytest.raises(StudyError, match="2 nodes"):
        check_feasible(Executor("ray", cpus_per_cell=4, gpus_per_cell=1), split)
    check_feasible(Executor("ray", cpus_per_cell=1, gpus_per_cell=1), split)


def test_an_address_that_does_not_answer_is_refused_within_the_timeout():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(
        StudyError, match=f"cannot reach Ray at 127.0.0.1:{port}.*connect_timeout sets the wait"
    ):
        check_reachable(f"127.0.0.1:{port}", 2.0)
    assert time.monotonic() - start < 10
    with pytest.raises(StudyError, match="expected auto or HOST:PORT"):
        check_reachable("nowhere", 1.0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"ray://127.0.0.1:{server.getsockname()[1]}", 2.0)  # something answers: Ray's turn
    check_reachable("auto", 1.0)


def test_the_connect_timeout_is_a_declared_range(capsys, tmp_path):
    code, _, err = run(capsys, "study", "--model", "cifar_vgg11", "--data", "synthetic:16", "--recipe", "baseline",
                       "--out", str(tmp_path / "s"), "--executor", "ray", "--connect-timeout", "0")  # fmt: skip
    assert code == 2 and "--connect-timeout" in err
    with pytest.raises(StudyError, match=r"connect_timeout must be in \(0, 3600\], got -1"):
        Executor("ray", connect_timeout=-1)


def test_a_fifo_or_a_symlink_loop_is_refused_in_one_line_and_never_opened(tmp_path):
    os.mkfifo(tmp_path / "f.yaml")  # opening it for reading would block until a writer comes
    (tmp_path / "loop.pt").symlink_to(tmp_path / "loop.pt")
    with pytest.raises(RecipeError, match="not a regular file"):
        Recipe.from_yaml(tmp_path / "f.yaml")
    with pytest.raises(ModelFileError, match="not a regular file"):
        load_model(str(tmp_path / "f.yaml"))
    with pytest.raises(ModelFileError, match="leads back to itself"):
        load_model(str(tmp_path / "loop.pt"))
    with pytest.raises(RecipeError, match="Too many levels of symbolic links"):
        Recipe.from_yaml(tmp_path / "loop.pt")
    with pytest.raises(WeightsError, match="not a regular file"):
        load_model("resnet18", weights=str(tmp_path / "f.yaml"))


@pytest.mark.slow
def test_a_study_asking_more_than_the_local_ray_instance_has_is_refused(capsys, tmp_path):
    """The one test here that starts Ray (a local instance with 1 CPU)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, logging_level="warning")

    def hung(signum, frame):
        raise TimeoutError("the study waited for resources no node has")

    previous = signal.signal(signal.SIGALRM, hung)  # before the fix it waited forever: bound the wait
    signal.alarm(120)
    try:
        start = time.monotonic()
        code, _, err = run(capsys, "study", "--model", "cifar_vgg11", "--data", "synthetic:16", "--recipe", "baseline",
                           "--epochs", "1", "--out", str(tmp_path / "s"), "--executor", "ray",
                           "--cpus-per-cell", "2")  # fmt: skip
        assert code == 1 and "needs 2 CPUs and 0 GPUs" in err and "1 CPUs, 0 GPUs" in err
        assert time.monotonic() - start < 120
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        ray.shutdown()


def test_the_optimizers_search_holds_ray_as_a_study_does_refusing_an_address_that_does_not_answer():
    pytest.importorskip("ray")
    from rewriter.optimize.trials import executor_session

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = executor_session(Executor("ray", address=f"127.0.0.1:{port}", connect_timeout=2.0))
    # the reachability check's own words: ray.init was not left to wait on the address
    with pytest.raises(
        StudyError, match=f"cannot reach Ray at 127.0.0.1:{port}.*connect_timeout sets the wait"
    ):
        session.__enter__()
