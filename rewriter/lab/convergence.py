"""Whether a training run converged, read from its curve: the marks a study puts on every cell.

A run is judged on its per-epoch history (``EpochRecord``), against the chance level of its test split
(the share of the most frequent class: what a model that always answers that class scores):

- ``diverged``: a loss became NaN or infinite, or the last epoch's training loss is above the first's;
- ``not converged``: the final test accuracy is within ``margin`` of chance, measured as a share of the
  distance from chance to 100 % (the default 0.1: below 19 % on 10 balanced classes);
- ``still improving``: the test accuracy rose by more than ``rise`` (default 1 percentage point) per epoch on
  average over the last ``max(2, epochs // 5)`` epochs (the untrained model counts as scoring chance
  before the first epoch, so a single epoch that learned anything is still improving);
- ``converged``: none of these.

The first that applies, in this order, is the mark. A trade-off verdict against a baseline that is not
``converged`` compares a network that learned with one that did not, and is withheld.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ._ranges import bounded, check_ranges
from .training import TrainError

Mark = Literal["converged", "not converged", "diverged", "still improving"]
MARKS: tuple[Mark, ...] = ("converged", "still improving", "not converged", "diverged")


class Epoch(Protocol):
    loss: float
    test_accuracy: float


@dataclass(frozen=True)
class ConvergenceRule:
    """The thresholds of the marks (see the module docstring)."""

    margin: float = bounded(0.1, low=0, high=1)
    rise: float = bounded(0.01, low=0)
    window_share: float = bounded(0.2, low=0, high=1, open_low=True)

    def __post_init__(self) -> None:
        check_ranges(self, TrainError)

    def window(self, epochs: int) -> int:
        """Epochs over which the recent rise is measured: a fifth of the run, at least 2 (at most all)."""
        return min(epochs, max(2, int(epochs * self.window_share)))

    def threshold(self, chance: float) -> float:
        """The test accuracy at or below which a run counts as not converged."""
        return chance + self.margin * (1 - chance)

    def describe(self, chance: float) -> str:
        return (
            f"chance level {100 * chance:.1f} % (the most frequent test class); not converged: test accuracy at or "
            f"below {100 * self.threshold(chance):.1f} % (chance + {self.margin:g} of the way to 100 %); diverged: "
            "a NaN loss or a final training loss above the first epoch's; still improving: test accuracy rising by "
            f"more than {100 * self.rise:g} pp per epoch over the last fifth of the epochs (at least 2)"
        )


def chance_level(labels: Sequence[int]) -> float:
    """The accuracy of always answering the most frequent class of ``labels``."""
    if not labels:
        raise TrainError("no labels to take a chance level from")
    return max(Counter(labels).values()) / len(labels)


def judge(history: Sequence[Epoch], chance: float, rule: ConvergenceRule = ConvergenceRule()) -> Mark:
    """The mark of a run with per-epoch ``history`` on a test split of the given chance level.

    Example:
        >>> from types import SimpleNamespace as E
        >>> judge([E(loss=2.0, test_accuracy=0.5), E(loss=1.0, test_accuracy=0.9),
        ...        E(loss=0.5, test_accuracy=0.9), E(loss=0.4, test_accuracy=0.9)], chance=0.1)
        'converged'
        >>> judge([E(loss=2.3, test_accuracy=0.11), E(loss=2.3, test_accuracy=0.1)], chance=0.1)
        'not converged'
        >>> nan = float("nan")  # scored every third epoch: rising 10 pp over the 3 epochs since the last score
        >>> judge([E(loss=2.0, test_accuracy=nan)] * 2 + [E(loss=1.0, test_accuracy=0.5)]
        ...       + [E(loss=0.9, test_accuracy=nan)] * 2 + [E(loss=0.8, test_accuracy=0.6)], chance=0.1)
        'still improving'
    """
    if not history:
        raise TrainError("a run without epochs has no curve to judge")
    losses = [e.loss for e in history]
    if any(not math.isfinite(loss) for loss in losses) or losses[-1] > losses[0]:
        return "diverged"
    accuracy = [chance] + [e.test_accuracy for e in history]
    if not math.isfinite(accuracy[-1]):
        raise TrainError("the last epoch has no test accuracy to judge (train with test_every)")
    if accuracy[-1] <= rule.threshold(chance):
        return "not converged"
    window = rule.window(len(history))
    # a run scored every K epochs: the rise is measured from the last score at or before the window's start
    # (the untrained model's chance level at the latest), over the epochs since
    start = max(i for i in range(len(accuracy) - 1 - window + 1) if math.isfinite(accuracy[i]))
    if (accuracy[-1] - accuracy[start]) / (len(accuracy) - 1 - start) > rule.rise:
        return "still improving"
    return "converged"


def advice(mark: Mark) -> str:
    """What to change for a run with this mark."""
    return {
        "converged": "",
        "still improving": "train for more epochs (--epochs)",
        "not converged": "train for more epochs (--epochs), or let the rate be found (--lr auto)",
        "diverged": "lower the learning rate (--lr, or --lr auto)",
    }[mark]


@dataclass(frozen=True)
class ChanceCheck:
    """A model's test accuracy on a stratified sample of the test split against the chance level there."""

    accuracy: float
    images: int
    chance: float
    data: str

    @property
    def at_chance(self) -> bool:
        """Within three standard errors of chance: an untrained or diverged model."""
        return self.accuracy <= self.chance + 3 * math.sqrt(
            self.chance * (1 - self.chance) / max(self.images, 1)
        )

    def describe(self) -> str:
        return (
            f"test accuracy {self.accuracy:.1%} on {self.images} images of {self.data} is at chance "
            f"({self.chance:.1%})"
        )


def check_chance(model: Any, data: Any, device: Any, *, images: int = 1024) -> ChanceCheck:
    """Score ``model`` on a stratified sample of ``images`` test images (every class in proportion, seed 0:
    a class-sorted split's first images would be one class)."""
    from .sampling import dataset_labels, sample
    from .training import evaluate

    part = sample(data.test, images)
    accuracy = evaluate(model, part, device)
    return ChanceCheck(accuracy, len(part), chance_level(dataset_labels(part)), data.name)


def at_chance(model: Any, data: Any, device: Any, *, images: int = 1024) -> str | None:
    """Why the model's measurements say little, if its test accuracy cannot be told from chance; else None.

    What ``saturation`` warns about: the saturation of an untrained or diverged model is no property of
    the architecture (scale-width refuses such a model for the same reason).
    """
    check = check_chance(model, data, device, images=images)
    if not check.at_chance:
        return None
    return (
        f"{check.describe()}: the saturation of an untrained or diverged model says little about the "
        "architecture; train it first (rewriter train ... -o model.pt, or --epochs N here)"
    )
