"""Parts of a split that read every class: stratified, seeded samples, subsets and held-out validation splits.

Image folders and CIFAR's batches are sorted by class; the first N items of a split are one or two classes.
Every measurement that reads part of a split (a subset to train on, a quick accuracy check, the images a
saturation or probe reads, a validation split held out from training) draws its part here: per class in
proportion to the class's share, each class's items picked by a seeded permutation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .._errors import RewriterError

__all__ = ["SamplingError", "dataset_labels", "holdout", "sample", "stratified_indices", "subset"]


class SamplingError(RewriterError, ValueError):
    """A sample cannot be drawn: more items asked for than the split holds, or a count below one."""


def stratified_indices(labels: Sequence[int], count: int, *, seed: int = 0) -> list[int]:
    """``count`` indices into ``labels``, each class represented in proportion to its share (largest
    remainders decide the rounding, so the counts add up to ``count``), picked by a permutation seeded with
    ``seed``; returned in a seeded random order, so that the first few also mix the classes.

    Example:
        >>> picked = stratified_indices([0] * 6 + [1] * 3 + [2] * 3, 4, seed=0)
        >>> sorted(1 if i < 6 else (2 if i < 9 else 3) for i in picked)  # classes 0, 0, 1, 2
        [1, 1, 2, 3]
    """
    labels = np.asarray(labels, dtype=np.int64)
    total = len(labels)
    if not 1 <= count <= total:
        raise SamplingError(f"cannot draw {count} items from a split of {total}: ask for 1 to {total}")
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * count / total
    taken = np.floor(exact).astype(np.int64)
    short = count - int(taken.sum())
    if short:  # largest remainders first; ties broken by the seeded order, not by class number
        order = np.lexsort((rng.random(len(classes)), -(exact - taken)))
        taken[order[:short]] += 1
    picked = [
        np.flatnonzero(labels == cls)[rng.permutation(size)[:n]]
        for cls, size, n in zip(classes, sizes, taken, strict=True)
    ]
    return rng.permutation(np.concatenate(picked)).tolist()


def subset(dataset: Dataset, indices: Sequence[int]) -> Dataset:
    """The items of ``dataset`` at ``indices``: an in-memory image set stays one (its fast batch path and
    labels kept), any other dataset becomes a ``torch.utils.data.Subset``."""
    take = getattr(dataset, "take", None)
    return take(list(indices)) if take is not None else Subset(dataset, list(indices))


def holdout(labels: Sequence[int], count: int, *, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split the indices of a split labelled ``labels`` into (kept for training, held out): ``count`` held
    out, stratified by label and seeded, as a validation split that selection reads instead of the test
    split."""
    if not 1 <= count < len(labels):
        raise SamplingError(
            f"cannot hold out {count} of {len(labels)} training items: hold out 1 to {len(labels) - 1}"
        )
    held = stratified_indices(labels, count, seed=seed)
    mask = np.ones(len(labels), dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask).tolist(), held


def dataset_labels(dataset: Dataset) -> list[int]:
    """The class of every item, read from the dataset's label list where it has one (no image is decoded)."""
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, torch.Tensor):
        return labels.tolist()
    if isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def sample(dataset: Dataset, count: int | None, *, seed: int = 0) -> Dataset:
    """``count`` items of ``dataset`` drawn stratified by class with ``seed`` (all of it for None or a count
    at least its size): what a measurement on part of a split reads."""
    if count is None or count >= len(dataset):
        return dataset
    return subset(dataset, stratified_indices(dataset_labels(dataset), count, seed=seed))
