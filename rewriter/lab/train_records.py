"""The records of training: its configuration (with the declared range of every number), one epoch's
figures, and the result; and the error training raises."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from .._errors import RewriterError
from ._ranges import bounded, check_ranges


class TrainError(RewriterError, RuntimeError):
    """Training cannot start or continue (a checkpoint that does not fit, a diverged loss, a bad setting)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; the defaults follow paper 000 III-B (SGD 0.1, momentum 0.9, /10 steps, batch 64).
    Every number has a declared range; a value outside it raises ``TrainError``."""

    epochs: int = bounded(30, low=1)
    batch_size: int = bounded(64, low=1)
    lr: float = bounded(0.1, low=0, open_low=True)
    momentum: float = bounded(0.9, low=0, high=1, open_high=True)
    weight_decay: float = bounded(0.0, low=0)
    optimizer: Literal["sgd", "adam", "rmsprop"] = "sgd"
    step_every: int | None = bounded(None, low=1)  # epochs between learning-rate steps; default a third
    gamma: float = bounded(0.1, low=0, high=1, open_low=True)
    seed: int = bounded(0, low=0)
    workers: int = bounded(0, low=0)
    max_batches: int | None = bounded(None, low=1)  # per epoch, for quick runs
    train_only: str | None = None  # a submodule path: only it is trained, the rest is frozen in eval mode
    test_every: int = bounded(1, low=0)  # score the test split every K epochs (0: only after the last)
    warmup_epochs: int = bounded(0, low=0)  # the rate rises linearly over these first epochs
    on_divergence: Literal["raise", "stop"] = "raise"  # a non-finite loss: raise TrainError, or end the run
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # lab/precision.py; auto: by the hardware

    def __post_init__(self) -> None:
        check_ranges(self, TrainError)
        for name, allowed in (
            ("optimizer", ("sgd", "adam", "rmsprop")),
            ("on_divergence", ("raise", "stop")),
            ("precision", ("auto", "fp32", "bf16", "fp16")),
        ):
            if getattr(self, name) not in allowed:
                raise TrainError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}", param=name
                )

    def tests_after(self, epoch: int) -> bool:
        """Whether the test split is scored after ``epoch`` (0-based): every ``test_every`` epochs, and
        always after the last."""
        last = epoch == self.epochs - 1
        return last or (self.test_every > 0 and (epoch + 1) % self.test_every == 0)


@dataclass
class EpochRecord:
    """One epoch: train loss and accuracy (running means over its batches), test loss and accuracy after
    it (NaN when not evaluated), and the learning rate it ended with."""

    epoch: int
    loss: float
    accuracy: float
    test_accuracy: float
    lr: float
    test_loss: float = float("nan")
    diverged: bool = False  # the loss became NaN or infinite during this epoch (training ended there)
    # throughput, measured, not a result: two runs that learned the same are equal whatever their speed
    train_images_per_s: float = field(default=float("nan"), compare=False)  # steps and loading
    test_images_per_s: float = field(default=float("nan"), compare=False)  # scoring after it (NaN: not)


@dataclass
class TrainResult:
    model: nn.Module
    history: list[EpochRecord] = field(default_factory=list)
    precision: str = "fp32"  # what the run computed in (a resolved Precision's label)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy if self.history else float("nan")

    def throughput(self) -> dict[str, float | None]:
        """Median images/s over the epochs, of training and of scoring the test split (None: not measured)."""
        return {"train_images_per_s": _median([h.train_images_per_s for h in self.history]),
                "test_images_per_s": _median([h.test_images_per_s for h in self.history])}  # fmt: skip


def _median(values: list[float]) -> float | None:
    import statistics

    finite = [v for v in values if v == v]
    return round(statistics.median(finite), 1) if finite else None


def step_every(config: TrainConfig) -> int:
    """Epochs between two divisions of the rate: ``step_every``, or a third of the epochs (paper 000's 60
    epochs divided at 20 and 40, scaled)."""
    return config.step_every or max(1, math.ceil(config.epochs / 3))


def scheduled_lr(config: TrainConfig, epoch: int) -> float:
    """The rate ``config``'s schedule gives epoch ``epoch`` (0-based; the warm-up's ramp not included)."""
    return config.lr * config.gamma ** (epoch // step_every(config))
