"""The choice: the Pareto front over cost and the papers' heuristic, within the budget.

Paper 000 V: "Changing the network architecture to put the border layer as close to the output layer as
possible is a suitable heuristic"; dissertation 9.4.2: the resolution should be "close to the receptive
field size of the final layer". A candidate is judged, by default (``prefer="cost"``), in this order:

1. its number of unproductive layers (fewer is better: the border moves to the output),
2. its cost in the objective (FLOPs, parameters or latency; lower is better),
3. how far the r_min of its final conv/pool layer is from the input, ``|1 - r_min / i|`` (closer is better:
   the last layers see the whole image, and no more),
4. the other two costs,
5. the number of steps (fewer changes to the architecture), then its label (so ties break the same way on
   every run);

and a candidate more expensive than the baseline in the objective is never chosen. With ``prefer="fit"``
criteria 2 and 3 swap and the baseline's cost is no limit: the fit buys accuracy with compute (dissertation
D2, re-positioning pooling layers to change the receptive-field growth, often moves downsampling later and
costs FLOPs). ``rank_key`` is this order, term by term.

The front holds the candidates no other candidate beats on cost, unproductive layers and distance at once.
The chosen one is the best by the order above among those within every budget; it is on the front of the
candidates within the budget. A baseline with no unproductive layer that meets the budget is kept.
A limit is absolute or a multiple of the baseline's cost (``Ratio``, ``"0.5x"``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._text import human
from .errors import OptimizeError
from .figures import Figures
from .search import Candidate

Objective = Literal["flops", "params", "latency"]
OBJECTIVES: tuple[Objective, ...] = ("flops", "params", "latency")
Prefer = Literal["cost", "fit"]
PREFERENCES: tuple[Prefer, ...] = ("cost", "fit")
_UNITS = {"flops": "FLOPs", "params": "params", "latency": "ms"}
MAX_RATIO = 1000.0


def cost(figures: Figures, objective: Objective) -> float:
    value = {"flops": figures.flops, "params": figures.params, "latency": figures.latency_ms}[objective]
    return math.inf if value is None else float(value)


def cost_text(figures: Figures, objective: Objective) -> str:
    if objective == "latency":
        return "-" if figures.latency_ms is None else f"{figures.latency_ms:.2f} ms"
    return f"{human(cost(figures, objective))} {_UNITS[objective]}"


@dataclass(frozen=True)
class Ratio:
    """A limit given as a multiple of the baseline's cost (``"0.5x"``)."""

    factor: float

    def text(self) -> str:
        return f"{self.factor:g}x"


_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([kKmMgGtT]?|[xX])\s*$")
_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_limit(value: float | str | Ratio, what: str = "limit") -> float | Ratio:
    """A budget limit: a positive number, a text with a suffix (``"1.5G"``, ``"300M"``, ``"2e6"``) or a
    multiple of the baseline's cost (``"0.5x"``, up to 1000x)."""
    if isinstance(value, Ratio):
        factor = value.factor
        if not isinstance(factor, (int, float)) or not math.isfinite(factor) or not 0 < factor <= MAX_RATIO:
            raise OptimizeError(f"{what}: expected a ratio in (0, {MAX_RATIO:g}], got {factor!r}")
        return value
    if isinstance(value, str):
        match = _AMOUNT.match(value)
        number = float(match.group(1)) if match else 0.0
        if match and match.group(2) in ("x", "X"):
            return parse_limit(Ratio(number), what)
        if not match or number <= 0 or not math.isfinite(number):
            raise OptimizeError(
                f"{what}: expected a positive number like 1.5G, 300M or 2e6, or a ratio of the baseline's "
                f"cost like 0.5x, got '{value}'"
            )
        return number * _SUFFIX[match.group(2).lower()]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise OptimizeError(f"{what}: expected a positive number or a ratio like '0.5x', got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Budget:
    """Upper limits on the cost; None is no limit. ``ratios`` records the limits given as multiples of the
    baseline's cost (for the text; the limits themselves are absolute)."""

    max_flops: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    ratios: tuple[tuple[Objective, float], ...] = ()

    @classmethod
    def of(cls, baseline: Figures, **limits: float | str | Ratio | None) -> Budget:
        """The budget from ``max_flops``, ``max_params`` and ``max_latency_ms``, each absolute or a ratio,
        made absolute against the baseline's figures."""
        values: dict[str, float | None] = {}
        ratios: list[tuple[Objective, float]] = []
        for flag, objective in (
            ("max_flops", "flops"),
            ("max_params", "params"),
            ("max_latency_ms", "latency"),
        ):
            given = limits.get(flag)
            limit = None if given is None else parse_limit(given, flag)
            if isinstance(limit, Ratio):
                ratios.append((objective, limit.factor))
                limit = limit.factor * cost(baseline, objective)
                if not math.isfinite(limit):
                    raise OptimizeError(
                        f"{flag}: a ratio needs the baseline's {objective}, which was not measured"
                    )
            values[flag] = limit
        return cls(**values, ratios=tuple(ratios))

    def _limits(self) -> list[tuple[Objective, float]]:
        pairs = [("flops", self.max_flops), ("params", self.max_params), ("latency", self.max_latency_ms)]
        return [(objective, limit) for objective, limit in pairs if limit is not None]  # type: ignore[misc]

    def excess(self, figures: Figures) -> float:
        """The largest ratio of a cost to its limit (at most 1 when the budget is met; 0 with no limits)."""
        return max((cost(figures, o) / limit for o, limit in self._limits()), default=0.0)

    def meets(self, figures: Figures) -> bool:
        return all(cost(figures, o) <= limit for o, limit in self._limits())

    def text(self) -> str:
        parts = []
        ratios = dict(self.ratios)
        for objective, limit in self._limits():
            shown = f"{limit:g} ms" if objective == "latency" else f"{human(limit)} {_UNITS[objective]}"
            if objective in ratios:
                shown += f" ({ratios[objective]:g}x the baseline)"
            parts.append(f"max {objective} {shown}")
        return ", ".join(parts) or "no budget"

    def to_json(self) -> dict[str, Any]:
        return {
            "max_flops": self.max_flops,
            "max_params": self.max_params,
            "max_latency_ms": self.max_latency_ms,
            "ratios": {objective: factor for objective, factor in self.ratios},
        }


def rank_key(candidate: Candidate, objective: Objective, prefer: Prefer = "cost") -> tuple:
    """The heuristic's order (smaller is better), the module docstring's list term by term: unproductive
    layers, cost then distance (``prefer="fit"``: distance then cost), the other costs, steps, label."""
    f = candidate.figures
    assert f is not None
    others = [cost(f, o) for o in OBJECTIVES if o != objective]
    first = (cost(f, objective), f.gap) if prefer == "cost" else (f.gap, cost(f, objective))
    return (f.unproductive, *first, *others, len(candidate.steps), candidate.label)


def _point(candidate: Candidate, objective: Objective) -> tuple[float, int, float]:
    f = candidate.figures
    assert f is not None
    return cost(f, objective), f.unproductive, f.gap


def dominates(a: Candidate, b: Candidate, objective: Objective) -> bool:
    """``a`` is no worse than ``b`` on cost, unproductive layers and distance, and better on one."""
    pa, pb = _point(a, objective), _point(b, objective)
    return all(x <= y for x, y in zip(pa, pb, strict=True)) and pa != pb


def pareto_front(candidates: Sequence[Candidate], objective: Objective) -> list[Candidate]:
    """The evaluated candidates that no other one dominates, cheapest first."""
    pool = [c for c in candidates if c.ok]
    front = [c for c in pool if not any(dominates(o, c, objective) for o in pool)]
    return sorted(front, key=lambda c: (_point(c, objective), rank_key(c, objective)))


ChoiceStatus = Literal["chosen", "baseline", "over-budget"]


@dataclass(frozen=True)
class Choice:
    """What was chosen and why; ``ranked`` is every candidate within the budget, best first."""

    status: ChoiceStatus
    chosen: Candidate | None
    reason: str
    closest: Candidate | None = None
    ranked: tuple[Candidate, ...] = ()
    prefer: Prefer = "cost"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "prefer": self.prefer,
            "chosen": None if self.chosen is None else self.chosen.index,
            "reason": self.reason,
            "closest": None if self.closest is None else self.closest.index,
            "ranked": [c.index for c in self.ranked],
        }


def _cap(baseline: Candidate, objective: Objective, prefer: Prefer) -> float:
    """The most a candidate may cost in the objective: the baseline's cost (no limit with ``prefer="fit"``)."""
    return cost(baseline.figures, objective) if prefer == "cost" and baseline.ok else math.inf


def choose(
    candidates: Sequence[Candidate], *, objective: Objective, budget: Budget, prefer: Prefer = "cost"
) -> Choice:
    """Pick by the heuristic within ``budget`` (``candidates[0]`` is the baseline); with ``prefer="cost"``
    never a candidate more expensive than the baseline in the objective."""
    if prefer not in PREFERENCES:
        raise OptimizeError(f"prefer must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
    evaluated = [c for c in candidates if c.ok]
    baseline = candidates[0]
    cap = _cap(baseline, objective, prefer)

    def key(c: Candidate) -> tuple:
        return rank_key(c, objective, prefer)

    within = sorted(
        (c for c in evaluated if budget.meets(c.figures) and cost(c.figures, objective) <= cap), key=key
    )
    if not within:
        closest = min(evaluated, key=lambda c: (budget.excess(c.figures), key(c)))
        capped = (
            "" if math.isinf(cap) else f" at no more than the baseline's {objective} (prefer='fit' lifts it)"
        )
        reason = (
            f"no candidate meets the budget ({budget.text()}){capped}; the closest is {closest.label}: "
            f"{_costs(closest.figures)}"
        )
        return Choice("over-budget", None, reason, closest, prefer=prefer)
    if (
        baseline.ok
        and (baseline.figures.unproductive == 0 or within[0] is baseline)
        and budget.meets(baseline.figures)
    ):
        reason = (
            f"the baseline already has no unproductive layer and meets the budget ({budget.text()}): nothing to "
            f"rewrite; {_fit_text(baseline.figures)}"
            if baseline.figures.unproductive == 0
            else f"no candidate within the budget ({budget.text()}) ranks above the baseline: nothing to rewrite"
        )
        return Choice("baseline", baseline, reason, ranked=tuple(within), prefer=prefer)
    chosen = within[0]
    reason = explain(within, baseline, objective, budget, prefer=prefer)
    return Choice("chosen", chosen, reason, ranked=tuple(within), prefer=prefer)


def _costs(f: Figures) -> str:
    parts = [f"{human(f.flops)} FLOPs", f"{human(f.params)} params"]
    if f.latency_ms is not None:
        parts.append(f"{f.latency_ms:.2f} ms")
    return ", ".join(parts)


def _fit_text(f: Figures) -> str:
    if f.final_layer is None or f.fit is None:
        return "no conv or pooling layer takes part in the border test"
    r = "x".join(f"{v:g}" for v in dict.fromkeys(f.final_r_min or ()))
    return f"its last layer '{f.final_layer}' sees r_min {r}, {f.fit:.0%} of the input"


def _same_figures(a: Candidate, b: Candidate, objective: Objective) -> bool:
    return rank_key(a, objective)[:-2] == rank_key(b, objective)[:-2]


def explain(
    ranked: Sequence[Candidate],
    baseline: Candidate,
    objective: Objective,
    budget: Budget,
    *,
    prefer: Prefer = "cost",
) -> str:
    """Why ``ranked[0]`` won: its figures, and the first criterion on which it beats the best candidate
    with other figures (candidates with the same figures lose on the number of steps or the name)."""
    chosen = ranked[0]
    f, base = chosen.figures, baseline.figures
    unproductive = (
        "no unproductive layer" if f.unproductive == 0 else f"{f.unproductive} unproductive layer(s)"
    )
    if base is not None:
        unproductive += f" (the baseline has {base.unproductive})"
    within = f"within {budget.text()}" if budget.text() != "no budget" else "no budget given"
    if prefer == "cost" and base is not None:
        within += f", at no more than the baseline's {cost_text(base, objective)}"
    lines = [f"{chosen.label}: {unproductive}; {_fit_text(f)}; {_costs(f)}, {within}"]
    ties = [c for c in ranked[1:] if _same_figures(c, chosen, objective)]
    runner_up = next((c for c in ranked[1:] if not _same_figures(c, chosen, objective)), None)
    if runner_up is None:
        lines.append("no other candidate within the budget has other figures")
    else:
        lines.append(f"it won because {_why(chosen, runner_up, objective, prefer)}")
    if ties:
        lines.append(
            f"{len(ties)} candidate(s) with the same figures lose on the number of steps or the name"
        )
    return "; ".join(lines)


def _why(chosen: Candidate, runner_up: Candidate, objective: Objective, prefer: Prefer) -> str:
    """The first term of the rank key on which ``chosen`` beats ``runner_up``, in words."""
    f, g = chosen.figures, runner_up.figures
    if f.unproductive != g.unproductive:
        return f"it has fewer unproductive layers than the runner-up {runner_up.label} ({g.unproductive})"
    order = ("cost", "gap") if prefer == "cost" else ("gap", "cost")
    for term in order:
        if term == "cost" and cost(f, objective) != cost(g, objective):
            same = "unproductive layers" if prefer == "cost" else "unproductive layers and distance"
            return (
                f"at the same {same} it is the cheapest in {objective}: "
                f"{cost_text(f, objective)} against {cost_text(g, objective)} for {runner_up.label}"
            )
        if term == "gap" and f.gap != g.gap:
            seen = "-" if g.fit is None else f"{g.fit:.0%}"
            return (
                f"its last layer's r_min is closer to the input than the runner-up {runner_up.label}'s ({seen})"
                + (f" at the same {objective}" if prefer == "cost" else "")
            )
    return f"it ties with {runner_up.label} in {objective} and is cheaper in the other costs"
