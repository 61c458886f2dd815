"""Scoring a model on the test split of a data source: accuracy, loss, accuracy per class, images per second.

What ``rewriter evaluate`` prints. The test split is read in order, without augmentation, by the batch
loader every measurement uses (``batches.loader``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..analysis.modes import eval_mode
from .batches import loader
from .data import DataError, DataSource


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
    classes = data.num_classes
    loss_sum, correct, seen = (
        0.0,
        torch.zeros(classes, dtype=torch.long),
        torch.zeros(classes, dtype=torch.long),
    )
    start = time.perf_counter()
    with eval_mode(model), torch.no_grad():
        for x, y in test_loader(data, batch_size=batch_size, workers=workers, device=device):
            out, y = model(x.to(device)).float().cpu(), y.cpu()
            if out.ndim != 2 or out.shape[1] != classes:
                raise DataError(
                    f"the model returns {list(out.shape)}, the data {data.name} has {classes} classes: give a model "
                    f"with a {classes}-class head (num_classes={classes} when it is built by name)",
                    param="num_classes",
                )
            loss_sum += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            hits = out.argmax(1) == y
            seen += torch.bincount(y, minlength=classes)
            correct += torch.bincount(y[hits], minlength=classes)
    seconds = time.perf_counter() - start
    total = int(seen.sum())
    if total == 0:
        raise DataError(f"{data.name}: the test split is empty")
    per_class = tuple(None if n == 0 else int(c) / int(n) for c, n in zip(correct, seen, strict=True))
    return Score(
        data.name, int(correct.sum()) / total, loss_sum / total, per_class, tuple(int(n) for n in seen),
        class_names(data), seconds,
    )  # fmt: skip
