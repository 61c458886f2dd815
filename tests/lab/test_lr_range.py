"""The learning-rate range test: the same rate twice under one seed, a rate within a factor of 3 of the one
a grid search finds on logistic regression with separable classes, and ``lr auto`` in a study."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rewriter.lab.data import DataSource, load_data
from rewriter.lab.lr_range import RangeTest, find_lr
from rewriter.lab.study import Study, StudySetup, parse_variant, run_study
from rewriter.lab.training import TrainConfig, TrainError, evaluate_loss, train

from ..nets import tiny_cnn


def separable() -> DataSource:
    """1024 points in 20 dimensions around 4 random centres (seed 0): linearly separable (checked below)."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 20, generator=generator)
    y = torch.randint(0, 4, (1024,), generator=generator)
    x = centres[y] + torch.randn(1024, 20, generator=generator)
    points = TensorDataset(x, y)
    return DataSource("points", points, points, 4, points, in_channels=1)


def logistic() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(20, 4)


def test_the_points_are_linearly_separable():
    points = separable().train
    model = logistic()
    x, y = points.tensors
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=2000, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-12, tolerance_change=1e-14)  # fmt: skip

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    assert bool((model(x).argmax(1) == y).all())


def test_the_rate_is_within_a_factor_of_3_of_a_grid_search_on_logistic_regression():
    data = separable()
    config = TrainConfig(epochs=2, batch_size=32, momentum=0.9, gamma=1.0)
    found = find_lr(logistic(), data, config).lr
    # the oracle: every rate on a grid of quarter decades, trained 2 epochs at that constant rate; the best
    # is the one with the lowest loss on all points afterwards
    losses = {}
    for exponent in range(-16, 5):
        rate, model = 10 ** (exponent / 4), logistic()
        train(model, data, TrainConfig(**{**config.__dict__, "lr": rate}), progress=False)
        losses[rate] = evaluate_loss(model, DataLoader(data.train, batch_size=1024), torch.device("cpu"))[0]
    best = min(losses, key=lambda rate: losses[rate] if math.isfinite(losses[rate]) else math.inf)
    assert best / 3 <= found <= best * 3, (found, best)


def test_the_same_seed_gives_the_same_rate_and_the_model_is_left_alone():
    data = load_data("synthetic:128", 32)
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(batch_size=32, seed=3)
    test = RangeTest(steps=60)
    first, second = find_lr(model, data, config, test=test), find_lr(model, data, config, test=test)
    assert first == second and 1e-6 < first.lr < 10
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_model_whose_loss_never_falls_is_refused():
    data = separable()
    model = logistic()  # no weights to learn with: every point scores log(4) until the bias moves
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    model.weight.requires_grad_(False)
    with pytest.raises(TrainError, match="found no rate"):
        find_lr(model, data, TrainConfig(batch_size=32), test=RangeTest(high=1e-5, low=1e-7))


def test_lr_auto_is_recorded_in_the_study_and_shared_by_every_cell(tmp_path, monkeypatch):
    setup = StudySetup(data="synthetic:64", input_size=(32, 32), epochs=1, lr="auto", batch_size=16,
                       max_batches=1, latency_repeats=1)  # fmt: skip
    variants = [parse_variant("baseline"), parse_variant("truncate")]
    rows = run_study(Study(["tests.nets:tiny_cnn"], variants, [0], setup, tmp_path), progress=False)
    recorded = json.loads((tmp_path / "study.json").read_text())
    rate = recorded["lr_auto"]["lr"]
    assert recorded["setup"]["lr"] == "auto" and {r.lr for r in rows} == {rate}
    assert f"lr {rate:.3g} (found by a range test on the baselines)" in (tmp_path / "summary.md").read_text()

    def again(*args, **kwargs):
        raise AssertionError("a resumed study ran the range test again")

    monkeypatch.setattr("rewriter.lab.study.runner.find_study_lr", again)
    more = run_study(Study(["tests.nets:tiny_cnn"], variants, [0, 1], setup, tmp_path), progress=False)
    assert {r.lr for r in more} == {rate}
