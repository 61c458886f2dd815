"""Plots: receptive field per layer against the input size, border layers marked (like paper 000 Fig. 4)."""

from __future__ import annotations

import math
import os

from .._files import atomic_path
from ..analysis.analyzer import Analysis, Layer

#: the verdict of a layer, its colour, and its legend entry (``_verdict``)
_VERDICTS = {
    "within": ("#2a9d8f", "within the input: productive"),
    "dip": ("#e9c46a", "exceeds the input before b_min: productive (skip-path zig-zag)"),
    "tail": ("#e63946", "exceeds, in the tail from b_min: unproductive"),
    "untested": ("#9e9e9e", "not tested (global, head, 1x1)"),
}


def _verdict(layer: Layer) -> str:
    if layer.exceeds is None:
        return "untested"
    if layer.in_tail:
        return "tail"
    return "dip" if layer.exceeds else "within"


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    """Write ``fig`` as a PNG atomically and free it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)


def plot_receptive_fields(analysis: Analysis, path: str | os.PathLike) -> None:
    """Write a PNG: r_min and r_max of each listed layer (log scale), the input size, b_min and b_max.

    The plotted receptive field is the one the border rule tests: the layer's input for ``"input"``,
    its output for ``"output"``. Each point is coloured by its verdict: within the input, exceeding it
    before b_min (still productive), in the tail (unproductive), or not tested. Unbounded values (after
    global ops) are drawn at the top as triangles. Layers of attention gates are left out, as in paper 000
    Fig. 10.
    """
    plt = _pyplot()

    layers = [layer for layer in analysis.layers if layer.role != "attention"]
    omitted = len(analysis.layers) - len(layers)
    field_min = [lay.r_in_min if analysis.border_rule == "input" else lay.r_out_min for lay in layers]
    field_max = [lay.r_in_max if analysis.border_rule == "input" else lay.r_out_max for lay in layers]
    finite = [v for pair in field_min + field_max for v in pair if not math.isinf(v)]
    top = max([*finite, *analysis.limit, 1]) * 2
    x = list(range(1, len(layers) + 1))

    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(layers) + 3), 4.5), layout="constrained")
    axes_to_draw = (
        [0] if analysis.limit[0] == analysis.limit[1] and _square(field_min + field_max) else [0, 1]
    )
    for axis in axes_to_draw:
        suffix = "" if len(axes_to_draw) == 1 else (" (height)" if axis == 0 else " (width)")
        r_min = [min(f[axis], top) for f in field_min]
        r_max = [min(f[axis], top) for f in field_max]
        style = "-" if axis == 0 else ":"
        ax.plot(x, r_max, style, color="#457b9d", linewidth=1, label=f"$r_{{max}}${suffix}")
        ax.plot(x, r_min, style, color="#1d3557", linewidth=1.5, label=f"$r_{{min}}${suffix}")
        for xi, value, layer in zip(x, r_min, layers, strict=True):
            marker = "^" if value >= top else "o"
            color = _VERDICTS[_verdict(layer)][0]
            ax.scatter([xi], [value], color=color, marker=marker, s=22, zorder=3)
    _input_lines(ax, analysis.limit, "feature size" if analysis.feature_size else "input")
    names = [layer.name for layer in layers]
    _draw_borders(ax, _border_positions(names, analysis))
    for color, label in _VERDICTS.values():
        ax.scatter([], [], color=color, label=label)
    if any(math.isinf(v) for pair in field_min for v in pair):
        ax.scatter(
            [], [], color="#9e9e9e", marker="^", label="unbounded (after a global op), drawn at the top"
        )
    ax.set_yscale("log")
    ax.set_ylim(0.8, top * 1.5)
    ax.set_xlabel("layer (execution order)")
    tested = "input" if analysis.border_rule == "input" else "output"
    ax.set_ylabel(f"receptive field of the layer's {tested} [px]")
    title = f"{analysis.model} at {analysis.input_size[0]}x{analysis.input_size[1]}"
    if omitted:
        title += f" ({omitted} attention-gate layers not drawn)"
    ax.set_title(title)
    if len(layers) <= 60:
        ax.set_xticks(x, names, rotation=90, fontsize=6)
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    _save(fig, path)


def _square(fields: list) -> bool:
    return all(f[0] == f[1] for f in fields)


def _input_lines(ax, limit: tuple[int, int], what: str) -> None:
    """The size the fields are tested against: one dashed line, or one per axis (each in the legend)."""
    if limit[0] == limit[1]:
        ax.axhline(
            limit[0], color="black", linestyle="--", linewidth=1, label=f"{what} {limit[0]}x{limit[1]}"
        )
        return
    ax.axhline(limit[0], color="black", linestyle="--", linewidth=1, label=f"{what} height {limit[0]}")
    ax.axhline(limit[1], color="black", linestyle="-.", linewidth=1, label=f"{what} width {limit[1]}")


def _draw_borders(ax, positions: list[tuple[float, str, str]]) -> None:
    """b_max as a wide pale line, b_min as a narrow dashed one on top: both visible where they coincide."""
    for position, label, color in sorted(positions, key=lambda p: p[1] != "$b_{max}$"):
        wide = label == "$b_{max}$"
        ax.axvline(position, color=color, linewidth=4 if wide else 1.6, alpha=0.55 if wide else 0.95,
                   linestyle="-" if wide else "--", label=label, zorder=2 if wide else 4)  # fmt: skip


def _border_positions(names: list[str], analysis: Analysis | None) -> list[tuple[float, str, str]]:
    """x positions (1-based, over ``names``) of b_min and b_max: on the layer if it is listed, else just
    before the first listed layer that runs after it."""
    if analysis is None:
        return []
    order = {layer.name: i for i, layer in enumerate(analysis.layers)}
    found = []
    for border, label, color in (
        (analysis.border_layer_min, "$b_{min}$", "#e63946"),
        (analysis.border_layer_max, "$b_{max}$", "#f4a261"),
    ):
        if border is None:
            continue
        if border in names:
            found.append((names.index(border) + 1.0, label, color))
            continue
        after = [i for i, name in enumerate(names) if order.get(name, -1) > order[border]]
        if after:
            found.append((after[0] + 0.5, label, color))
    return found


def _receptive_field_axis(ax, names: list[str], analysis: Analysis) -> None:
    """A second y axis: r_min of each layer's input (log scale) and the input size."""
    twin = ax.twinx()
    fields = [
        analysis.layer(name).r_in_min[0] if name in set(analysis.layer_names()) else math.nan
        for name in names
    ]
    top = max([f for f in fields if not math.isnan(f) and not math.isinf(f)] + [analysis.limit[0], 1]) * 2
    values = [min(f, top) for f in fields]
    twin.plot(
        range(1, len(names) + 1),
        values,
        "-",
        color="#1d3557",
        linewidth=1.2,
        marker=".",
        label="$r_{in,min}$",
    )
    twin.axhline(
        analysis.limit[0], color="black", linestyle="--", linewidth=1, label=f"input {analysis.limit[0]} px"
    )
    twin.set_yscale("log")
    twin.set_ylim(0.8, top * 1.5)
    twin.set_ylabel("receptive field of the layer's input [px]")
    return twin


def _finish(fig, ax, names: list[str], path: str | os.PathLike, handles_from=()) -> None:

    if len(names) <= 60:
        ax.set_xticks(range(1, len(names) + 1), names, rotation=90, fontsize=6)
    handles, labels = ax.get_legend_handles_labels()
    for other in handles_from:
        more = other.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncols=4, frameon=False)
    _save(fig, path)


def plot_saturation(report, analysis: Analysis | None, path: str | os.PathLike, *, title: str = "") -> None:
    """Write a PNG like paper 000 Fig. 2: saturation per layer as bars (tails hatched), s_mu, the receptive
    field of each layer's input against the input size, and the border layers."""
    plt = _pyplot()

    names = [layer.name for layer in report.layers]
    tail_names = {name for tail in report.tails for name in tail}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(names) + 3), 4.5), layout="constrained")
    x = range(1, len(names) + 1)
    listed = set(analysis.layer_names()) if analysis else set()
    verdicts = [_verdict(analysis.layer(n)) if n in listed else "untested" for n in names]
    ax.bar(
        x,
        [100 * layer.saturation for layer in report.layers],
        color=[_VERDICTS[v][0] for v in verdicts],
        hatch=["//" if n in tail_names else "" for n in names],
        edgecolor="white",
        label="saturation",
    )
    ax.axhline(100 * report.mean, color="#264653", linewidth=1, label=f"$s_\\mu$ = {report.mean:.1%}")
    ax.axhspan(20, 30, color="#2a9d8f", alpha=0.08, label="target band 20-30 %")
    _draw_borders(ax, _border_positions(names, analysis))
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"saturation [%] (delta = {report.delta})")
    ax.set_xlabel("conv / linear layer (execution order); hatched: tail")
    ax.set_title(title or "saturation per layer")
    twins = [_receptive_field_axis(ax, names, analysis)] if analysis is not None else []
    _finish(fig, ax, names, path, twins)


def plot_probes(
    probes, saturation, analysis: Analysis | None, path: str | os.PathLike, *, title: str = ""
) -> None:
    """Write a PNG like paper 000 Fig. 4: probe test accuracy per layer, the model's accuracy, saturation
    as bars, and the border layers."""
    plt = _pyplot()

    names = [layer.name for layer in probes.layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(names) + 3), 4.5), layout="constrained")
    x = list(range(1, len(names) + 1))
    if saturation is not None:
        values = {layer.name: layer.saturation for layer in saturation.layers}
        ax.bar(x, [100 * values.get(n, math.nan) for n in names], color="#a8dadc", label="saturation")
    ax.plot(x, [100 * p.test_accuracy for p in probes.layers], "-o", color="#1d3557", markersize=3,
            label="probe test accuracy")  # fmt: skip
    ax.plot(
        x, [100 * p.train_accuracy for p in probes.layers], ":", color="#457b9d", label="probe train accuracy"
    )
    ax.axhline(100 * probes.model_accuracy, color="black", linestyle="--", linewidth=1,
               label=f"model test accuracy {probes.model_accuracy:.1%}")  # fmt: skip
    _draw_borders(ax, _border_positions(names, analysis))
    ax.set_ylim(0, 102)
    ax.set_ylabel("accuracy / saturation [%]")
    ax.set_xlabel("conv / linear layer (execution order)")
    ax.set_title(title or "logistic regression probes")
    _finish(fig, ax, names, path)


_MARKERS = "osD^vP*Xh<>p"


def plot_pareto(
    groups: list[dict], path: str | os.PathLike, *, title: str = "", recipes: dict[str, str] | None = None
) -> None:
    """Write a PNG: test accuracy against FLOPs (log scale), one marker per model x recipe (colour = model,
    shape = recipe), error bars of one standard deviation over seeds, each model's Pareto front (dashed, its
    colour) and the study's (black, black-edged markers). A variant not every seed of which converged is
    drawn hollow and left out of the fronts (no front is drawn over a run that had not finished learning).
    ``recipes`` (label -> steps) spells out each label in the legend."""
    plt = _pyplot()

    points = [g for g in groups if g["n"] and not g["same_as_baseline"]]
    settled = [g for g in points if g.get("converged", True)]
    models = list(dict.fromkeys(g["model"] for g in points))
    recipe_labels = list(dict.fromkeys(g["recipe"] for g in points))
    colors = plt.get_cmap("tab10")
    fronts = [(colors(i % 10), _front([g for g in settled if g["model"] == m]), None)
              for i, m in enumerate(models)]  # fmt: skip
    fronts.append(("black", _front(settled), "Pareto front (all; converged variants)" if settled else None))
    on_front = {id(g) for g in fronts[-1][1]}
    fig, ax = plt.subplots(figsize=(8, 6), layout="constrained")
    for g in points:
        color = colors(models.index(g["model"]) % 10)
        hollow = not g.get("converged", True)
        ax.errorbar(
            g["flops"], 100 * g["accuracy"], yerr=100 * g["accuracy_std"], capsize=3, markersize=8,
            fmt=_MARKERS[recipe_labels.index(g["recipe"]) % len(_MARKERS)], color=color, alpha=0.6 if hollow else 1,
            markerfacecolor="white" if hollow else color, linestyle="none",
            markeredgecolor=color if hollow else "black" if id(g) in on_front else "none",
        )  # fmt: skip
    for color, front, label in fronts:
        front = sorted(front, key=lambda g: g["flops"])
        ax.plot([g["flops"] for g in front], [100 * g["accuracy"] for g in front], "--", color=color,
                linewidth=1 if label else 0.8, alpha=1 if label else 0.6, drawstyle="steps-post",
                label=label)  # fmt: skip
    _pareto_legend(ax, models, recipe_labels, recipes or {}, colors, hollow=len(settled) < len(points))
    _flops_axis(ax, [g["flops"] for g in points])
    ax.set_xlabel("FLOPs per image (fvcore, multiply-adds)")
    ax.set_ylabel("test accuracy [%]")
    ax.set_title(title or "accuracy against cost")
    ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncols=2, frameon=False)
    _save(fig, path)


def _front(points: list[dict]) -> list[dict]:
    """The points no other one dominates (as cheap or cheaper and as accurate or more, better in one):
    the rule of ``rewriter.lab.study.summary``, applied to the points drawn."""

    def dominates(a: dict, b: dict, tol: float = 1e-9) -> bool:
        as_good = a["flops"] <= b["flops"] and a["accuracy"] >= b["accuracy"] - tol
        return as_good and (a["flops"] < b["flops"] or a["accuracy"] > b["accuracy"] + tol)

    return [g for g in points if not any(dominates(o, g) for o in points if o is not g)]


def _pareto_legend(ax, models, labels, recipes: dict[str, str], colors, *, hollow: bool) -> None:
    """Legend entries: a model as a coloured line (a square would read as a recipe's marker), a recipe as
    its grey marker with its steps where the label does not spell them, and the hollow marker if used."""
    import textwrap

    for i, model in enumerate(models):
        ax.plot([], [], "-", linewidth=4, color=colors(i % 10), label=model)
    for i, label in enumerate(labels):
        steps = recipes.get(label, label)
        text = label if steps == label else f"{label}: " + "\n  ".join(textwrap.wrap(steps, 48))
        ax.plot([], [], _MARKERS[i % len(_MARKERS)], color="gray", label=text)
    if hollow:
        ax.plot([], [], "o", color="gray", markerfacecolor="white", label="hollow: not every seed converged\n"
                "(no verdict; left out of the fronts)")  # fmt: skip


def _flops_axis(ax, values: list[float]) -> None:
    """A log axis labelled at 1, 2 and 5 of each decade with SI prefixes: no minor labels to overlap; over
    less than a factor of 3 (where that would leave one label or none), evenly spaced labels instead."""
    from matplotlib import ticker

    ax.set_xscale("log")
    narrow = bool(values) and min(values) > 0 and max(values) / min(values) < 3
    ax.xaxis.set_major_locator(
        ticker.MaxNLocator(nbins=5) if narrow else ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0))
    )
    ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=" "))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def plot_relevance(relevance, analysis: Analysis | None, path: str | os.PathLike, *, title: str = "") -> None:
    """Write a PNG: per label unit, the images it is relevant to and the images labelled with it (bars),
    removal candidates in red, and the unit where the receptive-field border b_min lies."""
    plt = _pyplot()

    names = [u.name for u in relevance.units]
    candidates = set(relevance.candidates())
    x = list(range(len(names)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 3), 4.5), layout="constrained")
    ax.bar([i - 0.2 for i in x], [int(r.sum()) for r in relevance.relevant], width=0.4, color="#a8dadc",
           label=f"relevant to (among the {relevance.top} strongest of a map)")  # fmt: skip
    ax.bar([i + 0.2 for i in x], relevance.counts, width=0.4,
           color=["#e63946" if n in candidates else "#1d3557" for n in names],
           label="labelled with (deepest relevant unit); red: removal candidate")  # fmt: skip
    if analysis is not None and analysis.border_layer_min is not None and analysis.graph is not None:
        border = analysis.graph[analysis.border_layer_min].index
        after = [i for i, u in enumerate(relevance.units) if u.first >= border]
        position = after[0] - 0.5 if after else len(names) - 0.5
        ax.axvline(position, color="#e63946", linewidth=2, alpha=0.7, label="$b_{min}$ (receptive field)")
    ax.set_xticks(x, [f"{i}: {n}" for i, n in enumerate(names)], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("images")
    ax.set_xlabel("label unit (execution order)")
    ax.set_title(title or "per-image relevance")
    fig.legend(fontsize=7, loc="outside lower center", ncols=1, frameon=False)
    _save(fig, path)
