"""``validate``: train the baseline and the K best candidates with the study machinery, pick by accuracy.

The training-free choice rests on the receptive field alone; paper 000 and the dissertation check their
predictions by training. Here the baseline and the K candidates ranked best by the heuristic (within the
budget) become one study (``rewriter.lab.study``): one setup, the same seeds, a resumable folder, every cell
written as it finishes. The trained choice is the candidate with the best mean test accuracy among those
within the budget (the budget judged on the candidate's own figures), and the summary says whether it is
the one the heuristic chose.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.recipe import Recipe
from ..lab.study import Study, StudySetup, Variant, run_study
from .errors import OptimizeError
from .search import Candidate


def _field(row: Any, key: str) -> Any:
    """A study row's field (rows are records or, from older studies, plain dicts)."""
    return row.get(key) if isinstance(row, dict) else getattr(row, key, None)


@dataclass(frozen=True)
class Validation:
    """The trained comparison: mean accuracy per candidate, the trained choice, and whether it agrees."""

    out: str
    labels: dict[str, int]  # study recipe label -> candidate index
    accuracy: dict[str, float | None]  # mean test accuracy over the seeds (None: no finished cell)
    spread: dict[str, float | None]  # standard deviation over the seeds (None with fewer than 2)
    trained_choice: int | None  # the candidate with the best mean accuracy within the budget
    heuristic_choice: int | None
    agrees: bool
    summary: str

    def to_json(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "labels": self.labels,
            "accuracy": self.accuracy,
            "spread": self.spread,
            "trained_choice": self.trained_choice,
            "heuristic_choice": self.heuristic_choice,
            "agrees": self.agrees,
            "summary": self.summary,
        }


def _variants(baseline: Candidate, best: Sequence[Candidate], size: tuple[int, int]) -> dict[str, Candidate]:
    variants = {"baseline": baseline}
    for rank, candidate in enumerate(best, start=1):
        variants[f"rank{rank}"] = candidate
    return variants


def validate(
    result: Any,
    model: str,
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
    latency_repeats: int = 15,
    model_args: Mapping[str, Any] | None = None,
    plot: Callable[..., None] | None = None,
    progress: bool = True,
) -> Validation:
    """Train the baseline and the ``k`` best candidates of ``result`` (an ``OptimizeResult``) on ``data``.

    Args:
        model: what the study builds (a name, an import spec or a model file): it must rebuild the baseline.
        model_args: the arguments the baseline was built with (``--model-arg``), given to every rebuild.
        out: the study folder; an interrupted validation resumes there.

    Raises:
        OptimizeError: ``k`` below 1, or no candidate to validate.
    """
    if k < 1:
        raise OptimizeError(f"--validate expects at least 1 candidate, got {k}")
    ranked = [c for c in result.choice.ranked if c.steps]
    if not ranked:
        raise OptimizeError(
            "no rewritten candidate meets the budget: nothing to validate against the baseline"
        )
    variants = _variants(result.baseline, ranked[:k], result.input_size)
    grid = [Variant(label, Recipe(c.steps, source=label)) for label, c in variants.items()]
    setup = StudySetup(
        data=data,
        input_size=result.input_size,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_batches=max_batches,
    )
    study = Study([model], grid, list(range(seeds)), setup, Path(out), model_args=dict(model_args or {}))
    rows = run_study(study, workers=workers, plot=plot, progress=progress)
    accuracy, spread = {}, {}
    for label in variants:
        values = [
            _field(r, "test_accuracy")
            for r in rows
            if _field(r, "recipe") == label and _field(r, "status") == "ok"
        ]
        values = [v for v in values if v is not None]
        accuracy[label] = statistics.fmean(values) if values else None
        spread[label] = statistics.stdev(values) if len(values) > 1 else None
    return _judge(result, variants, accuracy, spread, str(out))


def _judge(result, variants: dict[str, Candidate], accuracy, spread, out: str) -> Validation:
    budget = result.budget
    eligible = [
        label for label, c in variants.items() if accuracy[label] is not None and budget.meets(c.figures)
    ]
    heuristic = result.chosen.index if result.chosen is not None else None
    labels = {label: c.index for label, c in variants.items()}
    if not eligible:
        summary = "no trained candidate within the budget finished: nothing to compare"
        return Validation(out, labels, accuracy, spread, None, heuristic, False, summary)
    best = max(eligible, key=lambda label: (accuracy[label], -list(variants).index(label)))
    trained = variants[best]
    agrees = trained.index == heuristic
    verdict = "agrees with" if agrees else "differs from"
    shown = ", ".join(
        (label if label == "baseline" else f"{label} {variants[label].label}")
        + f": {accuracy[label]:.2%}"
        + (f" ± {spread[label]:.2%}" if spread[label] else "")
        for label in variants
        if accuracy[label] is not None
    )
    summary = (
        f"trained choice: {trained.label} ({accuracy[best]:.2%} mean test accuracy); it {verdict} the "
        f"training-free choice{'' if result.chosen is None else ' ' + result.chosen.label}. Accuracies: {shown}"
    )
    return Validation(out, labels, accuracy, spread, trained.index, heuristic, agrees, summary)
