"""Plots: receptive field per layer against the input size, border layers marked (like paper 000 Fig. 4)."""

from __future__ import annotations

import math
import os

from .analysis import Analysis
from .io import atomic_path

_COLORS = {True: "#2a9d8f", False: "#e63946", None: "#9e9e9e"}


def plot_receptive_fields(analysis: Analysis, path: str | os.PathLike) -> None:
    """Write a PNG: r_min and r_max of each listed layer (log scale), the input size, b_min and b_max.

    The plotted receptive field is the one the border rule tests: the layer's input for ``"input"``,
    its output for ``"output"``. Unbounded values (after global ops) are drawn at the top as triangles.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = analysis.layers
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
            ax.scatter([xi], [value], color=_COLORS[layer.productive], marker=marker, s=22, zorder=3)
        ax.axhline(
            analysis.limit[axis],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"input {'x'.join(map(str, analysis.limit))}" if axis == 0 else None,
        )
    names = [layer.name for layer in layers]
    for border, label, color in (
        (analysis.border_layer_min, "$b_{min}$", "#e63946"),
        (analysis.border_layer_max, "$b_{max}$", "#f4a261"),
    ):
        if border is not None:
            ax.axvline(names.index(border) + 1, color=color, linewidth=2, alpha=0.8, label=label)
    ax.scatter([], [], color=_COLORS[True], label="productive")
    ax.scatter([], [], color=_COLORS[False], label="unproductive")
    ax.scatter([], [], color=_COLORS[None], label="not tested (global, head, 1x1)")
    ax.set_yscale("log")
    ax.set_ylim(0.8, top * 1.5)
    ax.set_xlabel("layer (execution order)")
    tested = "input" if analysis.border_rule == "input" else "output"
    ax.set_ylabel(f"receptive field of the layer's {tested} [px]")
    ax.set_title(f"{analysis.model} at {analysis.input_size[0]}x{analysis.input_size[1]}")
    if len(layers) <= 60:
        ax.set_xticks(x, names, rotation=90, fontsize=6)
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)


def _square(fields: list) -> bool:
    return all(f[0] == f[1] for f in fields)
