"""The training curves of a study: one panel per model x recipe, each seed a thin line, train loss (left
axis, log scale) and test accuracy (right axis) per epoch, the chance level, and each panel's convergence."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from ..lab.study.record import CellRow
from .plots import _pyplot, _save

_LOSS, _ACCURACY, _EXTENDED = "#1d3557", "#e76f51", "#6a4c93"


def plot_curves(rows: Sequence[CellRow], path: str | os.PathLike, *, title: str = "") -> None:
    """Write a PNG: a grid of panels (a row per model, a column per recipe), in each the train loss and the
    test accuracy of every seed per epoch. Epochs whose test accuracy was not scored (NaN) are skipped: the
    accuracy line joins the epochs that were. A panel's title counts its converged seeds."""
    plt = _pyplot()

    drawn = [r for r in rows if r.curve]
    models = list(dict.fromkeys((r.model, r.source) for r in drawn))
    recipes = list(dict.fromkeys(r.recipe for r in drawn))
    shown = {model for model, _ in models}
    names = {m: m[0] if len(shown) == len(models) else f"{m[0]} [{m[1]}]" for m in models}
    fig, axes = plt.subplots(len(models) or 1, len(recipes) or 1, squeeze=False, sharex=True, sharey=True,
                             figsize=(1.2 + 3.0 * max(1, len(recipes)), 0.9 + 2.4 * max(1, len(models))),
                             layout="constrained")  # fmt: skip
    twins = [[ax.twinx() for ax in line] for line in axes]
    in_grid = {(r.model, r.source, r.recipe) for r in rows}
    for i, j in ((i, j) for i in range(len(axes)) for j in range(len(axes[0]))):
        if models and recipes and (*models[i], recipes[j]) not in in_grid:  # a pair no cell was run for
            axes[i][j].set_visible(False)
            twins[i][j].set_visible(False)
            continue
        cells = [r for r in drawn if models and (r.model, r.source) == models[i] and r.recipe == recipes[j]]
        _panel(
            axes[i][j], twins[i][j], cells, names[models[i]] if models else "", recipes[j] if recipes else ""
        )
        twins[i][j].set_ylim(0, 100)
        if j < len(recipes) - 1:
            twins[i][j].tick_params(labelright=False)
    for line, twin_line in zip(axes, twins, strict=True):
        line[0].set_ylabel("train loss", color=_LOSS)
        twin_line[-1].set_ylabel("test accuracy [%]", color=_ACCURACY)
    for j in range(len(axes[0])):  # the lowest panel drawn in each column gets the epoch axis
        lowest = next((line[j] for line in reversed(axes) if line[j].get_visible()), axes[-1][j])
        lowest.set_xlabel("epoch")
        lowest.tick_params(labelbottom=True)
    handles = [
        plt.Line2D([], [], color=_LOSS, linewidth=1, label="train loss (left, log scale), one line per seed"),
        plt.Line2D([], [], color=_ACCURACY, linewidth=1, marker=".", label="test accuracy (right) where scored"),
        plt.Line2D([], [], color="gray", linestyle=":", linewidth=1, label="chance"),
    ]  # fmt: skip
    if any(r.extensions for r in drawn):
        handles.append(plt.Line2D([], [], color=_EXTENDED, linestyle="--", linewidth=1,
                                  label="continued from its checkpoint (--extend)"))  # fmt: skip
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=3, frameon=False)
    fig.suptitle(title or "training curves", fontsize=10)
    _save(fig, path)


def _panel(ax, twin, cells: Sequence[CellRow], model: str, recipe: str) -> None:
    """One model x recipe: every seed's loss and accuracy, the chance level, the convergence count."""
    for row in cells:
        epochs = [
            p.epoch + 1 for p in row.curve
        ]  # recorded from 0; drawn as the epochs done, as train prints
        losses = [p.loss if math.isfinite(p.loss) and p.loss > 0 else math.nan for p in row.curve]
        ax.plot(epochs, losses, color=_LOSS, linewidth=0.8, alpha=0.8)
        scored = [(p.epoch + 1, 100 * p.test_accuracy) for p in row.curve if math.isfinite(p.test_accuracy)]
        if scored:
            twin.plot(*zip(*scored, strict=True), color=_ACCURACY, linewidth=0.8, alpha=0.8, marker=".",
                      markersize=3)  # fmt: skip
    chances = [r.chance for r in cells if r.chance is not None]
    if chances:
        twin.axhline(100 * chances[0], color="gray", linestyle=":", linewidth=1)
    for reached in sorted({e.from_epochs for r in cells for e in r.extensions}):  # study --extend
        ax.axvline(reached + 0.5, color=_EXTENDED, linestyle="--", linewidth=1)
    if any(p.loss > 0 and math.isfinite(p.loss) for r in cells for p in r.curve):
        _loss_axis(ax)
    ax.xaxis.get_major_locator().set_params(integer=True)
    converged = sum(r.convergence == "converged" for r in cells)
    marks = f"{converged}/{len(cells)} seeds converged" if cells else "no curve"
    ax.set_title(f"{model} / {recipe}\n{marks}", fontsize=8,
                 color="black" if cells and converged == len(cells) else "#c1121f")  # fmt: skip
    ax.tick_params(labelsize=7)
    twin.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _loss_axis(ax) -> None:
    """A log axis labelled at 1, 2 and 5 of each decade as plain numbers (0.05, 0.1, 0.2, ... 2)."""
    from matplotlib import ticker

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
