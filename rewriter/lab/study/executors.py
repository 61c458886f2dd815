"""Where the cells of a study run: one after the other, in a pool of processes on this machine, or as Ray
tasks on a cluster. Each cell is independent; the driver writes every result to the study folder as it
arrives, so any of them resumes where it stopped. A worker that dies (out of memory, killed, a lost Ray
node) fails its cell, which ``--retry-failed`` runs again (a cell it was continuing keeps its earlier
result, as any failed continuation does: a later ``--extend`` tries again); the others go on.

Pool workers die with their parent: on Linux the kernel kills them when it ends (``PR_SET_PDEATHSIG``),
and everywhere a watchdog thread ends a worker whose parent process is gone, so killing a study (SIGTERM or
SIGKILL) never leaves workers behind. Ray's own workers belong to the Ray instance.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import dataclasses
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .._ranges import bounded, check_ranges
from .cells import CellJob, blank_row
from .errors import StudyError
from .grid import Cell, Study
from .record import CellRow

Finish = Callable[[Cell, CellRow], None]


@dataclass(frozen=True)
class Executor:
    """How to run the cells: ``serial`` (here), ``processes`` (``workers`` processes on this machine, at most
    one per core) or ``ray`` (one Ray task per cell with ``cpus_per_cell`` and ``gpus_per_cell``, on the
    cluster at ``address``, or a local instance started for the study when there is none)."""

    kind: Literal["serial", "processes", "ray"] = "serial"
    workers: int = bounded(1, low=1)
    address: str | None = None
    cpus_per_cell: float = bounded(1.0, low=0, open_low=True)
    gpus_per_cell: float = bounded(0.0, low=0)
    connect_timeout: float = bounded(30.0, low=0, high=3600, open_low=True)

    def __post_init__(self) -> None:
        check_ranges(self, StudyError)
        if self.kind not in ("serial", "processes", "ray"):
            raise StudyError(f"an executor's kind must be serial, processes or ray, got {self.kind!r}")


def waves(cells: Sequence[Cell]) -> list[list[Cell]]:
    """Baselines first, so that a recipe that changes nothing can take their results."""
    return [[c for c in cells if c.variant.is_baseline], [c for c in cells if not c.variant.is_baseline]]


def run_serial(
    study: Study,
    cells: Sequence[Cell],
    job: CellJob,
    finish: Finish,
    *,
    after: Callable[[], Any] | None = None,
) -> None:
    for cell in cells:
        finish(cell, job.run(cell, study.baseline_row(cell), earlier=study.to_continue(cell)))
        if after is not None:
            after()


def run_processes(study: Study, cells: Sequence[Cell], job: CellJob, finish: Finish, workers: int) -> None:
    """Run ``cells`` in a pool of at most ``workers`` processes (and no more than the cores), one pool per
    wave: a pool that breaks because a worker died fails the cells it held, not the next wave."""
    workers = max(1, min(workers, os.cpu_count() or 1))
    _quiet_resource_tracker()
    for wave in waves(cells):
        if wave:
            _run_pool(study, wave, job, finish, min(workers, len(wave)))


def _run_pool(study: Study, cells: list[Cell], job: CellJob, finish: Finish, workers: int) -> None:
    """The cells in one pool; if a worker dies the pool breaks and fails every cell it held, so those are
    run again each in a pool of its own (``workers`` at a time): a lost worker then fails its own cell only."""
    broken = _pool_wave(study, cells, job, finish, workers, lost=None)
    for start in range(0, len(broken), workers):
        _pool_wave(study, broken[start : start + workers], job, finish, 1, lost=_LOST)


_LOST = "a worker process died (out of memory or killed) while it ran this cell"


def _pool_wave(
    study: Study, cells: list[Cell], job: CellJob, finish: Finish, workers: int, *, lost: str | None
) -> list[Cell]:
    """Run ``cells`` in pools of ``workers`` processes (one pool per cell when ``workers`` is 1); return the
    cells of a pool that broke, or (``lost`` given) record them as failed with that reason."""
    per_cell = workers == 1 and len(cells) > 1
    threads = max(1, (os.cpu_count() or 1) // (len(cells) if per_cell else workers))
    pools = [_pool(1 if per_cell else workers, threads) for _ in (cells if per_cell else cells[:1])]
    broken: list[Cell] = []
    try:
        earlier = [study.to_continue(cell) for cell in cells]
        futures = {
            pools[i if per_cell else 0].submit(_pool_cell, job, cell, study.baseline_row(cell), earlier[i]): i
            for i, cell in enumerate(cells)
        }
        for future in concurrent.futures.as_completed(futures):
            cell = cells[futures[future]]
            try:
                row = future.result()
            except concurrent.futures.process.BrokenProcessPool:
                if lost is None:
                    broken.append(cell)
                    continue
                row = _lost(cell, job, lost, earlier[futures[future]])
            finish(cell, row)
    except BaseException:  # interrupted: end the workers now rather than wait for their cells
        for pool in pools:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        raise
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    return broken


def _pool(workers: int, threads: int) -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
        initargs=(threads, os.getpid()),
    )  # fmt: skip


def _quiet_resource_tracker() -> None:
    """A killed worker leaves a semaphore that multiprocessing's resource tracker reports at exit in a
    multi-line warning, after the study's own last line; the lost cell already says what happened. The
    tracker runs in a process of its own, started with this interpreter's -W options: add one."""
    option = "ignore::UserWarning:multiprocessing.resource_tracker"
    if option not in sys.warnoptions:
        sys.warnoptions.append(option)


def _lost(cell: Cell, job: CellJob, reason: str, earlier: CellRow | None) -> CellRow:
    """The row of a cell whose worker died: failed, or, continuing its ``earlier`` row, that row kept as it
    was with the reason (``not_extended``), as any failed continuation is."""
    if earlier is not None:
        return earlier.replace(not_extended=reason)
    return blank_row(cell, job.setup, lr=job.lr).failed(f"{reason}; run again with --retry-failed")


def _pool_cell(job: CellJob, cell: Cell, baseline: CellRow | None, earlier: CellRow | None) -> CellRow:
    return job.run(cell, baseline, latency=False, earlier=earlier)


def _worker_init(threads: int, parent: int) -> None:
    torch.set_num_threads(threads)
    # Ctrl-C reaches the whole process group: the parent reports it; a worker ends without a traceback
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """End this process when the process ``parent`` ends, however it ends."""
    if sys.platform.startswith("linux"):
        # no prctl: the watchdog below still ends this process
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the request above took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), daemon=True, name="parent-watchdog").start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise StudyError("the ray executor needs Ray: pip install 'rewriter[ray]'") from err
    return ray


@contextlib.contextmanager
def ray_session(executor: Executor) -> Iterator[Any]:
    """Ray, connected for the ``with`` block: the instance this process is connected to, else
    ``executor.address`` (``auto``: the cluster ``ray start --head`` started; an address that answers
    nothing within ``connect_timeout`` is refused before ``ray.init`` waits on it), else a local one started
    here; refused where no node can run one cell. A connection made here is shut down at the end. What a
    study and the optimizer's search both use.

    Raises:
        StudyError: Ray missing, unreachable, or no node with a cell's CPUs and GPUs.
    """
    ray = import_ray()
    owned = not ray.is_initialized()
    if owned:
        check_reachable(executor.address, executor.connect_timeout)
        try:
            ray.init(address=executor.address, include_dashboard=False, logging_level="warning")
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise StudyError(
                f"the ray executor cannot reach Ray at {executor.address or 'a new local instance'}: {err}"
            ) from err
    try:
        check_feasible(executor, [n["Resources"] for n in ray.nodes() if n.get("Alive")])
        yield ray
    finally:
        if owned:
            ray.shutdown()


def run_ray(study: Study, cells: Sequence[Cell], job: CellJob, finish: Finish, executor: Executor) -> None:
    """One Ray task per cell (``num_cpus``/``num_gpus`` from the executor, no retries: a lost worker is a
    failed cell), baselines first, in a ``ray_session``."""
    with ray_session(executor) as ray:
        _run_cells(ray, study, cells, job, finish, executor)


def _run_cells(
    ray: Any, study: Study, cells: Sequence[Cell], job: CellJob, finish: Finish, executor: Executor
) -> None:
    if job.device is None and not executor.gpus_per_cell:
        job = dataclasses.replace(job, device="cpu")  # a task without a GPU of its own trains on the CPU
    task = ray.remote(_ray_cell).options(
        num_cpus=executor.cpus_per_cell, num_gpus=executor.gpus_per_cell, max_retries=0
    )
    threads = max(1, int(executor.cpus_per_cell))
    pending: dict[Any, tuple[Cell, CellRow | None]] = {}
    try:
        for wave in waves(cells):
            pending = {}
            for cell in wave:
                earlier = study.to_continue(cell)
                ref = task.remote(job, cell, study.baseline_row(cell), threads, earlier)
                pending[ref] = (cell, earlier)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell, earlier = pending.pop(ready[0])
                finish(cell, _ray_result(ray, ready[0], cell, job, earlier))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def check_reachable(address: str | None, timeout: float) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) that accepts no connection within ``timeout``
    seconds, before ``ray.init`` waits on it without end; ``auto`` and no address are Ray's to find.

    Raises:
        StudyError: nothing listens there (what the system said, and the parameter that sets the wait).
    """
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StudyError(f"address: expected auto or HOST:PORT, got {address!r}", param="address")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        reason = "no answer" if isinstance(err, TimeoutError) else err.strerror or type(err).__name__
        raise StudyError(
            f"the ray executor cannot reach Ray at {address} ({reason} within {timeout:g} s; "
            "connect_timeout sets the wait); is the cluster up (`ray start --head`)?",
            param="connect_timeout",
        ) from err


def check_feasible(executor: Executor, nodes: Sequence[Mapping[str, float]]) -> None:
    """Refuse cells that no node of the cluster can run (Ray would wait for such a node forever).

    Args:
        nodes: the resources of each live node, as Ray reports them (``{"CPU": 8.0, "GPU": 1.0, ...}``).

    Raises:
        StudyError: what one cell needs and what the nodes have.
    """
    need = {"CPU": executor.cpus_per_cell, "GPU": executor.gpus_per_cell}
    if any(all(node.get(key, 0.0) >= amount for key, amount in need.items()) for node in nodes):
        return
    have = "; ".join(f"{node.get('CPU', 0.0):g} CPUs, {node.get('GPU', 0.0):g} GPUs" for node in nodes[:4])
    more = f" and {len(nodes) - 4} more" if len(nodes) > 4 else ""
    raise StudyError(
        f"the ray executor: a cell needs {need['CPU']:g} CPUs and {need['GPU']:g} GPUs on one node, which no "
        f"node of the cluster has (its {len(nodes)} nodes: {have or 'none'}{more}); lower cpus_per_cell or "
        "gpus_per_cell",
        param=("cpus_per_cell", "gpus_per_cell"),
    )


def _ray_cell(
    job: CellJob, cell: Cell, baseline: CellRow | None, threads: int, earlier: CellRow | None
) -> CellRow:
    torch.set_num_threads(threads)
    return job.run(cell, baseline, latency=False, earlier=earlier)


def _ray_result(ray: Any, ref: Any, cell: Cell, job: CellJob, earlier: CellRow | None) -> CellRow:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        reason = " ".join(str(err).split())[:200]
        lost = f"the Ray worker running this cell was lost ({type(err).__name__}: {reason})"
        return _lost(cell, job, lost, earlier)
