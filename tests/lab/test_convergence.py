"""Convergence marks: each mark from a hand-made curve at its threshold, a model that cannot learn and a
loss that diverges, and no verdict against such a baseline."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from rewriter.lab.convergence import ConvergenceRule, chance_level, judge
from rewriter.lab.data import load_data
from rewriter.lab.study import Study, StudySetup, parse_variant, run_study
from rewriter.lab.training import TrainConfig, train

from ..nets import tiny_cnn


def curve(*points: tuple[float, float]) -> list[SimpleNamespace]:
    return [SimpleNamespace(loss=loss, test_accuracy=accuracy) for loss, accuracy in points]


def test_the_chance_level_is_the_share_of_the_most_frequent_class():
    assert chance_level([0, 1, 1, 2]) == 0.5
    assert chance_level(list(range(10)) * 3) == pytest.approx(0.1)


def test_each_mark_at_its_threshold():
    # 10 balanced classes: chance 0.1, not converged at or below 0.1 + 0.1 * 0.9 = 0.19
    flat = [(2.0, 0.5), (1.0, 0.9), (0.8, 0.9), (0.7, 0.9)]
    assert judge(curve(*flat), 0.1) == "converged"
    assert judge(curve((2.3, 0.15), (2.2, 0.19)), 0.1) == "not converged"
    assert judge(curve((2.3, 0.191), (2.2, 0.191), (2.1, 0.191), (2.0, 0.191)), 0.1) == "converged"
    assert judge(curve((2.0, 0.9), (math.nan, 0.1)), 0.1) == "diverged"
    assert judge(curve((2.0, 0.5), (2.5, 0.6), (2.1, 0.6)), 0.1) == "diverged"  # ends above its first loss
    # the last 2 epochs (a fifth of 10, at least 2) rose 2.2 pp: 1.1 pp per epoch, above 1 pp
    rising = [(1.0, 0.5)] * 7 + [(0.9, 0.800), (0.8, 0.811), (0.7, 0.822)]
    assert judge(curve(*rising), 0.1) == "still improving"
    assert judge(curve(*rising[:-1], (0.7, 0.819)), 0.1) == "converged"  # 0.95 pp per epoch
    # one epoch that learned anything is still improving: the untrained model scored chance before it
    assert judge(curve((1.0, 0.9)), 0.1) == "still improving"
    assert judge(curve((1.0, 0.9)), 0.1, ConvergenceRule(rise=1.0)) == "converged"


@pytest.fixture(scope="module")
def data():
    return load_data("synthetic:256", 32)


def test_a_loss_that_diverges_ends_the_run_and_is_marked(data):
    result = train(tiny_cnn(), data, TrainConfig(epochs=3, lr=1e30, on_divergence="stop"), progress=False)
    assert len(result.history) == 1 and result.history[0].diverged and math.isnan(result.history[0].loss)
    assert judge(result.history, 0.1) == "diverged"


def test_a_model_that_cannot_learn_gets_no_verdict(tmp_path):
    setup = StudySetup(
        data="synthetic:128", input_size=(32, 32), epochs=2, lr=0.05, batch_size=32, latency_repeats=1
    )
    study = Study(["tests.nets:cannot_learn"], [parse_variant("baseline"), parse_variant("truncate")], [0], setup,
                  tmp_path)  # fmt: skip
    rows = {r.recipe: r for r in run_study(study, progress=False)}
    assert rows["baseline"].convergence == "not converged"
    assert rows["baseline"].test_accuracy <= rows["baseline"].chance
    summary = (tmp_path / "summary.md").read_text()
    assert (
        "- tests.nets:cannot_learn: no verdict: its baseline is not converged in 1 of 1 seeds (1 not converged)"
        in summary
    )
    assert "cannot_learn truncate:" not in summary
