"""Parts of a split that read every class: stratified, seeded samples, subsets and held-out validation splits.

Image folders and CIFAR's batches are sorted by class; the first N items of a split are one or two classes.
Every measurement that reads part of a split (a subset to train on, a quick accuracy check, the images a
saturation or probe reads, a validation split held out from training) draws its part here: per class in
proportion to the class's share, each class's items picked by a seeded permutation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from .._errors import RewriterError

__all__ = ["SamplingError", "holdout", "stratified_indices", "subset"]


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
