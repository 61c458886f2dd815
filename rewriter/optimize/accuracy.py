"""The accuracy-aware search: settle the optimizer's trade-off with measured accuracy.

The candidates are the baseline, the front within the budget and the best few of the training-free ranking
(``OptimizeResult.choice.ranked``). They are trained with successive halving (``halving``): rung by rung,
each survivor trains further from its checkpoint with its full run's schedule, and the pruner keeps the best
fraction by validation score. The baseline is the reference: trained to the end, never stopped. The goal is
either the cheapest candidate whose validation accuracy is within ``max_drop`` percentage points of the
baseline's (the score at a rung: within the drop of the baseline at that rung, then cheaper), or, with no
drop, the most accurate within the budget. The finalists (candidates that reached the last rung) train with
the other seeds, the choice is made on their mean validation accuracy, and only then is the test split read,
once per finished model, for the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import write_json
from ..engine.recipe import Recipe
from ..lab.data import DataSource
from ..lab.study import Executor
from .accuracy_result import AccuracySearch, Entry, choose, kendall, scipy_kendalltau
from .choice import cost
from .errors import OptimizeError
from .halving import Halving, rungs
from .search import Candidate
from .trials import (
    Holdout,
    TrialJob,
    TrialOutcome,
    TrialSetup,
    executor_session,
    remember,
    run_jobs,
    score_test,
    trained_model,
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class Schedule:
    """The goal and how the training is spent: ``max_drop`` in percentage points (None: the most accurate
    within the budget), rungs from ``min_epochs`` growing by ``factor``, ``seeds`` runs per finalist, and
    ``top`` candidates from the training-free ranking beside the front."""

    max_drop: float | None = None
    min_epochs: int | None = None  # default: epochs // factor**2, at least 1
    factor: int = 3
    seeds: int = 1
    top: int = 3

    def __post_init__(self) -> None:
        bounds = [("max_drop", self.max_drop, 0, 100), ("min_epochs", self.min_epochs, 1, 100_000),
                  ("factor", self.factor, 2, 16), ("seeds", self.seeds, 1, 1000), ("top", self.top, 0, 64)]  # fmt: skip
        for name, value, low, high in bounds:
            if value is not None and not (isinstance(value, (int, float)) and low <= value <= high):
                raise OptimizeError(f"Schedule.{name}: expected a number from {low} to {high}, got {value!r}")

    def rungs(self, epochs: int) -> tuple[int, ...]:
        first = self.min_epochs or max(1, epochs // self.factor**2)
        return rungs(epochs, min_epochs=min(first, epochs), factor=self.factor)


def pick_candidates(result: Any, *, top: int, cheaper_only: bool) -> list[Candidate]:
    """The baseline, then the front within the budget and the ``top`` best of the training-free ranking, in
    the ranking's order; ``cheaper_only`` drops those costlier than the baseline (they cannot be the
    cheapest within a drop, the baseline being within it)."""
    ranked = list(result.choice.ranked)
    position = {c.index: i for i, c in enumerate(ranked)}
    pool = [c for c in result.front if c.index in position] + ranked[:top]
    base = cost(result.baseline.figures, result.objective)
    chosen = {
        c.index: c
        for c in pool
        if c.steps and (not cheaper_only or cost(c.figures, result.objective) <= base)
    }
    return [result.baseline, *sorted(chosen.values(), key=lambda c: position[c.index])]


def search_accuracy(
    result: Any,
    setup: TrialSetup,
    schedule: Schedule,
    *,
    data: DataSource | None = None,
    executor: Executor | None = None,
    say: Say | None = None,
    candidates: Sequence[Candidate] | None = None,
) -> AccuracySearch:
    """Train the candidates of ``result`` (an ``OptimizeResult``) by successive halving and choose by
    validation accuracy; ``data`` is the loaded ``setup.data`` (else it is loaded); ``candidates`` (the
    baseline first) replaces ``pick_candidates``.

    Raises:
        OptimizeError: nothing within the budget to train, or ``setup.out`` holds another search.
    """
    say = say or (lambda _text: None)
    executor = executor or Executor()
    scipy_kendalltau()  # a missing library is said before the training, not after it
    if result.choice.status == "over-budget":
        raise OptimizeError(
            "no candidate meets the budget: nothing to train (relax max_flops or max_params)",
            param=("max_flops", "max_params"),
        )
    if candidates is None:
        candidates = pick_candidates(result, top=schedule.top, cheaper_only=schedule.max_drop is not None)
    holdout = remember(setup, data) if data is not None else setup.splits()[2]
    position = {c.index: i for i, c in enumerate(result.choice.ranked)}
    entries = [
        Entry(f"c{c.index}", c, cost(c.figures, result.objective), position.get(c.index)) for c in candidates
    ]
    points = schedule.rungs(setup.config.epochs)
    _claim(setup, entries, holdout, points)
    bar = schedule.max_drop is not None or result.budget.meets(result.baseline.figures)
    with executor_session(executor):
        _halve(entries, setup, schedule, points, executor, say, bar=bar)
        _other_seeds([e for e in entries if e.finalist], setup, schedule, executor, say)
    chosen, reason = choose(entries, result, schedule.max_drop)
    say("scoring the finished models on the test split (once each)")
    for entry in (e for e in entries if e.finalist):
        entry.test = [
            score_test(setup, entry.key, entry.candidate.steps, seed) for seed in range(schedule.seeds)
        ]
    tau, p = kendall(entries)
    search = AccuracySearch(
        tuple(entries), chosen, reason, schedule.max_drop, points, schedule.factor, schedule.seeds,
        sum(e.epochs for e in entries), len(entries) * setup.config.epochs * schedule.seeds, tau, p, holdout,
        result.objective,
    )  # fmt: skip
    write_finalists(search, setup)
    write_json(setup.out / "search.json", search.to_json())
    return search


def write_finalists(search: AccuracySearch, setup: TrialSetup) -> dict[str, Path]:
    """Every finalist as a model file with its trained weights (seed 0): ``OUT/finalists/KEY.pt``."""
    from ..engine.saving import save

    written, classes = {}, setup.splits()[0].num_classes
    (setup.out / "finalists").mkdir(parents=True, exist_ok=True)
    for entry in (e for e in search.entries if e.finalist):
        model, spec = trained_model(setup, entry.key, entry.candidate.steps)
        recipe = Recipe(entry.candidate.steps, setup.input_size, classes, source="rewriter optimize")
        written[entry.key] = save(
            model, setup.out / "finalists" / f"{entry.key}.pt", spec=spec, recipe=recipe,
            input_size=setup.input_size, in_channels=setup.in_channels, leaf_modules=setup.leaf_modules,
            report=entry.to_json(), overwrite=True,
        )  # fmt: skip
    return written


def _claim(setup: TrialSetup, entries: Sequence[Entry], holdout: Holdout, points: Sequence[int]) -> None:
    """Record in ``setup.out`` what its checkpoints belong to; refuse a folder of another search (other
    candidates, data, model or training), which would resume checkpoints of other runs."""
    import json
    from dataclasses import asdict

    config = {k: v for k, v in asdict(setup.config).items() if k not in ("seed", "workers")}
    plan = {"candidates": {e.key: e.candidate.label for e in entries}, "data": setup.data,
            "input_size": list(setup.input_size), "validation_split": holdout.to_json(),
            "model": setup.request.source, "model_args": dict(setup.request.model_args), "training": config,
            "rungs": list(points)}  # fmt: skip
    path = setup.out / "plan.json"
    if path.is_file():
        recorded = json.loads(path.read_text())
        if {k: recorded.get(k) for k in plan} != json.loads(json.dumps(plan)):
            raise OptimizeError(
                f"the folder {setup.out} holds the checkpoints of another search (other candidates, data, model, "
                "epochs or rungs); give another `out` folder, or remove that one",
                param="out",
            )
    setup.out.mkdir(parents=True, exist_ok=True)
    write_json(path, plan)


def rung_score(
    entry: Entry, accuracy: float, reference: float, max_drop: float | None, top_cost: float
) -> float:
    """What the pruner compares at a rung: the validation accuracy, or with a drop, 1 + the saving (0..1)
    for a candidate within the drop of the baseline's accuracy at that rung, else how far below it is."""
    if max_drop is None or not math.isfinite(accuracy):
        return accuracy
    floor = reference - max_drop / 100
    if accuracy >= floor:
        return 1.0 + (1.0 - entry.cost / top_cost if top_cost > 0 else 0.0)
    return accuracy - floor


def _halve(
    entries, setup: TrialSetup, schedule: Schedule, points, executor: Executor, say: Say, *, bar: bool
):
    """Train rung by rung; after each, the pruner says which candidates go on. Scores are reported cheapest
    first (the order in which parallel workers would finish a rung, fixed so that the decisions do not depend
    on which finished first). The baseline always goes on (the reference); with ``bar`` its score is
    reported before all others, so that a candidate below it is stopped even when heard first (Optuna lets
    the first report of a rung go on)."""
    baseline = entries[0]
    keys = [e.key for e in (entries if bar else entries[1:])]
    halving = Halving(keys, min_epochs=points[0], factor=schedule.factor)
    alive = list(entries)
    top_cost = max((e.cost for e in entries if math.isfinite(e.cost)), default=1.0)
    for number, epoch in enumerate(points, start=1):
        outcomes = _train(alive, setup, epoch, 0, f"rung {number}/{len(points)}", executor, say)
        for entry, outcome in zip(alive, outcomes, strict=True):
            _record(entry, outcome, epoch)
        reference = baseline.rungs.get(epoch, math.nan)
        survivors = []
        for entry in sorted(alive, key=lambda e: (e is not baseline, e.cost, alive.index(e))):
            score = rung_score(
                entry, entry.rungs.get(epoch, math.nan), reference, schedule.max_drop, top_cost
            )
            if entry.key not in halving.trials:  # the baseline, when it is no bar
                goes_on = entry.error is None
            else:
                goes_on = _decide(
                    halving, entry, epoch, score, last=epoch == points[-1], binding=entry is not baseline
                )
            survivors += [entry] if goes_on else []
        stopped = [e.key for e in alive if e not in survivors]
        if stopped:
            say(f"rung {number}/{len(points)} (epoch {epoch}): stopped {', '.join(stopped)}")
        alive = [e for e in alive if e in survivors]
    for entry in alive:
        entry.finalist = True
        entry.validation.append(entry.rungs[points[-1]])


def _decide(halving: Halving, entry: Entry, epoch: int, score: float, *, last: bool, binding: bool) -> bool:
    """Tell the pruner ``entry``'s score at ``epoch``; whether it goes on (a ``binding=False`` entry, the
    baseline, goes on whatever the pruner says while it trains)."""
    if entry.error is not None:
        halving.fail(entry.key)
        return False
    if last:
        halving.finish(entry.key, score)
        return True
    return halving.report(entry.key, epoch, score, binding=binding) or not binding


def _train(entries, setup, epoch: int, seed: int, stage: str, executor, say: Say) -> list[TrialOutcome]:
    """Train ``entries`` with ``seed`` up to ``epoch``; a status line per epoch (per job from workers)."""
    jobs = [TrialJob(e.key, e.candidate.steps, seed, epoch) for e in entries]
    where = f"{stage} (to epoch {epoch} of {setup.config.epochs})"
    heard: set[str] = set()

    def progress(job: TrialJob, record: Any) -> None:
        heard.add(job.key)
        say(f"{where}, candidate {jobs.index(job) + 1}/{len(jobs)} {job.key}, seed {seed}: epoch "
            f"{record.epoch + 1}, validation accuracy {record.test_accuracy:.2%}")  # fmt: skip

    outcomes = run_jobs(setup, jobs, executor, progress)
    for number, outcome in enumerate(outcomes, start=1):
        if outcome.key not in heard:  # trained by a worker (no epoch lines), resumed past its rung, or failed
            shown = outcome.error or f"epoch {len(outcome.curve)}, validation accuracy {outcome.accuracy:.2%}"
            say(f"{where}, candidate {number}/{len(jobs)} {outcome.key}, seed {seed}: {shown}")
    return outcomes


def _record(entry: Entry, outcome: TrialOutcome, epoch: int) -> None:
    entry.epochs += outcome.trained
    if outcome.error is not None:
        entry.error = outcome.error
        return
    entry.rungs[epoch] = outcome.accuracy
    entry.stopped = len(outcome.curve)


def _other_seeds(finalists, setup: TrialSetup, schedule: Schedule, executor, say: Say) -> None:
    for seed in range(1, schedule.seeds):
        stage = f"seed {seed + 1}/{schedule.seeds}"
        outcomes = _train(finalists, setup, setup.config.epochs, seed, stage, executor, say)
        for entry, outcome in zip(finalists, outcomes, strict=True):
            entry.epochs += outcome.trained
            if outcome.error is not None:
                entry.error, entry.finalist = outcome.error, False
            else:
                entry.validation.append(outcome.accuracy)
