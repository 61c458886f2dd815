"""The optimizer's and the sweep's tables and plots: the Pareto front of candidates, and cost per resolution."""

from __future__ import annotations

import itertools
import math
import os

from .._text import human, render_table
from ..optimize import OptimizeResult, Sweep
from ..optimize.choice import cost, cost_text
from ..optimize.search import Candidate
from .plots import _pyplot, _save


def _fit(candidate: Candidate) -> str:
    f = candidate.figures
    if f is None or f.fit is None or f.final_r_min is None:
        return "-"
    return f"{f.final_r_min[0]:g}/{f.fit:.0%}"


def _row(candidate: Candidate, result: OptimizeResult, marks: str) -> list[str]:
    f = candidate.figures
    assert f is not None
    budget = "yes" if result.budget.meets(f) else "no"
    latency = "-" if f.latency_ms is None else f"{f.latency_ms:.2f}"
    return [
        marks, str(candidate.index), candidate.label, human(f.params), human(f.flops), latency, str(f.unproductive),
        f.border_layer_min or "none", _fit(candidate), budget, "yes" if candidate.verified else "-",
    ]  # fmt: skip


_HEADERS = [
    "",
    "#",
    "candidate",
    "params",
    "FLOPs",
    "ms",
    "unprod.",
    "b_min",
    "r_min/fit",
    "budget",
    "verified",
]


_MARKS = "marks: * chosen, C the cost-first choice (default), F the fit-first choice (--prefer fit), b the baseline"


def _picks(result: OptimizeResult) -> dict[str, Candidate]:
    """The cost-first (C) and fit-first (F) choices that were made."""
    return {
        prefer[0].upper(): c.chosen for prefer, c in sorted(result.choices.items()) if c.chosen is not None
    }


def format_front(result: OptimizeResult, *, verbose: bool = False) -> str:
    """The front as a table (the chosen one marked *, the cost-first choice C, the fit-first choice F, the
    baseline b), the counts, and with ``verbose`` every other candidate and every dropped one with its
    reason."""
    chosen = result.chosen.index if result.chosen is not None else None
    picks = _picks(result)
    shown = list(result.front)
    if result.baseline not in shown and result.baseline.ok:
        shown.insert(0, result.baseline)
    for pick in picks.values():
        if pick not in shown:
            shown.append(pick)

    def marks(c: Candidate) -> str:
        letters = "".join(letter for letter, pick in picks.items() if pick.index == c.index)
        return ("*" if c.index == chosen else "") + letters + ("b" if c.index == 0 else "")

    rows = [_row(c, result, marks(c)) for c in shown]
    h, w = result.input_size
    statuses = [c.status for c in result.candidates]
    lines = [
        f"{result.model_name} at {h}x{w}: {len(statuses)} candidates ({statuses.count('ok')} evaluated, "
        f"{statuses.count('duplicate')} duplicates, {statuses.count('dropped')} dropped) in {result.seconds:.1f} s; "
        f"objective {result.objective}; {result.budget.text()}",
        "Pareto front over cost, unproductive layers and the last layer's r_min (r_min/fit: its r_min and "
        "r_min / input):",
        render_table(_HEADERS, rows, align="<><>>>><<<<"),
        _MARKS,
    ]
    if verbose:
        others = [c for c in result.candidates if c.ok and c not in shown]
        if others:
            lines += ["", "other candidates:", render_table(_HEADERS, [_row(c, result, "") for c in others],
                                                            align="<><>>>><<<<")]  # fmt: skip
        for c in result.candidates:
            if c.status == "dropped":
                lines.append(f"dropped #{c.index} {c.label}: {c.reason}")
            elif c.status == "duplicate":
                lines.append(f"duplicate #{c.index} {c.label}: {c.reason}")
    return "\n".join(lines)


def plot_front(result: OptimizeResult, path: str | os.PathLike) -> None:
    """Write a PNG: every evaluated candidate's cost (log scale) against its unproductive layers (integer
    ticks), coloured by how much of the input its last layer's r_min covers; the front as a staircase, the
    cost-first choice starred and the fit-first one a diamond, the baseline ringed, the budget on the
    objective as a line. The legend sits below the axes, so it covers no point."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    objective = result.objective
    pool = [c for c in result.candidates if c.ok and math.isfinite(cost(c.figures, objective))]
    fig, ax = plt.subplots(figsize=(7.5, 6), layout="constrained")
    xs = [cost(c.figures, objective) for c in pool]
    ys = [c.figures.unproductive for c in pool]
    fits = [min(c.figures.fit or 0.0, 1.5) for c in pool]
    points = ax.scatter(xs, ys, c=fits, cmap="viridis", vmin=0, vmax=1.5, s=28, edgecolors="none")
    fig.colorbar(points, ax=ax, label="last layer's r_min / input (1 = sees the whole image)")
    front = sorted(result.front, key=lambda c: cost(c.figures, objective))
    ax.plot([cost(c.figures, objective) for c in front], [c.figures.unproductive for c in front], "--",
            color="black", linewidth=1, drawstyle="steps-post", label="Pareto front")  # fmt: skip
    base = result.baseline
    if base.ok:
        ax.plot(cost(base.figures, objective), base.figures.unproductive, "o", markersize=20, fillstyle="none",
                color="#e63946", zorder=4, label=f"baseline ({cost_text(base.figures, objective)})")  # fmt: skip
    _mark_choices(ax, result)
    limit = {"flops": result.budget.max_flops, "params": result.budget.max_params,
             "latency": result.budget.max_latency_ms}[objective]  # fmt: skip
    if limit is not None:
        ax.axvline(limit, color="#e63946", linestyle=":", label=f"budget ({result.budget.text()})")
    ax.set_xscale("log")
    ax.set_xlabel(
        {"flops": "FLOPs (fvcore, multiply-adds)", "params": "parameters", "latency": "latency [ms]"}[
            objective
        ]
    )
    ax.set_ylabel("unproductive layers")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_ylim(-0.5, max(ys, default=0) + 0.5)
    h, w = result.input_size
    ax.set_title(f"{result.model_name} at {h}x{w}: candidates and their Pareto front", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside lower center", ncols=1, frameon=False, markerscale=0.6)
    _save(fig, path)


_CHOICE_STYLES = {"F": ("D", 11, "#d62891", "fit first"), "C": ("*", 16, "#f4a261", "cost first")}


def _mark_choices(ax, result: OptimizeResult) -> None:
    """The fit-first choice as a diamond, the cost-first one as a star over it (where they coincide)."""
    picks = _picks(result)
    chosen = None if result.chosen is None else result.chosen.index
    for letter in ("F", "C"):
        if letter not in picks:
            continue
        pick, (marker, size, colour, what) = picks[letter], _CHOICE_STYLES[letter]
        made = " (chosen)" if pick.index == chosen else ""
        ax.plot(cost(pick.figures, result.objective), pick.figures.unproductive, marker, markersize=size,
                color=colour, markeredgecolor="black", label=f"{what}{made}: {pick.label}")  # fmt: skip


def format_sweep(sweep: Sweep) -> str:
    headers = ["size", "b_min", "b_max", "unprod.", "(output rule)", "params", "FLOPs", "r_min/fit",
               "trunc. params", "trunc. FLOPs", "advice"]  # fmt: skip
    rows = []
    for row in sweep.rows:
        f, t = row.figures, row.truncated
        if f is None:
            rows.append([f"{row.size[0]}", *["-"] * 9, row.advice])
            continue
        fit = "-" if f.fit is None or f.final_r_min is None else f"{f.final_r_min[0]:g}/{f.fit:.0%}"
        rows.append([
            f"{row.size[0]}", f.border_layer_min or "none", row.border_layer_max or "none", str(f.unproductive),
            "-" if row.unproductive_output is None else str(row.unproductive_output), human(f.params),
            human(f.flops), fit, human(t.params) if t else "-", human(t.flops) if t else "-", row.advice,
        ])  # fmt: skip
    return "\n".join(
        [f"{sweep.model}: border and cost per input size (border rule 'input')",
         render_table(headers, rows, align="><<>>>>>>><"), sweep.summary()]
    )  # fmt: skip


def plot_sweep(sweep: Sweep, path: str | os.PathLike) -> None:
    """Write a PNG: unproductive layers per input size (bars) and FLOPs of the model and of its truncation
    (lines, log scale), the advised size marked."""
    plt = _pyplot()

    rows = [row for row in sweep.rows if row.figures is not None]
    sizes = [row.size[0] for row in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    ax.bar(sizes, [row.figures.unproductive for row in rows], width=max(1, 0.6 * _step(sizes)),
           color="#e63946", alpha=0.6, label="unproductive layers")  # fmt: skip
    ax.set_xlabel("input size [px]")
    ax.set_ylabel("unproductive layers")
    ax.set_ylim(0, max([row.figures.unproductive for row in rows] + [1]) + 1)
    ax.yaxis.get_major_locator().set_params(integer=True)
    cost_ax = ax.twinx()
    cost_ax.plot(sizes, [row.figures.flops for row in rows], "-o", color="#1d3557", markersize=3,
                 label="FLOPs")  # fmt: skip
    truncated = [(row.size[0], row.truncated.flops) for row in rows if row.truncated is not None]
    if truncated:
        cost_ax.plot(
            *zip(*truncated, strict=True), ":s", color="#2a9d8f", markersize=3, label="FLOPs truncated"
        )
    cost_ax.set_yscale("log")
    cost_ax.set_ylabel("FLOPs (fvcore, multiply-adds)")
    best = sweep.best
    if best is not None:
        ax.axvline(best.size[0], color="#f4a261", linewidth=2, label=f"closest fit: {best.size[0]} px")
    ax.set_title(f"{sweep.model}: unproductive layers and cost per resolution", fontsize=10)
    handles = ax.get_legend_handles_labels()
    more = cost_ax.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper left")
    _save(fig, path)


def _step(sizes: list[int]) -> float:
    return min((b - a for a, b in itertools.pairwise(sizes)), default=8)
