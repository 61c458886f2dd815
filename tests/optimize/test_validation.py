"""``--validate``: the baseline and the best candidates trained as one study, the trained choice judged."""

from __future__ import annotations

import pytest

import rewriter
from rewriter.optimize import validate

pytestmark = pytest.mark.slow  # trains two small models for two batches each, twice (the second resumes)


def test_validation_trains_the_baseline_and_the_best_candidate_and_resumes(tmp_path):
    result = rewriter.optimize(
        "cifar_vgg11",
        input_size=32,
        exclude=["remove-stem-downsampling", "reposition-downsampling"],
        dry_run=True,
    )
    options = dict(
        data="digits:200", k=1, epochs=1, max_batches=2, out=tmp_path / "v", progress=False, latency_repeats=2
    )
    validation = validate(result, "cifar_vgg11", **options)
    best = next(c for c in result.choice.ranked if c.steps)
    # labelled by the candidate's strategies (summary.md and the plot give their parameters), not "rank1"
    assert validation.labels == {"baseline": 0, "+".join(s.strategy for s in best.steps): best.index}
    assert best.label in (tmp_path / "v" / "summary.md").read_text()
    assert all(0 <= a <= 1 for a in validation.accuracy.values())
    assert validation.trained_choice in (0, best.index)
    assert validation.agrees == (validation.trained_choice == result.chosen.index)
    assert ("agrees with" in validation.summary) == validation.agrees
    assert (tmp_path / "v" / "summary.md").is_file() and len(
        list((tmp_path / "v" / "cells").glob("*.json"))
    ) == 2
    again = validate(
        result, "cifar_vgg11", **options
    )  # every cell is in the folder: nothing is trained again
    assert again.accuracy == validation.accuracy
