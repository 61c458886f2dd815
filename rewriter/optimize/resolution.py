"""``sweep``: the border, the unproductive layers and the cost per input resolution (strategy D3).

Dissertation 8.5 and 9.4.2: tails shift with the resolution (too small puts the tail at the output, too
large at the input), and the resolution should be "close to the receptive field size of the final layer".
For each size: b_min and b_max, the unproductive layers, the cost, what the strategy that cuts the tail
(``truncate``, or whichever declares ``Strategy.tail_cut``) would keep (its plan and its result, evaluated on
the meta device like the optimizer's candidates), and advice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .._errors import RewriterError
from .._text import human, one_line
from .._untrusted import shown
from ..analysis.analyzer import resolve_leaf_classes
from ..engine.registry import get_strategy
from ..engine.strategy import Context, apply_plan, declarations
from .copies import meta_copy
from .errors import OptimizeError
from .figures import Figures, analyzer_for, figures_of, measure_candidate, output_classes

MAX_SIZES = 256  # resolutions in one sweep
_RANGE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*(?::\s*(\d+)\s*)?$")


def parse_sizes(text: str) -> list[int]:
    """``"32:512:32"`` (start:stop:step, stop included) or ``"32,64,128"`` -> square sizes in px.

    Raises:
        OptimizeError: not a range or a list of positive sizes, or more than 256 sizes.
    """
    match = _RANGE.match(text)
    sizes: Sequence[int] = []
    if match:
        with contextlib.suppress(ValueError):  # int() of a 5000-digit number
            start, stop, step = int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)
            sizes = range(start, stop + 1, step) if step > 0 else []  # counted before it is a list
    elif text.count(",") < MAX_SIZES:
        with contextlib.suppress(ValueError):
            sizes = [int(part) for part in text.split(",")]
    if not sizes or len(sizes) > MAX_SIZES or any(s <= 0 for s in sizes):
        raise OptimizeError(
            f"input_size expects START:STOP:STEP (32:512:32) or sizes 32,64,128 (at most {MAX_SIZES}), got "
            f"{shown(text)}",
            param="input_size",
        )
    return list(sizes)


@dataclass(frozen=True)
class SweepRow:
    """One resolution: the model's figures, and what truncation at the border would keep."""

    size: tuple[int, int]
    figures: Figures | None  # None: the model does not run at this size (``advice`` says why)
    border_layer_max: str | None
    truncated: Figures | None  # None: nothing to cut, or truncation refused (``truncate_note`` says)
    truncate_note: str
    advice: str
    unproductive_output: int | None = None  # unproductive layers under the border rule 'output'

    def to_json(self) -> dict[str, Any]:
        return {
            "input_size": list(self.size),
            "runs": self.figures is not None,
            **(self.figures.to_json() if self.figures is not None else {}),
            "unproductive_output_rule": self.unproductive_output,
            "border_layer_max": self.border_layer_max,
            "truncated": None if self.truncated is None else self.truncated.to_json(),
            "truncate_note": self.truncate_note,
            "advice": self.advice,
        }


@dataclass(frozen=True)
class Sweep:
    """The rows of a sweep and the resolution the papers' advice points to."""

    model: str
    rows: tuple[SweepRow, ...]
    cutter: str | None = None  # the strategy whose cut the rows show (it declares ``Strategy.tail_cut``)
    cutter_rule: str | None = None  # its parameter that picks the border rule

    @property
    def best(self) -> SweepRow | None:
        """The size with no unproductive layer whose final layer's r_min comes closest to the input."""
        fine = [
            r for r in self.rows if r.figures is not None and r.figures.unproductive == 0 and r.figures.fit
        ]
        return max(fine, key=lambda row: (row.figures.fit, -row.size[0]), default=None)

    def summary(self) -> str:
        """What to do: the size to train at (or why there is none), and what the output rule says where the
        input rule finds nothing to cut anywhere in the range."""
        best, ran = self.best, [r for r in self.rows if r.figures is not None]
        if best is None:
            return (
                "no size in the range leaves every layer productive: try larger sizes, or rewrite the model"
            )
        text = (
            f"at {best.size[0]} px every layer is productive and the last layer's r_min covers "
            f"{best.figures.fit:.0%} of the input: the closest fit in the range (dissertation 9.4.2)"
        )
        if any(r.figures.unproductive for r in ran):
            return text + "; train there, or truncate the model for the size you need"
        low, high = ran[0].size[0], ran[-1].size[0]
        text = (
            f"under the input rule no layer is unproductive at any size from {low} to {high} px: nothing to cut; "
            + text
        )
        by_output = [(r.size[0], r.unproductive_output) for r in ran if r.unproductive_output]
        if by_output:
            (small, most), (large, least) = by_output[0], by_output[-1]
            text += (
                f". The output rule (a layer's own output field) finds {most} unproductive at {small} px"
                + (f" to {least} at {large} px" if large != small else "")
            )
            if self.cutter is not None:
                text += (
                    f"; to cut those: rewriter rewrite {self.model} --input-size {small} --strategy {self.cutter} "
                    f"-p {self.cutter}.{self.cutter_rule}=output"
                )
        return text

    def to_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "model": self.model,
            "border_rule": "input",
            "rows": [row.to_json() for row in self.rows],
            "best_input_size": None if best is None else list(best.size),
            "summary": self.summary(),
        }


def _advise(rows: list[SweepRow], best: SweepRow | None, cutter: str | None) -> list[SweepRow]:
    """Each row's advice, knowing the whole range: cut the tail (with ``cutter``) or train at the next size
    without a tail; the closest fit; or the size that fits closer."""
    advised = []
    for row in rows:
        f = row.figures
        if f is None:
            advised.append(row)
            continue
        if f.unproductive:
            keep = f"{cutter} (keeps {human(row.truncated.params)} params)" if row.truncated else cutter
            larger = next(
                (r.size[0] for r in rows if r.size > row.size and r.figures and not r.figures.unproductive),
                None,
            )
            other = f"train at {larger} px" if larger else "a larger input than the range, or slower growth"
            text = f"{f.unproductive} unproductive from {f.border_layer_min}: " + ", or ".join(
                [keep, other] if keep else [other]
            )
        elif f.fit is None:
            text = "no conv/pool layer in the border test"
        elif row is best:
            text = f"all productive; the closest fit in the range (last layer sees {f.fit:.0%})"
        else:
            text = f"all productive; the last layer sees {f.fit:.0%}: {best.size[0]} px fits closer"
        if not f.unproductive and row.unproductive_output:
            text += f"; {row.unproductive_output} unproductive by the output rule"
        advised.append(dataclasses.replace(row, advice=text))
    return advised


def _truncated(
    cutter: str | None, model: nn.Module, analysis, classes, in_channels, leaf_classes
) -> tuple[Figures | None, str]:
    """The figures of ``model`` cut by the strategy ``cutter`` at its defaults (None, with the reason, when it
    cuts nothing or refuses)."""
    if cutter is None:
        return None, "no registered strategy cuts the tail"
    strategy = get_strategy(cutter)()
    context = Context.of(
        analysis, num_classes=classes, in_channels=in_channels, leaf_classes=leaf_classes, pretrained=False
    )
    try:
        plan = strategy.plan(model, context)
        if plan.is_noop:
            return None, "nothing to cut"
        new = apply_plan(strategy, meta_copy(model), plan, context).model
        _, figures = measure_candidate(
            new, context.input_size, in_channels=in_channels, leaf_classes=leaf_classes
        )
    except RewriterError as err:
        return None, one_line(err)
    return figures, f"cut after '{plan.cut.at}'" if plan.cut else ""


def sweep(
    model: nn.Module,
    sizes: Sequence[int],
    *,
    in_channels: int = 3,
    leaf_modules: Sequence[type | str] = (),
    name: str | None = None,
) -> Sweep:
    """The border, unproductive layers, cost and truncation per square input size in ``sizes``.

    Example:
        >>> import rewriter
        >>> model, _ = rewriter.load_model("resnet18")
        >>> [row.figures.border_layer_min for row in sweep(model, [32, 96]).rows]
        ['layer4.1.conv2', None]
    """
    leaf_classes = resolve_leaf_classes(model, leaf_modules)
    cutters = declarations("tail_cut")  # the first by name, if several strategies cut the tail
    cutter = next(iter(cutters), None)
    meta = meta_copy(model)
    analyze = analyzer_for(meta, in_channels=in_channels, leaf_classes=leaf_classes)  # one trace, every size
    rows = []
    for side in sizes:
        size = (side, side)
        try:
            analysis = analyze(size)
        except RewriterError as err:  # the model does not run at this size: a row that says so
            rows.append(SweepRow(size, None, None, None, "", f"does not run: {one_line(err, limit=160)}"))
            continue
        figures = figures_of(analysis)
        classes = output_classes(analysis) or 1
        truncated, note = _truncated(cutter, meta, analysis, classes, in_channels, leaf_classes)
        by_output = len(analyze(size, border_rule="output", flops=False).unproductive_layers)
        rows.append(SweepRow(size, figures, analysis.border_layer_max, truncated, note, "", by_output))
    if all(row.figures is None for row in rows):
        raise OptimizeError(f"the model runs at none of the sizes: {rows[0].advice}")
    rule = None if cutter is None else cutters[cutter].rule_param
    result = Sweep(name or type(model).__name__, tuple(rows), cutter, rule)
    return dataclasses.replace(result, rows=tuple(_advise(rows, result.best, cutter)))
