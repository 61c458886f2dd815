"""``validate``: train the baseline and the K best candidates, pick by accuracy on a validation split.

The training-free choice rests on the receptive field alone; paper 000 and the dissertation check their
predictions by training. Here the baseline and the K candidates ranked best by the heuristic (within the
budget) are trained to the end with one setup and the same seeds (``rewriter.optimize.accuracy`` with a
single rung: nothing is stopped early), on the training split less a validation split held out from it
(stratified, seeded, recorded). The trained choice is the candidate with the best mean validation accuracy
among those within the budget; the test split is read once per finished model, after the choice, for the
report. The summary says whether the trained choice is the one the heuristic chose. Checkpoints and the
trained finalists stay in the folder; an interrupted validation resumes there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..lab.model_request import ModelRequest
from ..lab.study import Executor
from ..lab.training import TrainConfig
from .accuracy import AccuracySearch, Schedule, search_accuracy
from .errors import OptimizeError
from .trials import TrialSetup


@dataclass(frozen=True)
class Validation:
    """The trained comparison: mean validation and test accuracy per candidate, the trained choice (made on
    validation accuracy), and whether it agrees with the training-free one."""

    out: str
    labels: dict[str, int]  # candidate key (c<index>) -> candidate index
    accuracy: dict[str, float | None]  # mean validation accuracy over the seeds (None: did not finish)
    test_accuracy: dict[str, float | None]  # mean test accuracy over the seeds, read after the choice
    spread: dict[str, float | None]  # standard deviation of the test accuracy over the seeds (None below 2)
    trained_choice: int | None  # the candidate with the best mean validation accuracy within the budget
    heuristic_choice: int | None
    agrees: bool
    summary: str
    search: AccuracySearch

    def to_json(self) -> dict[str, Any]:
        return {
            "out": self.out, "labels": self.labels, "validation_accuracy": self.accuracy,
            "test_accuracy": self.test_accuracy, "test_spread": self.spread, "trained_choice": self.trained_choice,
            "heuristic_choice": self.heuristic_choice, "agrees": self.agrees, "summary": self.summary,
            "selection": "mean validation accuracy (a split held out from the training data)",
            "validation_split": self.search.holdout.to_json(),
        }  # fmt: skip


def validate(
    result: Any,
    model: str | ModelRequest,
    *,
    data: str,
    k: int,
    epochs: int,
    seeds: int = 1,
    out: str | Path,
    lr: float = 0.1,
    batch_size: int = 64,
    max_batches: int | None = None,
    workers: int = 1,
    val_fraction: float = 0.1,
    model_args: Mapping[str, Any] | None = None,
    device: str | None = "cpu",
    precision: str = "fp32",
    say: Callable[[str], None] | None = None,
) -> Validation:
    """Train the baseline and the ``k`` best candidates of ``result`` (an ``OptimizeResult``) on ``data``.

    Args:
        model: what rebuilds the baseline: a name, an import spec or a model file, or a ``ModelRequest``.
        model_args: the arguments the baseline was built with (``--model-arg``), given to every rebuild
            (a ``ModelRequest`` carries its own).
        out: the folder of checkpoints and trained finalists; an interrupted validation resumes there.

    Raises:
        OptimizeError: ``k`` below 1, or no candidate to validate.
    """
    if k < 1:
        raise OptimizeError(f"k: expected at least 1 candidate to validate, got {k}")
    ranked = [c for c in result.choice.ranked if c.steps]
    if not ranked:
        raise OptimizeError(
            "no rewritten candidate meets the budget: nothing to validate against the baseline"
        )
    request = (
        model if isinstance(model, ModelRequest) else ModelRequest(model, model_args=dict(model_args or {}))
    )
    config = TrainConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, max_batches=max_batches, precision=precision
    )
    setup = TrialSetup(
        request, data, result.input_size, config, Path(out), fraction=val_fraction, device=device
    )
    schedule = Schedule(None, min_epochs=epochs, seeds=seeds)
    executor = Executor("processes" if workers > 1 else "serial", workers=workers)
    search = search_accuracy(result, setup, schedule, executor=executor, say=say,
                             candidates=[result.baseline, *ranked[:k]])  # fmt: skip
    return _judge(result, search, str(out))


def _judge(result: Any, search: AccuracySearch, out: str) -> Validation:
    import statistics

    labels = {e.key: e.candidate.index for e in search.entries}
    accuracy = {e.key: e.mean_validation if e.finalist else None for e in search.entries}
    test = {e.key: statistics.fmean(e.test) if e.test else None for e in search.entries}
    spread = {e.key: statistics.stdev(e.test) if len(e.test) > 1 else None for e in search.entries}
    heuristic = result.chosen.index if result.chosen is not None else None
    if search.chosen is None:
        summary = f"no trained candidate within the budget finished: nothing to compare ({search.reason})"
        return Validation(out, labels, accuracy, test, spread, None, heuristic, False, summary, search)
    trained = labels[search.chosen]
    agrees = trained == heuristic
    shown = ", ".join(
        f"{e.key} {e.candidate.label}: {accuracy[e.key]:.2%} validation, {test[e.key]:.2%} test"
        + (f" ± {spread[e.key]:.2%}" if spread[e.key] else "")
        for e in search.entries
        if accuracy[e.key] is not None and test[e.key] is not None
    )
    summary = (
        f"trained choice: {search.entry(search.chosen).candidate.label} ({accuracy[search.chosen]:.2%} mean "
        f"validation accuracy); it {'agrees with' if agrees else 'differs from'} the training-free choice"
        f"{'' if result.chosen is None else ' ' + result.chosen.label}. Accuracies: {shown}"
    )
    return Validation(out, labels, accuracy, test, spread, trained, heuristic, agrees, summary, search)
