"""What the accuracy-aware search measured and what it chose: one ``Entry`` per candidate (costs,
training-free rank, validation accuracy per rung and per seed, test accuracy), the ``AccuracySearch``
record (table and JSON), the choice among the finalists on mean validation accuracy, and Kendall's tau
between the training-free ranking and the trained one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import OptimizeError
from .search import Candidate
from .trials import Holdout

SCHEDULER = "optuna.pruners.SuccessiveHalvingPruner"


@dataclass
class Entry:
    """One candidate in the search: its costs, its training-free rank, what training measured."""

    key: str
    candidate: Candidate
    cost: float
    rank: int | None  # position in the training-free ranking (0: first); None: not ranked (over budget)
    rungs: dict[int, float] = field(default_factory=dict)  # epoch -> validation accuracy (seed 0)
    stopped: int = 0  # the last epoch trained with seed 0
    finalist: bool = False
    validation: list[float] = field(default_factory=list)  # final validation accuracy per seed
    test: list[float] = field(default_factory=list)  # test accuracy per seed (finalists, at the end)
    epochs: int = 0  # spent on this candidate, every seed
    error: str | None = None

    @property
    def mean_validation(self) -> float:
        return statistics.fmean(self.validation) if self.validation else math.nan

    def to_json(self) -> dict[str, Any]:
        f = self.candidate.figures
        spread = statistics.stdev(self.test) if len(self.test) > 1 else None
        return {
            "key": self.key, "index": self.candidate.index, "label": self.candidate.label,
            "steps": [{s.strategy: dict(s.params)} for s in self.candidate.steps], "flops": f.flops,
            "params": f.params, "cost": self.cost, "training_free_rank": self.rank,
            "validation_per_rung": {str(k): v for k, v in self.rungs.items()}, "stopped_at_epoch": self.stopped,
            "finalist": self.finalist, "validation_accuracy": self.validation,
            "test_accuracy": self.test, "test_mean": statistics.fmean(self.test) if self.test else None,
            "test_spread": spread, "epochs": self.epochs, "error": self.error,
        }  # fmt: skip


@dataclass(frozen=True)
class AccuracySearch:
    """What the search trained, what it chose and why, and what it cost against training every candidate."""

    entries: tuple[Entry, ...]
    chosen: str | None
    reason: str
    max_drop: float | None
    rungs: tuple[int, ...]
    factor: int
    seeds: int
    epochs_spent: int
    epochs_full: int
    tau: float | None
    tau_p: float | None
    holdout: Holdout
    objective: str

    def entry(self, key: str) -> Entry:
        return next(e for e in self.entries if e.key == key)

    def format(self) -> str:
        """A table: per candidate its cost, validation accuracy per rung, test accuracy and epochs; the choice,
        the epochs spent and the rank correlation."""
        from .._text import human

        goal = self.to_json()["goal"]
        split = self.holdout
        lines = [
            f"accuracy-aware search: {goal} (validation: {len(split.indices)} images held out of the training "
            f"split, stratified, seed {split.seed}); rungs at epochs {', '.join(map(str, self.rungs))} "
            f"({SCHEDULER}, reduction factor {self.factor}), {self.seeds} seed(s)",
            f"{'key':<6}{'FLOPs':>9}{'params':>9}  {'validation per rung':<28}{'test':>16}{'epochs':>8}  candidate",
        ]
        for e in self.entries:
            rung_text = " ".join(f"{e.rungs[r]:.1%}" if r in e.rungs else "-" for r in self.rungs)
            test = "-" if not e.test else f"{statistics.fmean(e.test):.2%}"
            if len(e.test) > 1:
                test += f" ± {statistics.stdev(e.test):.2%}"
            label = e.candidate.label + (f" (failed: {e.error})" if e.error else "")
            f = e.candidate.figures
            lines.append(
                f"{e.key:<6}{human(f.flops):>9}{human(f.params):>9}  {rung_text:<28}{test:>16}{e.epochs:>8}  {label}"
            )
        tau = "-" if self.tau is None else f"{self.tau:.2f} (p {self.tau_p:.2f})"
        lines += [
            f"chosen: {self.reason}" if self.chosen else f"no choice: {self.reason}",
            f"epochs spent: {self.epochs_spent} of {self.epochs_full} (every candidate to the end, every seed); "
            f"Kendall's tau, training-free ranking against the trained one: {tau}",
        ]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "goal": "most accurate within the budget" if self.max_drop is None
            else f"cheapest within {self.max_drop:g} pp of the baseline",
            "max_accuracy_drop_pp": self.max_drop, "objective": self.objective, "chosen": self.chosen,
            "reason": self.reason, "scheduler": SCHEDULER, "rungs": list(self.rungs),
            "reduction_factor": self.factor, "seeds": self.seeds, "epochs_spent": self.epochs_spent,
            "epochs_full": self.epochs_full, "kendall_tau": self.tau, "kendall_tau_p": self.tau_p,
            "validation_split": self.holdout.to_json(), "candidates": [e.to_json() for e in self.entries],
        }  # fmt: skip


def choose(entries: Sequence[Entry], result: Any, max_drop: float | None) -> tuple[str | None, str]:
    """The choice among the finalists, on mean validation accuracy, and why."""
    baseline = entries[0]
    finished = [e for e in entries if e.finalist and result.budget.meets(e.candidate.figures)]
    if max_drop is not None:
        if not baseline.finalist:
            return None, f"the baseline did not finish ({baseline.error}): no reference for the drop"
        floor = baseline.mean_validation - max_drop / 100
        within = [e for e in finished if e.mean_validation >= floor]
        if not within:
            return None, f"no finished candidate within the budget is within {max_drop:g} pp of the baseline"
        best = min(within, key=lambda e: (e.cost, -e.mean_validation, e.rank if e.rank is not None else -1))
        return best.key, (
            f"{best.key} {best.candidate.label} is the cheapest of {len(within)} finished candidate(s) within "
            f"{max_drop:g} pp of the baseline's validation accuracy {baseline.mean_validation:.2%}: "
            f"{best.mean_validation:.2%}"
        )
    if not finished:
        return None, "no candidate within the budget finished training"
    best = max(finished, key=lambda e: (e.mean_validation, -e.cost))
    return best.key, (
        f"{best.key} {best.candidate.label} has the best validation accuracy of the {len(finished)} finished "
        f"candidate(s) within the budget: {best.mean_validation:.2%}"
    )


def trained_key(entry: Entry) -> tuple[float, float]:
    """Where training puts a candidate (smaller is better): the further it got, the better; then its
    validation accuracy at the last rung it reached (the mean over seeds for finalists)."""
    accuracy = entry.mean_validation if entry.finalist else entry.rungs.get(entry.stopped, math.nan)
    return (-entry.stopped, -accuracy if math.isfinite(accuracy) else math.inf)


def kendall(entries: Sequence[Entry]) -> tuple[float | None, float | None]:
    """Kendall's tau (``scipy.stats.kendalltau``, tau-b: ties count as ties) between the training-free
    ranking and the trained one (``trained_key``), over the candidates that trained without error and that
    the training-free ranking holds; None with fewer than two, or when either ranking is all ties."""
    kendalltau = scipy_kendalltau()
    ranked = [e for e in entries if e.error is None and e.rank is not None and e.stopped > 0]
    if len(ranked) < 2:
        return None, None
    places = sorted({trained_key(e) for e in ranked})  # tied candidates share a place
    tau, p = kendalltau([e.rank for e in ranked], [places.index(trained_key(e)) for e in ranked])
    return (None, None) if math.isnan(tau) else (float(tau), float(p))


def scipy_kendalltau() -> Callable[..., Any]:
    try:
        from scipy.stats import kendalltau
    except ImportError as err:
        raise OptimizeError("the accuracy-aware search needs SciPy: pip install 'rewriter[search]'") from err
    return kendalltau
