"""Scoring a model on the test split of a data source: accuracy, loss, accuracy per class, images per second.

What ``rewriter evaluate`` prints. The test split is read in order, without augmentation, by the batch
loader every measurement uses (``batches.loader``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..analysis.modes import eval_mode
from .batches import loader
from .data import DataError, DataSource
from .precision import Precision


@dataclass(frozen=True)
class Score:
    """A model's figures on a test split; ``per_class[k]`` is None where the split has no image of class k."""

    data: str
    accuracy: float
    loss: float
    per_class: tuple[float | None, ...]
    counts: tuple[int, ...]  # test images per class
    class_names: tuple[str, ...]
    seconds: float  # the whole pass, loading included

    @property
    def images(self) -> int:
        return sum(self.counts)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "images": self.images,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class": [
                {"class": name, "images": n, "accuracy": a}
                for name, n, a in zip(self.class_names, self.counts, self.per_class, strict=True)
            ],
            "seconds": round(self.seconds, 4),
            "images_per_s": round(self.images_per_s, 1),
        }

    def format(self) -> str:
        lines = [
            f"{self.data}: {self.images} test images; accuracy {self.accuracy:.2%}, loss {self.loss:.4f}, "
            f"{self.images_per_s:.0f} images/s (loading included)",
            "accuracy per class:",
        ]
        for name, n, a in zip(self.class_names, self.counts, self.per_class, strict=True):
            lines.append(f"  {name}: " + ("no test image" if a is None else f"{a:.2%} of {n}"))
        return "\n".join(lines)


def test_loader(data: DataSource, *, batch_size: int, workers: int = 0, device: torch.device | str = "cpu"):
    """The test split in order, as batches (cut from memory on ``device`` where the split is held there)."""
    return loader(data.test, batch_size=batch_size, workers=workers, device=device)


test_loader.__test__ = False  # type: ignore[attr-defined]  # a loader, not a pytest test


def class_names(data: DataSource) -> tuple[str, ...]:
    """The data's class names where it has them (an image folder), else the class numbers."""
    names = (
        data.classes
        or getattr(data.test, "classes", None)
        or getattr(getattr(data.test, "dataset", None), "classes", None)
    )
    if names and len(names) == data.num_classes:
        return tuple(str(n) for n in names)
    return tuple(str(k) for k in range(data.num_classes))


@dataclass(frozen=True)
class Tally:
    """What one pass over a split counts: the summed cross-entropy, and per class the images seen and those
    classified right (the one loop behind ``score`` and training's ``evaluate_loss``)."""

    loss_sum: float
    correct: torch.Tensor  # [classes], int64
    seen: torch.Tensor  # [classes], int64

    @property
    def images(self) -> int:
        return int(self.seen.sum())


def tally(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str,
    *,
    classes: int | None = None,
    precision: Precision | None = None,
    what: str = "the data",
) -> Tally:
    """Count ``model`` over ``batches`` in eval mode without gradients (training flags restored), in
    ``precision``'s autocast; ``classes`` defaults to the model's outputs.

    Raises:
        DataError: the model does not return [batch, classes].
    """
    precision = precision or Precision()
    loss_sum, correct, seen = 0.0, None, None
    with eval_mode(model), torch.no_grad(), precision.autocast(torch.device(device)):
        for x, y in batches:
            out, y = model(precision.inputs(x.to(device))).float().cpu(), y.cpu()
            if out.ndim != 2 or out.shape[1] != (classes or out.shape[1]):
                raise DataError(
                    f"the model returns {list(out.shape)}, {what} has {classes} classes: give a model "
                    f"with a {classes}-class head (num_classes={classes} when it is built by name)",
                    param="num_classes",
                )
            if seen is None:
                seen = correct = torch.zeros(out.shape[1], dtype=torch.long)
            loss_sum += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            seen = seen + torch.bincount(y, minlength=out.shape[1])
            correct = correct + torch.bincount(y[out.argmax(1) == y], minlength=out.shape[1])
    empty = torch.zeros(classes or 0, dtype=torch.long)
    return Tally(loss_sum, empty if correct is None else correct, empty if seen is None else seen)


def score(
    model: nn.Module,
    data: DataSource,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    workers: int = 0,
) -> Score:
    """Score ``model`` on ``data.test`` (eval mode, no gradients; the model's training flags are restored).

    Raises:
        DataError: the model's outputs do not match the data's classes.
    """
    start = time.perf_counter()
    batches = test_loader(data, batch_size=batch_size, workers=workers, device=device)
    counted = tally(model, batches, device, classes=data.num_classes, what=f"the data {data.name}")
    seconds = time.perf_counter() - start
    if counted.images == 0:
        raise DataError(f"{data.name}: the test split is empty")
    per_class = tuple(
        None if n == 0 else int(c) / int(n) for c, n in zip(counted.correct, counted.seen, strict=True)
    )
    return Score(
        data.name, int(counted.correct.sum()) / counted.images, counted.loss_sum / counted.images, per_class,
        tuple(int(n) for n in counted.seen), class_names(data), seconds,
    )  # fmt: skip
