"""The choice: the Pareto front over cost and the papers' heuristic, within the budget.

Paper 000 V: "Changing the network architecture to put the border layer as close to the output layer as
possible is a suitable heuristic"; dissertation 9.4.2: the resolution should be "close to the receptive
field size of the final layer". So a candidate is judged, in this order, by

1. its number of unproductive layers (fewer is better: the border moves to the output),
2. how far the r_min of its final conv/pool layer is from the input, ``|1 - r_min / i|`` (closer is better:
   the last layers see the whole image, and no more),
3. its cost in the objective (FLOPs, parameters or latency), then the other two costs,
4. the number of steps (fewer changes to the architecture), then its label (so ties break the same way on
   every run).

The front holds the candidates no other candidate beats on cost, unproductive layers and distance at once.
The chosen one is the best by the order above among those within every budget; it is on the front of the
candidates within the budget. A baseline with no unproductive layer that meets the budget is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._text import human
from .evaluation import Figures
from .search import Candidate

Objective = Literal["flops", "params", "latency"]
OBJECTIVES: tuple[Objective, ...] = ("flops", "params", "latency")
_UNITS = {"flops": "FLOPs", "params": "params", "latency": "ms"}


def cost(figures: Figures, objective: Objective) -> float:
    value = {"flops": figures.flops, "params": figures.params, "latency": figures.latency_ms}[objective]
    return math.inf if value is None else float(value)


def cost_text(figures: Figures, objective: Objective) -> str:
    if objective == "latency":
        return "-" if figures.latency_ms is None else f"{figures.latency_ms:.2f} ms"
    return f"{human(cost(figures, objective))} {_UNITS[objective]}"


@dataclass(frozen=True)
class Budget:
    """Upper limits on the cost; None is no limit."""

    max_flops: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None

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
        for objective, limit in self._limits():
            shown = f"{limit:g} ms" if objective == "latency" else f"{human(limit)} {_UNITS[objective]}"
            parts.append(f"max {objective} {shown}")
        return ", ".join(parts) or "no budget"

    def to_json(self) -> dict[str, Any]:
        return {
            "max_flops": self.max_flops,
            "max_params": self.max_params,
            "max_latency_ms": self.max_latency_ms,
        }


def rank_key(candidate: Candidate, objective: Objective) -> tuple:
    """The heuristic's order (smaller is better): unproductive layers, distance, cost, steps, label."""
    f = candidate.figures
    assert f is not None
    others = [cost(f, o) for o in OBJECTIVES if o != objective]
    return (f.unproductive, f.gap, cost(f, objective), *others, len(candidate.steps), candidate.label)


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

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "chosen": None if self.chosen is None else self.chosen.index,
            "reason": self.reason,
            "closest": None if self.closest is None else self.closest.index,
            "ranked": [c.index for c in self.ranked],
        }


def choose(candidates: Sequence[Candidate], *, objective: Objective, budget: Budget) -> Choice:
    """Pick by the heuristic within ``budget`` (``candidates[0]`` is the baseline)."""
    evaluated = [c for c in candidates if c.ok]
    baseline = candidates[0]
    within = sorted((c for c in evaluated if budget.meets(c.figures)), key=lambda c: rank_key(c, objective))
    if not within:
        closest = min(evaluated, key=lambda c: (budget.excess(c.figures), rank_key(c, objective)))
        reason = (
            f"no candidate meets the budget ({budget.text()}); the closest is {closest.label}: "
            f"{_costs(closest.figures)}"
        )
        return Choice("over-budget", None, reason, closest)
    if baseline.ok and baseline.figures.unproductive == 0 and budget.meets(baseline.figures):
        reason = (
            f"the baseline already has no unproductive layer and meets the budget ({budget.text()}): nothing to "
            f"rewrite; {_fit_text(baseline.figures)}"
        )
        return Choice("baseline", baseline, reason, ranked=tuple(within))
    chosen = within[0]
    return Choice("chosen", chosen, explain(within, baseline, objective, budget), ranked=tuple(within))


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


def explain(ranked: Sequence[Candidate], baseline: Candidate, objective: Objective, budget: Budget) -> str:
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
    lines = [f"{chosen.label}: {unproductive}; {_fit_text(f)}; {_costs(f)}, {within}"]
    ties = [c for c in ranked[1:] if _same_figures(c, chosen, objective)]
    runner_up = next((c for c in ranked[1:] if not _same_figures(c, chosen, objective)), None)
    if runner_up is None:
        lines.append("no other candidate within the budget has other figures")
    else:
        lines.append(f"it won because {_why(chosen, runner_up, objective)}")
    if ties:
        lines.append(
            f"{len(ties)} candidate(s) with the same figures lose on the number of steps or the name"
        )
    return "; ".join(lines)


def _why(chosen: Candidate, runner_up: Candidate, objective: Objective) -> str:
    f, g = chosen.figures, runner_up.figures
    if f.unproductive != g.unproductive:
        return f"it has fewer unproductive layers than the runner-up {runner_up.label} ({g.unproductive})"
    if f.gap != g.gap:
        seen = "-" if g.fit is None else f"{g.fit:.0%}"
        return (
            f"its last layer's r_min is closer to the input than the runner-up {runner_up.label}'s ({seen})"
        )
    if cost(f, objective) != cost(g, objective):
        return (
            f"at the same unproductive layers and distance it is the cheapest in {objective}: "
            f"{cost_text(f, objective)} against {cost_text(g, objective)} for {runner_up.label}"
        )
    return f"it ties with {runner_up.label} in {objective} and is cheaper in the other costs"
