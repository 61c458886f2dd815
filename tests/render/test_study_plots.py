"""The study's plots: the training curves (a panel per model x recipe, a line per seed) and the Pareto plot
(recipes spelled out, models told apart from recipes, variants that did not converge kept off the fronts)."""

from __future__ import annotations

import math

import pytest

from rewriter.lab.study import CellRow, EpochPoint, StudySetup, summary_markdown
from rewriter.render import curves, plots

NAN = math.nan


@pytest.fixture
def captured(monkeypatch):
    """The figures the plot functions would save, instead of PNGs."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    monkeypatch.setattr(curves, "_save", lambda fig, path: figures.append(fig))
    return figures


def cell(model: str, recipe: str, seed: int, *, converged: bool = True) -> CellRow:
    """Four epochs (recorded as 0 .. 3, drawn as 1 .. 4); the loss 2 / epoch drawn; the test accuracy scored
    after the 2nd and 4th only (NaN elsewhere), 0.5 and 0.8 + seed/100."""
    scored = {1: 0.5 + seed / 100, 3: 0.8 + seed / 100}
    curve = tuple(EpochPoint(e, 2.0 / (e + 1), 0.2, 1.0, scored.get(e, NAN), 0.1) for e in range(4))
    return CellRow(model=model, recipe=recipe, seed=seed, status="ok", test_accuracy=scored[3], chance=0.1,
                   convergence="converged" if converged else "still improving", curve=curve)  # fmt: skip


def panels(fig) -> dict[str, object]:
    """The main axes of each panel by the first line of its title (the twin axes have no title)."""
    return {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.get_title()}


def test_the_curves_plot_has_a_panel_per_model_and_recipe_and_a_thin_line_per_seed(captured):
    rows = [cell(m, r, s, converged=(m, r) != ("b", "trim")) for m in "ab" for r in ("baseline", "trim")
            for s in (0, 1)]  # fmt: skip
    curves.plot_curves(rows, "unused.png", title="t")
    found = panels(captured[-1])
    assert set(found) == {"a / baseline", "a / trim", "b / baseline", "b / trim"}
    assert found["a / trim"].get_title().endswith("2/2 seeds converged")
    assert found["b / trim"].get_title().endswith("0/2 seeds converged")
    losses = found["a / trim"].get_lines()
    assert len(losses) == 2  # one per seed
    assert list(losses[0].get_ydata()) == [2.0, 1.0, 2.0 / 3, 0.5]  # 2 / epoch
    twin = next(ax for ax in captured[-1].axes if ax is not found["a / trim"] and ax.bbox.bounds ==
                found["a / trim"].bbox.bounds)  # fmt: skip
    accuracy = [line for line in twin.get_lines() if line.get_linestyle() != ":"]
    # the epochs scored only, in percent: seed 0 at 50 and 80, seed 1 at 51 and 81
    assert sorted((list(a.get_xdata()), list(a.get_ydata())) for a in accuracy) == [
        ([2, 4], [50.0, 80.0]), ([2, 4], [51.0, 81.0])
    ]  # fmt: skip
    chance = [line for line in twin.get_lines() if line.get_linestyle() == ":"]
    assert [line.get_ydata()[0] for line in chance] == [10.0]


def test_a_pair_no_cell_was_run_for_gets_no_panel_and_each_column_keeps_its_epoch_axis(captured):
    """A peer model studied with its baseline only (the CIFAR-10 study's pruned resnet18) beside a model with
    two recipes: no empty "b / trim" panel, and "a / trim", now lowest in its column, labels the epochs."""
    rows = [cell("a", r, 0) for r in ("baseline", "trim")] + [cell("b", "baseline", 0)]
    curves.plot_curves(rows, "unused.png", title="t")
    found = panels(captured[-1])
    assert set(found) == {"a / baseline", "a / trim", "b / baseline"}
    assert found["a / trim"].get_xlabel() == "epoch" and found["a / baseline"].get_xlabel() == ""


def group(recipe: str, flops: float, accuracy: float, *, converged: bool = True, model: str = "m") -> dict:
    return {"model": model, "recipe": recipe, "n": 3, "same_as_baseline": False, "flops": flops,
            "accuracy": accuracy, "accuracy_std": 0.01, "pareto": True, "pareto_all": True,
            "converged": converged}  # fmt: skip


def test_the_pareto_plot_draws_no_front_over_a_variant_that_did_not_converge(captured):
    # "fast" is cheaper and more accurate than "trim", but did not converge: the front is baseline and trim
    groups = [
        group("baseline", 100e6, 0.90),
        group("trim", 60e6, 0.88),
        group("fast", 30e6, 0.95, converged=False),
    ]
    plots.plot_pareto(groups, "unused.png", recipes={"trim": "truncate(rule=output)"})
    ax = captured[-1].axes[0]
    front = next(line for line in ax.get_lines() if line.get_label().startswith("Pareto front"))
    assert list(front.get_xdata()) == [60e6, 100e6]
    hollow = [
        line for line in ax.get_lines() if line.get_markerfacecolor() == "white" and len(line.get_xdata())
    ]
    assert [line.get_xdata()[0] for line in hollow] == [30e6]
    labels = [t.get_text() for t in captured[-1].legends[0].get_texts()]
    assert "trim: truncate(rule=output)" in labels and "baseline" in labels
    assert any(label.startswith("hollow: not every seed converged") for label in labels)


def test_a_models_legend_swatch_is_no_recipe_marker(captured):
    plots.plot_pareto([group("baseline", 1e6, 0.9, model="net")], "unused.png")
    swatch = next(line for line in captured[-1].axes[0].get_lines() if line.get_label() == "net")
    assert swatch.get_marker() in ("None", "", None) and swatch.get_linewidth() >= 3


def test_the_summary_spells_out_every_recipe_its_label_does_not():
    text = summary_markdown([], StudySetup(data="digits", input_size=(32, 32)),
                            recipes={"baseline": "baseline", "truncate+stem": "truncate + stem(count=1)"})  # fmt: skip
    assert "- `truncate+stem`: truncate + stem(count=1)" in text
    assert "- `baseline`" not in text
