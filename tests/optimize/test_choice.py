"""The choice's order (issue 20): cost first by default, never above the baseline's cost; fit first on request;
budgets as ratios of the baseline. Hand-made candidates, whose best is read off by eye, and real models whose
baseline FLOPs come from fvcore."""

from __future__ import annotations

import math
import warnings
from importlib.util import find_spec

import pytest
import torch

import rewriter
from rewriter.engine.recipe import Step
from rewriter.optimize import Budget, Candidate, Figures, OptimizeError, Ratio, choose, parse_limit, rank_key


def candidate(index: int, unproductive: int, flops: int, fit: float, params: int = 1000) -> Candidate:
    figures = Figures(params, flops, unproductive, None, 0, "conv", (fit * 32, fit * 32), fit)
    steps = tuple(Step("truncate", {"keep_blocks": i}) for i in range(index))
    return Candidate(index, steps, "ok", figures)


# the baseline: 1 unproductive layer, 100 FLOPs; 1: 0 layers, 150 FLOPs, exact fit; 2: 0 layers, 80 FLOPs,
# fit 0.7; 3: 0 layers, 60 FLOPs, fit 0.5; 4: 2 unproductive layers, 10 FLOPs.
POOL = [candidate(0, 1, 100, 2.0), candidate(1, 0, 150, 1.0), candidate(2, 0, 80, 0.7),
        candidate(3, 0, 60, 0.5), candidate(4, 2, 10, 1.0)]  # fmt: skip


def test_cost_first_takes_the_cheapest_without_unproductive_layers():
    choice = choose(POOL, objective="flops", budget=Budget())
    assert choice.chosen.index == 3 and choice.prefer == "cost"
    assert (
        "at the same unproductive layers it is the cheapest in flops: 60 FLOPs against 80 FLOPs"
        in choice.reason
    )
    assert [c.index for c in choice.ranked] == [3, 2, 0, 4]  # 1 costs more than the baseline: never chosen


def test_fit_first_takes_the_closest_fit_at_any_cost():
    choice = choose(POOL, objective="flops", budget=Budget(), prefer="fit")
    assert choice.chosen.index == 1 and [c.index for c in choice.ranked] == [1, 2, 3, 0, 4]
    assert "closer to the input" in choice.reason


def test_a_budget_binds_both_orders():
    assert choose(POOL, objective="flops", budget=Budget(max_flops=70)).chosen.index == 3
    assert choose(POOL, objective="flops", budget=Budget(max_flops=90), prefer="fit").chosen.index == 2


def test_the_rank_key_is_the_documented_order():
    """The module docstring's list, term by term: a candidate better in an earlier term wins though it is
    worse in every later one."""
    fewer_layers, cheaper, closer = (
        candidate(1, 0, 99, 0.1),
        candidate(2, 1, 10, 0.1),
        candidate(3, 1, 50, 1.0),
    )
    assert rank_key(fewer_layers, "flops") < rank_key(cheaper, "flops") < rank_key(closer, "flops")
    assert rank_key(closer, "flops", "fit") < rank_key(cheaper, "flops", "fit")


def test_nothing_affordable_is_over_budget_with_the_reason():
    pool = [candidate(0, 1, 100, 2.0, params=10), candidate(1, 0, 150, 1.0, params=5)]
    choice = choose(pool, objective="flops", budget=Budget(max_params=6))
    assert choice.status == "over-budget" and "no more than the baseline's flops" in choice.reason
    assert choose(pool, objective="flops", budget=Budget(max_params=6), prefer="fit").chosen.index == 1


@pytest.mark.parametrize(
    ("text", "value"),
    [("1.5G", 1.5e9), ("300M", 3e8), ("2e6", 2e6), ("0.5x", Ratio(0.5)), ("2X", Ratio(2.0))],
)
def test_limits_parse(text, value):
    assert parse_limit(text) == value


@pytest.mark.parametrize("text", ["0x", "-1", "lots", "2000x", "x", math.inf, 0, True])
def test_bad_limits_are_refused(text):
    with pytest.raises(OptimizeError, match="max_flops: expected"):
        parse_limit(text, "max_flops")


def test_a_ratio_is_of_the_baseline():
    budget = Budget.of(POOL[0].figures, max_flops="0.5x", max_params=2000)
    assert (budget.max_flops, budget.max_params) == (50, 2000)
    assert "max flops 50 FLOPs (0.5x the baseline)" in budget.text()
    assert choose(POOL, objective="flops", budget=budget).chosen.index == 4  # the only one at 50 or less


def fvcore_flops(model: torch.nn.Module, size: int) -> int:
    with warnings.catch_warnings():  # fvcore uses torch.jit, which torch now calls deprecated
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

        counter = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, size, size))
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(counter.total())


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("resnet18", 32),
        ("resnet18", 64),
        pytest.param(
            "timm:efficientnet_b0",
            64,
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(find_spec("timm") is None, reason="needs rewriter[timm]"),
            ],
        ),
    ],
)
def test_the_default_choice_is_no_more_expensive_than_the_baseline(name, size):
    """Objective FLOPs, no budget: the chosen candidate's FLOPs are at most the baseline's, counted by fvcore
    on the baseline itself."""
    model, _ = rewriter.load_model(name)
    result = rewriter.optimize_model(model, input_size=size, name=name, dry_run=True)
    assert result.choice.status == "chosen" and result.chosen.figures.unproductive == 0
    assert result.chosen.figures.flops <= fvcore_flops(model, size)


@pytest.fixture(scope="module")
def fit_first_64():
    return rewriter.optimize_model("resnet18", input_size=64, prefer="fit", dry_run=True)


def test_prefer_fit_reproduces_the_old_choice_at_64_px(fit_first_64):
    """resnet18 at 64 px, fit first: what the optimizer chose before issue 20 (230.87 M FLOPs, +55 %)."""
    result = fit_first_64
    assert result.chosen.label == (
        "reposition-downsampling(site=3, move=1) + truncate(rule=input, keep_blocks=0)"
    )
    assert round(result.chosen.figures.flops / 1e4) == 23087
    assert result.choices["cost"].chosen.figures.flops < result.baseline.figures.flops


def test_the_front_plot_marks_both_choices_with_integer_ticks_and_a_legend_off_the_points(
    fit_first_64, monkeypatch, tmp_path
):
    """Issue 24: the unproductive layers are counts (integer ticks only), and the legend covers no point
    (it sits outside the axes); both choices are in it."""
    from rewriter.render import fronts

    figures = []
    monkeypatch.setattr(fronts, "_save", lambda fig, path: figures.append(fig))
    fronts.plot_front(fit_first_64, tmp_path / "front.png")
    (fig,) = figures
    fig.canvas.draw()
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks)
    legend = fig.legends[0].get_window_extent()
    assert not legend.overlaps(ax.get_window_extent())
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(text.startswith("cost first: truncate(") for text in labels)
    assert any(text.startswith("fit first (chosen): reposition-downsampling(site=3") for text in labels)


def test_a_front_with_no_unproductive_layer_has_the_one_tick_0(monkeypatch, tmp_path):
    """tests.nets:Plain at 32 px: every candidate has 0 unproductive layers; the axis shows 0 alone, not a
    range of fractions around it."""
    from rewriter.render import fronts

    figures = []
    monkeypatch.setattr(fronts, "_save", lambda fig, path: figures.append(fig))
    fronts.plot_front(
        rewriter.optimize_model("tests.nets:Plain", input_size=32, dry_run=True), tmp_path / "f.png"
    )
    ax = figures[0].axes[0]
    low, high = ax.get_ylim()
    assert [t for t in ax.get_yticks() if low <= t <= high] == [0]
