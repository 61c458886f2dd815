"""Stratified, seeded samples of class-sorted splits: every class is read, in proportion."""

from collections import Counter

import pytest

from rewriter.lab.sampling import SamplingError, holdout, stratified_indices


def sorted_labels(counts):
    """A class-sorted split, as image folders and CIFAR's files are: all of class 0, then class 1, ..."""
    return [cls for cls, n in enumerate(counts) for _ in range(n)]


def test_a_sample_of_a_class_sorted_split_reads_every_class_in_proportion():
    labels = sorted_labels([100] * 10)
    picked = stratified_indices(labels, 50, seed=3)
    assert Counter(labels[i] for i in picked) == {cls: 5 for cls in range(10)}
    assert len(set(picked)) == 50


def test_the_first_items_of_a_sample_mix_the_classes():
    labels = sorted_labels([100] * 10)
    first = [labels[i] for i in stratified_indices(labels, 500, seed=0)[:64]]
    assert len(set(first)) >= 8  # 64 draws from 10 equal classes: fewer than 8 has probability < 1e-6


def test_rounding_follows_the_largest_remainders():
    # shares 0.5, 0.3, 0.2 of 7 items: 3.5, 2.1, 1.4 -> floors 3, 2, 1 and the one left goes to 3.5's class
    labels = sorted_labels([50, 30, 20])
    assert Counter(labels[i] for i in stratified_indices(labels, 7, seed=1)) == {0: 4, 1: 2, 2: 1}


def test_the_same_seed_draws_the_same_sample_and_another_seed_another():
    labels = sorted_labels([40, 40])
    assert stratified_indices(labels, 10, seed=5) == stratified_indices(labels, 10, seed=5)
    assert sorted(stratified_indices(labels, 10, seed=5)) != sorted(stratified_indices(labels, 10, seed=6))


def test_holdout_keeps_the_rest_and_never_overlaps():
    labels = sorted_labels([30, 20, 10])
    kept, held = holdout(labels, 6, seed=0)
    assert Counter(labels[i] for i in held) == {0: 3, 1: 2, 2: 1}
    assert sorted(kept + held) == list(range(60))


@pytest.mark.parametrize("count", [0, 61])
def test_a_sample_larger_than_the_split_or_empty_is_refused(count):
    with pytest.raises(SamplingError, match="from a split of 60"):
        stratified_indices(sorted_labels([30, 30]), count)
