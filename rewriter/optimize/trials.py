"""Training the optimizer's candidates on data: a validation split held out from the training split, one
candidate trained up to a rung (continuing from its checkpoint), its test score at the end, and the places
the jobs run (here, a pool of processes, or Ray tasks: the executors of ``rewriter study``).

Every selection reads the validation split: the training run of a candidate sees a ``DataSource`` whose
``test`` is that split, so ``train`` scores it after every epoch and never touches the test split. Only
``score_test``, called once per finished model at the end, reads the test split.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import RewriterError
from .._text import one_line
from ..engine.recipe import Recipe, Step
from ..lab.data import DataSource, dataset_labels, load_data
from ..lab.model_request import ModelRequest, model_for_data
from ..lab.sampling import holdout, subset
from ..lab.study import Executor
from ..lab.study.executors import import_ray, ray_session
from ..lab.training import TrainConfig, evaluate, train
from .errors import OptimizeError

MAX_FRACTION = 0.5  # at most half of the training split is held out
_DATA: dict[tuple[str, tuple[int, int], float, int], tuple[DataSource, DataSource, Holdout]] = {}


@dataclass(frozen=True)
class Holdout:
    """The validation split: ``indices`` into the training split, held out stratified and seeded."""

    fraction: float
    seed: int
    indices: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "seed": self.seed, "count": len(self.indices),
                "indices": list(self.indices)}  # fmt: skip


def split_validation(data: DataSource, *, fraction: float, seed: int) -> tuple[DataSource, Holdout]:
    """``data`` with a validation split held out of its training split: (what candidates train on, with the
    validation split as its ``test``; the record of the split). At least as many images as classes are
    held out.

    Raises:
        OptimizeError: ``fraction`` outside (0, 0.5].
    """
    if not 0 < fraction <= MAX_FRACTION:
        raise OptimizeError(f"fraction: expected a share in (0, {MAX_FRACTION}], got {fraction!r}")
    labels = dataset_labels(data.train)
    count = min(max(round(fraction * len(labels)), data.num_classes), len(labels) - 1)
    kept, held = holdout(labels, count, seed=seed)
    trained = DataSource(
        f"{data.name} less {count} validation images (seed {seed})", subset(data.train, kept),
        subset(data.train_plain, held), data.num_classes, subset(data.train_plain, kept), data.in_channels,
    )  # fmt: skip
    return trained, Holdout(fraction, seed, tuple(held))


TrainFunction = Callable[..., Any]  # ``rewriter.lab.training.train`` or a stand-in with its signature


@dataclass(frozen=True)
class TrialSetup:
    """What every candidate's training shares: the baseline as the user named it (model arguments carried),
    the data and its validation split, the full run's configuration (scoring the validation split after
    every epoch, as ``TrainConfig`` does by default: a rung reads its last epoch's score), the folder and the
    device."""

    request: ModelRequest
    data: str
    input_size: tuple[int, int]
    config: TrainConfig
    out: Path
    fraction: float = 0.1
    holdout_seed: int = 0
    in_channels: int = 3
    leaf_modules: tuple[str, ...] = ()
    pretrained: bool = False
    device: str | None = "cpu"
    train_fn: TrainFunction = train

    def splits(self) -> tuple[DataSource, DataSource, Holdout]:
        """(the data as loaded, what candidates train on, the validation split), cached per process."""
        key = (self.data, self.input_size, self.fraction, self.holdout_seed)
        if key not in _DATA:
            remember(self, load_data(self.data, self.input_size))
        return _DATA[key]

    def checkpoint(self, key: str, seed: int) -> Path:
        return self.out / "checkpoints" / f"{key}-seed{seed}.pt"


def remember(setup: TrialSetup, data: DataSource) -> Holdout:
    """Use ``data`` (already loaded) for ``setup`` in this process; return its validation split."""
    trained, split = split_validation(data, fraction=setup.fraction, seed=setup.holdout_seed)
    _DATA[(setup.data, setup.input_size, setup.fraction, setup.holdout_seed)] = (data, trained, split)
    return split


@dataclass(frozen=True)
class TrialJob:
    """Train candidate ``key`` (``steps`` applied to the baseline) with ``seed`` up to epoch ``until``."""

    key: str
    steps: tuple[Step, ...]
    seed: int
    until: int


@dataclass(frozen=True)
class TrialOutcome:
    """Validation accuracy after every epoch trained so far, the epochs this job trained, and the error
    that ended it (None: it reached its rung)."""

    key: str
    seed: int
    curve: tuple[float, ...]
    trained: int
    error: str | None = None

    @property
    def accuracy(self) -> float:
        return self.curve[-1] if self.curve and self.error is None else float("nan")


def build_candidate(setup: TrialSetup, steps: Sequence[Step], seed: int, data: DataSource):
    """The baseline built with initial weights from ``seed`` and rewritten by ``steps``: (model, spec)."""
    from ..engine.pipeline import rewrite

    torch.manual_seed(seed)
    model, spec = model_for_data(dataclasses.replace(setup.request, input_size=setup.input_size), data)
    if steps:
        recipe = Recipe(tuple(steps), setup.input_size, data.num_classes, source="rewriter optimize")
        model = rewrite(
            model, recipe, in_channels=setup.in_channels, leaf_modules=setup.leaf_modules, data=data,
            pretrained=setup.pretrained, measure_cost=False, latency=False, name=setup.request.source,
        ).model  # fmt: skip
    return model, spec


def run_trial(
    setup: TrialSetup, job: TrialJob, on_epoch: Callable[[Any], None] | None = None
) -> TrialOutcome:
    """Train ``job``'s candidate up to its rung with the full run's schedule, from its checkpoint if there
    is one; a failure of the candidate (it does not rewrite, its loss diverges) is its outcome."""
    _, trained, _ = setup.splits()
    path = setup.checkpoint(job.key, job.seed)
    epochs: list[Any] = []

    def record(epoch: Any) -> None:
        epochs.append(epoch)
        if on_epoch is not None:
            on_epoch(epoch)

    try:
        model, _ = build_candidate(setup, job.steps, job.seed, trained)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = dataclasses.replace(setup.config, seed=job.seed, on_divergence="stop")
        result = setup.train_fn(
            model, trained, config, checkpoint=path, resume=path.is_file(), device=setup.device,
            progress=False, on_epoch=record, until_epoch=job.until,
        )  # fmt: skip
    except (RewriterError, RuntimeError) as err:
        return TrialOutcome(job.key, job.seed, (), len(epochs), one_line(err, limit=300))
    curve = tuple(
        float(h.test_accuracy) for h in result.history[: job.until]
    )  # a longer checkpoint: its prefix
    diverged = any(h.diverged for h in result.history)
    return TrialOutcome(job.key, job.seed, curve, len(epochs), "the loss diverged" if diverged else None)


def trained_model(setup: TrialSetup, key: str, steps: Sequence[Step], seed: int = 0) -> tuple[nn.Module, Any]:
    """Candidate ``key`` with the weights of its last checkpoint (seed ``seed``): (model, spec)."""
    _, trained, _ = setup.splits()
    model, spec = build_candidate(setup, steps, seed, trained)
    state = torch.load(setup.checkpoint(key, seed), map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model, spec


def score_test(setup: TrialSetup, key: str, steps: Sequence[Step], seed: int) -> float:
    """The test accuracy of candidate ``key``'s finished run with ``seed``: the only read of the test split."""
    from torch.utils.data import DataLoader

    from ..lab.training import resolve_device

    data, _, _ = setup.splits()
    device = resolve_device(setup.device)
    model, _ = trained_model(setup, key, steps, seed)
    return evaluate(model.to(device), DataLoader(data.test, batch_size=256), device)


def run_jobs(
    setup: TrialSetup, jobs: Sequence[TrialJob], executor: Executor, on_epoch: Callable[[TrialJob, Any], None]
) -> list[TrialOutcome]:
    """Run ``jobs`` where ``executor`` says; the outcomes in the order of ``jobs`` (so that what is decided
    from them does not depend on which worker finished first)."""
    if executor.kind == "ray":
        return _run_ray(setup, jobs, executor)
    if executor.kind == "processes" and executor.workers > 1 and len(jobs) > 1:
        return _run_pool(setup, jobs, min(executor.workers, len(jobs), os.cpu_count() or 1))
    return [run_trial(setup, job, lambda epoch, job=job: on_epoch(job, epoch)) for job in jobs]


def _run_pool(setup: TrialSetup, jobs: Sequence[TrialJob], workers: int) -> list[TrialOutcome]:
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(threads, os.getpid())
    ) as pool:
        futures = [pool.submit(run_trial, setup, job) for job in jobs]
        return [_result(future, job) for future, job in zip(futures, jobs, strict=True)]


def _worker_init(threads: int, parent: int) -> None:
    from ..lab.study.executors import die_with_parent

    torch.set_num_threads(threads)
    die_with_parent(parent)


def _result(future: concurrent.futures.Future, job: TrialJob) -> TrialOutcome:
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool as err:
        return TrialOutcome(job.key, job.seed, (), 0, f"its worker process died ({type(err).__name__})")


@contextlib.contextmanager
def executor_session(executor: Executor) -> Iterator[None]:
    """Hold one Ray connection over the whole search (``executor`` ray; none else): the study's
    ``ray_session`` (the connection, its reachability and the nodes' resources checked the same way)."""
    if executor.kind != "ray":
        yield
        return
    with ray_session(executor):
        yield


def _run_ray(setup: TrialSetup, jobs: Sequence[TrialJob], executor: Executor) -> list[TrialOutcome]:
    """One Ray task per job (no retries: a lost worker fails its candidate), inside ``executor_session``."""
    ray = import_ray()
    if setup.device is None and not executor.gpus_per_cell:
        setup = dataclasses.replace(setup, device="cpu")  # a task without a GPU of its own trains on the CPU
    task = ray.remote(run_trial).options(
        num_cpus=executor.cpus_per_cell, num_gpus=executor.gpus_per_cell, max_retries=0
    )
    refs = [task.remote(setup, job) for job in jobs]
    outcomes = []
    try:
        for ref, job in zip(refs, jobs, strict=True):
            try:
                outcomes.append(ray.get(ref))
            except ray.exceptions.RayError as err:
                lost = f"its Ray worker was lost ({type(err).__name__})"
                outcomes.append(TrialOutcome(job.key, job.seed, (), 0, lost))
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    return outcomes
