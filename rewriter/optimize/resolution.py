"""``sweep``: the border, the unproductive layers and the cost per input resolution (strategy D3).

Dissertation 8.5 and 9.4.2: tails shift with the resolution (too small puts the tail at the output, too
large at the input), and the resolution should be "close to the receptive field size of the final layer".
For each size: b_min and b_max, the unproductive layers, the cost, what ``truncate`` would keep (its plan and
its result, evaluated on the meta device like the optimizer's candidates), and advice.
"""

from __future__ import annotations

import contextlib
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
from ..engine.strategy import Context
from .errors import OptimizeError
from .evaluation import Figures, analyzer_for, figures_of, measure_candidate, meta_copy, output_classes

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
            f"--input-size expects START:STOP:STEP (32:512:32) or sizes 32,64,128 (at most {MAX_SIZES}), got "
            f"{shown(text)}"
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

    def to_json(self) -> dict[str, Any]:
        return {
            "input_size": list(self.size),
            "runs": self.figures is not None,
            **(self.figures.to_json() if self.figures is not None else {}),
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

    @property
    def best(self) -> SweepRow | None:
        """The size with no unproductive layer whose final layer's r_min comes closest to the input."""
        fine = [
            r for r in self.rows if r.figures is not None and r.figures.unproductive == 0 and r.figures.fit
        ]
        return max(fine, key=lambda row: (row.figures.fit, -row.size[0]), default=None)

    def summary(self) -> str:
        best = self.best
        if best is None:
            return (
                "no size in the range leaves every layer productive: try larger sizes, or rewrite the model"
            )
        return (
            f"at {best.size[0]} px every layer is productive and the last layer's r_min covers "
            f"{best.figures.fit:.0%} of the input: the closest fit in the range (dissertation 9.4.2)"
        )

    def to_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "model": self.model,
            "border_rule": "input",
            "rows": [row.to_json() for row in self.rows],
            "best_input_size": None if best is None else list(best.size),
            "summary": self.summary(),
        }


def _advice(f: Figures, truncated: Figures | None) -> str:
    if f.unproductive:
        keep = f", truncation keeps {human(truncated.params)} params" if truncated else ""
        return f"{f.unproductive} unproductive from {f.border_layer_min}{keep}; or a larger input, or slower growth"
    if f.fit is not None and f.fit < 0.5:
        return (
            f"all productive, but the last layer sees {f.fit:.0%} of the input: a smaller input fits closer"
        )
    return "all productive: a close fit" if f.fit is not None else "no conv/pool layer in the border test"


def _truncated(
    model: nn.Module, analysis, size, classes, in_channels, leaf_classes
) -> tuple[Figures | None, str]:
    strategy = get_strategy("truncate")()
    context = Context(
        input_size=size,
        num_classes=classes,
        analysis=analysis,
        in_channels=in_channels,
        leaf_classes=leaf_classes,
    )
    try:
        plan = strategy.plan(model, context)
        if plan.is_noop:
            return None, "nothing to cut"
        new = strategy.apply(meta_copy(model), plan, context)
        _, figures = measure_candidate(new, size, in_channels=in_channels, leaf_classes=leaf_classes)
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
        truncated, note = _truncated(meta, analysis, size, classes, in_channels, leaf_classes)
        rows.append(
            SweepRow(size, figures, analysis.border_layer_max, truncated, note, _advice(figures, truncated))
        )
    if all(row.figures is None for row in rows):
        raise OptimizeError(f"the model runs at none of the sizes: {rows[0].advice}")
    return Sweep(name or type(model).__name__, tuple(rows))
