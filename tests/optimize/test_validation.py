"""``--validate``: the baseline and the best candidates trained to the end, the trained choice made on a
validation split held out from the training data, the test split read after it."""

from __future__ import annotations

import pytest

import rewriter
from rewriter.lab.model_request import ModelRequest
from rewriter.optimize import validate

pytestmark = pytest.mark.slow  # trains two small models for two batches each, then resumes (nothing trained)


def test_validation_trains_the_baseline_and_the_best_candidate_chooses_on_validation_and_resumes(tmp_path):
    result = rewriter.optimize_model(
        "cifar_vgg11",
        input_size=32,
        exclude=["remove-stem-downsampling", "reposition-downsampling"],
        dry_run=True,
    )
    options = dict(data="digits:200", k=1, epochs=1, max_batches=2, out=tmp_path / "v")
    validation = validate(result, ModelRequest("cifar_vgg11"), **options)
    best = next(c for c in result.choice.ranked if c.steps)
    assert validation.labels == {"c0": 0, f"c{best.index}": best.index}
    assert all(0 <= a <= 1 for a in validation.accuracy.values())
    assert all(0 <= a <= 1 for a in validation.test_accuracy.values())
    assert validation.trained_choice in (0, best.index)
    chosen = f"c{validation.trained_choice}"
    assert validation.accuracy[chosen] == max(validation.accuracy.values())  # chosen on validation, not test
    assert validation.agrees == (validation.trained_choice == result.chosen.index)
    assert ("agrees with" in validation.summary) == validation.agrees
    split = validation.to_json()["validation_split"]
    assert split["count"] == 20 and split["seed"] == 0  # 10% of the 200 training digits
    assert validation.search.epochs_spent == 2
    assert sorted(p.name for p in (tmp_path / "v" / "finalists").iterdir()) == sorted(
        f"{key}.pt" for key in validation.labels
    )
    again = validate(result, "cifar_vgg11", **options)  # every checkpoint is there: nothing is trained again
    assert again.accuracy == validation.accuracy and again.search.epochs_spent == 0
