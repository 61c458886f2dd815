"""Receptive fields r_min / r_max of every tensor in a LayerGraph, and the border layers b_min / b_max.

Paper 000 eq. (1), per axis, with r_0 = 1 and jump j_0 = 1 at the input: an op with effective kernel k and
stride s maps (r, j) to (r + (k - 1) * j, j * s). In a multi-path network every path from the input has its
own (r, j); r_min and r_max are the extremes over all paths (paper 000 Fig. 3). Minimising r alone per node
is not exact when paths have different jumps (dissertation section 4.4, footnote 8), so each tensor carries
the Pareto fronts of its paths' (r, j) pairs, which is exact and stays small: every op transforms all
pairs by the same monotone map, so a pair dominated in both r and j can never become the extreme later.
Padding is ignored (the theoretical receptive field).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from .gates import attention_branch, gate_inputs
from .graph import LayerGraph, LayerNode
from .layouts import AXES
from .rules import AxisEffect

BorderRule = Literal["input", "output"]
Number = int | float | Fraction
State = tuple[Number, Number]  # (r, jump) of one path, along one axis
INF = math.inf
_UNBOUNDED_STATE: State = (INF, INF)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field sizes of one tensor per axis (height, width); ``math.inf`` = unbounded."""

    min: tuple[Number, Number]
    max: tuple[Number, Number]


@dataclass(frozen=True)
class LayerField:
    """The receptive field a layer's input is based on, and that of its output."""

    input: ReceptiveField
    output: ReceptiveField


def _front(states: Iterable[State]) -> tuple[State, ...]:
    """The states that can still be the minimum or the maximum of r after any further ops."""
    unique = sorted(set(states))
    if len(unique) <= 2:
        return tuple(unique)  # one or two pairs: each is an extreme of r
    lower, best_j = [], INF
    for r, j in unique:  # ascending r: keep pairs whose jump is smaller than all before
        if j < best_j:
            lower.append((r, j))
            best_j = j
    upper, best_j = [], -INF
    for r, j in reversed(unique):  # descending r: keep pairs whose jump is larger than all before
        if j > best_j:
            upper.append((r, j))
            best_j = j
    return tuple(sorted(set(lower) | set(upper)))


def _apply(effect: AxisEffect, states: tuple[State, ...]) -> tuple[State, ...]:
    if effect.unbounded:
        return (_UNBOUNDED_STATE,)
    if effect.is_identity:
        return states
    stride = _exact(effect.stride)  # an int where it is one: int arithmetic is ~20x faster than Fraction's
    return _front(
        _UNBOUNDED_STATE if math.isinf(r) else (r + (effect.kernel - 1) * j, _exact(j * stride))
        for r, j in states
    )


def _field(states: tuple[tuple[State, ...], tuple[State, ...]]) -> ReceptiveField:
    return ReceptiveField(
        min=tuple(_plain(min(r for r, _ in axis)) for axis in states),  # type: ignore[arg-type]
        max=tuple(_plain(max(r for r, _ in axis)) for axis in states),  # type: ignore[arg-type]
    )


def _plain(value: Number) -> Number:
    """Fractions with denominator 1 become ints, so tables and JSON show ``19``, not ``Fraction(19, 1)``."""
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return value


def _exact(value: Number) -> Number:
    """A Fraction with denominator 1 as an int, other values as they are (jumps stay exact)."""
    return value.numerator if isinstance(value, Fraction) and value.denominator == 1 else value


@dataclass(frozen=True)
class FieldPass:
    """Receptive fields of every node, the attention gates found, and the nodes of their branches."""

    fields: dict[str, LayerField]
    gates: dict[str, frozenset[str]]  # product node -> its inputs that are gates (``gates.gate_inputs``)
    attention: frozenset[str]  # nodes that reach the output only through a gate


def field_pass(graph: LayerGraph) -> FieldPass:
    """r_min and r_max of every node's input and output, per axis, in one pass in execution order.

    At a product with attention gates (``rewriter.analysis.gates``) only the feature operands count: the
    gate leaves the feature path's r_min and r_max unchanged (paper 000 IV-D).
    """
    out_states: dict[str, tuple[tuple[State, ...], tuple[State, ...]]] = {}
    fields: dict[str, LayerField] = {}
    gates: dict[str, frozenset[str]] = {}
    start = ((1, 1),)

    seen: dict[int, tuple[object, ReceptiveField]] = {}  # identity ops pass their states on: one field each

    def field_of(states: tuple[tuple[State, ...], tuple[State, ...]]) -> ReceptiveField:
        known = seen.get(id(states))
        if known is None or known[0] is not states:
            known = seen[id(states)] = (states, _field(states))
        return known[1]

    def unbounded(name: str) -> bool:
        return any(math.isinf(r) for axis in out_states[name] for r, _ in axis)

    for node in graph:
        if node.name == graph.input_name:
            in_states = (start, start)
        else:
            sources = [i for i in node.inputs if i in out_states]
            if not sources:
                continue
            found = gate_inputs(graph, node, unbounded) if len(sources) > 1 else frozenset()
            if found:
                gates[node.name] = found
                sources = [i for i in sources if i not in found]
            in_states = _merged([out_states[i] for i in sources])
        axes = node.effect.axes
        out = in_states if axes[0].is_identity and axes[1].is_identity else _applied(axes, in_states)
        for path in node.effect.paths:  # the op's own other paths (the branches inside a leaf block)
            out = tuple(_front((*out[a], *_apply(path[a], in_states[a]))) for a in AXES)
        out_states[node.name] = out  # type: ignore[assignment]
        fields[node.name] = LayerField(field_of(in_states), field_of(out))  # type: ignore[arg-type]
    return FieldPass(fields, gates, attention_branch(graph, gates))


def _applied(axes, states):
    return tuple(_apply(axes[a], states[a]) for a in AXES)


def _merged(sources: list[tuple[tuple[State, ...], tuple[State, ...]]]) -> tuple[tuple[State, ...], ...]:
    if len(sources) == 1:
        return sources[0]
    return tuple(_front(s for src in sources for s in src[a]) for a in AXES)


def receptive_fields(graph: LayerGraph) -> dict[str, LayerField]:
    """r_min and r_max of every node's input and output, per axis: the fields of ``field_pass``."""
    return field_pass(graph).fields


@dataclass(frozen=True)
class BorderVerdict:
    """Per axis whether the tested receptive field exceeds the input, and the resulting verdict."""

    exceeds_min: tuple[bool, bool]
    exceeds_max: tuple[bool, bool]

    @property
    def productive(self) -> bool:
        """Unproductive only when r_min exceeds the input on *every* axis (strict ``>``)."""
        return not all(self.exceeds_min)

    @property
    def productive_max(self) -> bool:
        return not all(self.exceeds_max)


def border_verdict(field: LayerField, limit: tuple[int, int], rule: BorderRule) -> BorderVerdict:
    tested = field.input if rule == "input" else field.output
    return BorderVerdict(
        exceeds_min=tuple(tested.min[a] > limit[a] for a in AXES),  # type: ignore[arg-type]
        exceeds_max=tuple(tested.max[a] > limit[a] for a in AXES),  # type: ignore[arg-type]
    )


def final_run_start(flags: Iterable[tuple[str, bool]]) -> str | None:
    """The first name of the final contiguous run of unproductive (``False``) entries, or None.

    Dissertation 10.2: b_min is "the first layer in a sequence with r_{l-1,min} > I and with all layers in
    this sequence leading from b_min to the output fulfilling the same condition".
    """
    start = None
    for name, productive in flags:
        if productive:
            start = None
        elif start is None:
            start = name
    return start


def takes_part_in_border(node: LayerNode) -> bool:
    """Convolutions and (non-global) pooling take part; global ops and classifier heads do not."""
    return node.effect.takes_part_in_border
