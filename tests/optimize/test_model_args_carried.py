"""Every path that rebuilds a model carries its model arguments (issue 23, item 3): a study cell and
``optimize --validate`` train the model that was searched (mobilenet_v2 at width 0.5), not the default one.

The oracle is torchvision's own ``mobilenet_v2(width_mult=0.5, num_classes=N)``, built directly here."""

from __future__ import annotations

import pytest
import torchvision

import rewriter
from rewriter.lab.study import Study, StudySetup, build_variant, parse_variant
from rewriter.optimize import validate

SETUP = StudySetup(data="synthetic:64", input_size=(32, 32), epochs=1, lr=0.01, batch_size=32, max_batches=1,
                   latency_repeats=1)  # fmt: skip


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def oracle(classes: int) -> int:
    return params(torchvision.models.mobilenet_v2(width_mult=0.5, num_classes=classes))


def test_a_study_cell_builds_its_model_with_the_model_arguments(tmp_path):
    study = Study(
        ["mobilenet_v2"], [parse_variant("baseline")], [0], SETUP, tmp_path, model_args={"width_mult": 0.5}
    )
    model, data, _ = build_variant(study.cells[0], SETUP)
    assert params(model) == oracle(data.num_classes) < 0.8e6  # the default width has 2.24 M
    default = Study(["mobilenet_v2"], [parse_variant("baseline")], [0], SETUP, tmp_path)
    assert default.cells[0].source != study.cells[0].source  # another model: never another's results


@pytest.mark.slow
def test_validation_trains_the_model_that_was_searched(tmp_path):
    model, _ = rewriter.load_model("mobilenet_v2", model_args={"width_mult": 0.5})
    result = rewriter.optimize_model(model, input_size=32, dry_run=True, objective="params")
    validation = validate(result, "mobilenet_v2", model_args={"width_mult": 0.5}, data="synthetic:64", k=1,
                          epochs=1, max_batches=1, out=tmp_path / "v")  # fmt: skip
    baseline = next(e for e in validation.search.entries if not e.candidate.steps)
    assert baseline.finalist  # trained to the end, and written with its weights
    trained = rewriter.load(str(tmp_path / "v" / "finalists" / f"{baseline.key}.pt"))
    assert params(trained) == oracle(10)
