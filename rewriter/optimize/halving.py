"""Successive halving over a fixed set of candidates, decided by Optuna's ``SuccessiveHalvingPruner``.

Each candidate is one Optuna trial, enqueued with its key. Training runs in rungs: every surviving
candidate is trained up to the rung's epoch (continuing from its checkpoint), its validation score is
reported at that epoch, and the pruner says whether it goes on: a candidate goes on when its score is in the
best ``1 / factor`` of the scores reported at that rung so far (Optuna's asynchronous successive halving;
the first ``factor - 1`` reports at a rung go on when they are the best so far). The caller reports the
scores of a rung in a fixed order (``accuracy``: the baseline, then cheapest first), so that the decisions
do not depend on which worker finished first. Why Optuna and not Ray Tune: the pruner is a decision over
reported values, so it runs in the driver beside the study's executors (one process, a pool of processes,
Ray tasks) without owning them; Ray Tune would own the trials' processes and needs ``ray[tune]``, which is
not installed with ``ray`` (its import fails here).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from .errors import OptimizeError


def rungs(epochs: int, *, min_epochs: int, factor: int) -> tuple[int, ...]:
    """The epochs a candidate is judged at: ``min_epochs * factor**k`` below ``epochs``, then ``epochs``.

    Example:
        >>> rungs(10, min_epochs=1, factor=3)
        (1, 3, 9, 10)
    """
    if not 1 <= min_epochs <= epochs or factor < 2:
        raise OptimizeError(
            f"rungs need 1 <= min_epochs <= epochs and factor >= 2; got min_epochs={min_epochs}, "
            f"epochs={epochs}, factor={factor}"
        )
    points, epoch = [], min_epochs
    while epoch < epochs:
        points.append(epoch)
        epoch *= factor
    return (*points, epochs)


class Halving:
    """The Optuna study that decides which candidates go on after each rung."""

    def __init__(self, keys: Sequence[str], *, min_epochs: int, factor: int) -> None:
        try:
            import optuna
        except ImportError as err:
            raise OptimizeError(
                "the accuracy-aware search needs Optuna: pip install 'rewriter[search]'"
            ) from err
        logging.getLogger("optuna").setLevel(logging.WARNING)  # no line per trial on stderr
        self._optuna = optuna
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=factor)
        self.study = optuna.create_study(direction="maximize", pruner=pruner)
        choices = optuna.distributions.CategoricalDistribution(list(keys))
        for key in keys:
            self.study.enqueue_trial({"candidate": key})
        self.trials = {}
        for key in keys:
            trial = self.study.ask({"candidate": choices})
            if (
                trial.params["candidate"] != key
            ):  # pragma: no cover - Optuna hands out enqueued trials in order
                raise OptimizeError(f"Optuna gave trial {trial.params['candidate']!r} for {key!r}")
            self.trials[key] = trial

    def report(self, key: str, epoch: int, score: float, *, binding: bool = True) -> bool:
        """Report ``key``'s score after ``epoch`` epochs; False: the pruner would stop it (and, ``binding``,
        it is closed; a reference that trains on whatever the pruner says is reported with ``binding=False``,
        so that its score counts among the rung's)."""
        trial = self.trials[key]
        trial.report(score, epoch)  # NaN (no score) is pruned by the pruner itself
        if trial.should_prune():
            if binding:
                self.study.tell(trial, state=self._optuna.trial.TrialState.PRUNED)
            return False
        return True

    def finish(self, key: str, score: float) -> None:
        """``key`` trained to the end with ``score``."""
        if math.isnan(score):
            self.fail(key)
        else:
            self.study.tell(self.trials[key], score)

    def fail(self, key: str) -> None:
        self.study.tell(self.trials[key], state=self._optuna.trial.TrialState.FAIL)
