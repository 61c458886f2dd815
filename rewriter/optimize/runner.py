"""``optimize``: from a baseline and a resolution to the best rewritten model, without training.

The search space comes from the strategies' declarations (``space``), every composition is evaluated on the
meta device (``search``), the front and the choice follow the papers' heuristic within the budget
(``choice``), and the chosen candidate is rewritten for real by ``rewriter.rewrite``, which checks every
invariant on the actual weights; a candidate that fails there is dropped with the reason and the next one
is taken.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from .._errors import RewriterError
from .._text import one_line
from ..analysis import FLOP_CONVENTION
from ..analysis.analyzer import resolve_leaf_classes
from ..analysis.sizes import parse_size
from ..engine.pipeline import Result, rewrite
from ..engine.recipe import Recipe
from ..engine.registry import get_strategy
from ..engine.strategy import Context, WidthScaling, declarations
from ..models.sources import load_model
from .choice import (
    OBJECTIVES,
    PREFERENCES,
    Budget,
    Choice,
    Objective,
    Prefer,
    Ratio,
    choose,
    pareto_front,
    parse_limit,
)
from .copies import meta_copy
from .errors import OptimizeError, SearchValueError
from .figures import measure_candidate, output_classes
from .search import Candidate, SearchSettings, run_search
from .space import StrategyChoices, Values, composition_count, search_space

Verify = Literal["chosen", "front", "all"]


@dataclass
class OptimizeResult:
    """Every candidate, the front, the choice and, unless it was a dry run, the rewritten model."""

    model_name: str
    input_size: tuple[int, int]
    objective: Objective
    budget: Budget
    space: tuple[StrategyChoices, ...]
    candidates: tuple[Candidate, ...]
    front: tuple[Candidate, ...]
    choice: Choice
    rewrite: Result | None
    seconds: float
    notes: tuple[str, ...] = ()
    num_classes: int | None = None  # the head's classes, recorded in the recipe
    alternative: Choice | None = None  # the choice the other preference (cost or fit first) makes

    @property
    def choices(self) -> dict[Prefer, Choice]:
        """The cost-first and the fit-first choice (the one made, and the other)."""
        both = {self.choice.prefer: self.choice}
        if self.alternative is not None:
            both[self.alternative.prefer] = self.alternative
        return both

    @property
    def chosen(self) -> Candidate | None:
        return self.choice.chosen

    @property
    def baseline(self) -> Candidate:
        return self.candidates[0]

    @property
    def recipe(self) -> Recipe | None:
        """The chosen candidate's recipe (None when nothing met the budget)."""
        if self.chosen is None:
            return None
        return Recipe(self.chosen.steps, self.input_size, self.num_classes, source="rewriter optimize")

    @property
    def model(self) -> nn.Module | None:
        """The rewritten model (None for a dry run or when nothing met the budget)."""
        return None if self.rewrite is None else self.rewrite.model

    @property
    def exit_code(self) -> int:
        """0: a choice was made; 3: nothing met the budget (``rewriter optimize`` exits with it)."""
        return 3 if self.choice.status == "over-budget" else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "input_size": list(self.input_size),
            "objective": self.objective,
            "budget": self.budget.to_json(),
            "flop_convention": FLOP_CONVENTION,
            "border_rule": "input",
            "search_space": [c.to_json() for c in self.space],
            "choice": self.choice.to_json(),
            "choices": {
                prefer: None if c.chosen is None else c.chosen.index
                for prefer, c in sorted(self.choices.items())
            },
            "chosen": None if self.chosen is None else self.chosen.to_json(),
            "recipe": None if self.recipe is None else self.recipe.to_dict(),
            "front": [c.index for c in self.front],
            "candidates": [c.to_json() for c in self.candidates],
            "report": None if self.rewrite is None else self.rewrite.report.to_json(),
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


def _check_limits(limits: Mapping[str, float | str | Ratio | None]) -> None:
    """Refuse a bad limit before any work (``Budget.of`` makes the ratios absolute once the baseline is
    measured)."""
    for flag, value in limits.items():
        if value is not None:
            parse_limit(value, flag)


def optimize(
    model: nn.Module | str,
    *,
    input_size: int | Sequence[int],
    objective: Objective = "flops",
    prefer: Prefer = "cost",
    max_flops: float | str | Ratio | None = None,
    max_params: float | str | Ratio | None = None,
    max_latency_ms: float | str | Ratio | None = None,
    latency: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    search: Values | None = None,
    width_factors: Sequence[float] = (),
    max_steps: int | None = None,
    max_candidates: int = 20_000,
    num_classes: int | None = None,
    in_channels: int = 3,
    leaf_modules: Sequence[type | str] = (),
    pretrained: bool = False,
    verify: Verify = "chosen",
    data: Any = None,
    dry_run: bool = False,
    name: str | None = None,
    progress: Callable[[Candidate], None] | None = None,
) -> OptimizeResult:
    """Search the compositions of the registered strategies for ``model`` at ``input_size``, choose one by
    the papers' heuristic within the budget, and rewrite the model with it.

    By default (``prefer="cost"``) the choice is never more expensive than the baseline in the objective:
    the fewest unproductive layers, then the lowest cost, the receptive-field fit breaking ties.
    ``prefer="fit"`` puts the fit before the cost and lifts the baseline's cost as a limit: it buys accuracy
    with compute (after dissertation D2). ``rewriter.optimize.choice`` gives the order in full.

    Args:
        model: the baseline (never modified), or a name ``rewriter.load_model`` knows.
        objective: the cost the front and the choice use: ``"flops"``, ``"params"`` or ``"latency"``.
        prefer: ``"cost"`` (default) or ``"fit"``: which comes first after the unproductive layers.
        max_flops, max_params, max_latency_ms: the budget; a candidate above any limit is not chosen. Each
            is a number (``1.5e9``, ``"1.5G"``) or a multiple of the baseline's cost (``"0.5x"``, ``Ratio``).
        latency: time every candidate on the CPU (implied by the latency objective or budget).
        include, exclude, search: what the search space holds (``rewriter.optimize.search_space``).
        width_factors: widths to try with each strategy that scales widths (it declares
            ``Strategy.width_scaling``, as ``scale-width`` does; the last step of a composition).
        max_steps: compose at most this many strategies (default: all of them, each at most once).
        max_candidates: refuse a search space larger than this.
        verify: which candidates are rewritten for real, every invariant checked on the weights: the chosen
            one (default), the front, or all of them (slow).
        data: a ``rewriter.lab.DataSource``: with a trained baseline (``pretrained``) and no
            ``width_factors``, the width factor a width-scaling strategy measures on it (``scale-width``: from
            the baseline's saturation, dissertation 11.3) is searched (depth first, then width: the factor is
            measured once, on the baseline, and tried after every depth change).
        dry_run: search and choose, but rewrite nothing.

    Raises:
        OptimizeError: a bad option or an empty or oversized search space.
        RecipeError: an unknown strategy or parameter in ``include``/``exclude``/``search``.

    The package's docstring (``rewriter.optimize``) has a runnable example.
    """
    start = time.perf_counter()
    if objective not in OBJECTIVES:
        raise OptimizeError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if verify not in ("chosen", "front", "all"):
        raise OptimizeError(f"verify must be chosen, front or all, got {verify!r}")
    if prefer not in PREFERENCES:
        raise OptimizeError(f"prefer must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
    limits = {"max_flops": max_flops, "max_params": max_params, "max_latency_ms": max_latency_ms}
    _check_limits(limits)
    if isinstance(model, str):
        name = name or model
        model, _ = load_model(model, num_classes=num_classes)
    size = parse_size(input_size)
    timed = latency or objective == "latency" or max_latency_ms is not None
    leaf_classes = resolve_leaf_classes(model, leaf_modules)
    analysis, figures = measure_candidate(
        meta_copy(model), size, in_channels=in_channels, leaf_classes=leaf_classes, latency=timed
    )
    classes = num_classes or output_classes(analysis)
    if classes is None:
        raise OptimizeError(
            "the model does not return [batch, classes]; give num_classes", param="num_classes"
        )
    budget = Budget.of(figures, **limits)
    scalers = declarations("width_scaling")
    if width_factors and not scalers:
        raise SearchValueError(
            f"width factors {list(width_factors)} given, but no registered strategy scales widths"
        )
    widths, notes = {name: tuple(width_factors) for name in scalers}, ()
    if data is not None and not width_factors:
        context = Context.of(
            analysis, num_classes=classes, in_channels=in_channels, leaf_classes=leaf_classes,
            pretrained=pretrained, data=data,
        )  # fmt: skip
        widths, notes = _widths_from_data(model, context, scalers, exclude)
    space = search_space(include=include, exclude=exclude, values=_with_widths(search, widths, scalers))
    total = composition_count(space, max_steps)
    if total > max_candidates:
        raise OptimizeError(
            f"the search space holds {total} compositions, more than max_candidates={max_candidates}; narrow it "
            "(`exclude`, `search` STRATEGY.PARAM=..., `max_steps`) or raise `max_candidates`",
            param=("max_candidates", "exclude", "search", "max_steps"),
        )
    settings = SearchSettings(size, in_channels, leaf_classes, pretrained, timed, max_steps, progress)
    candidates = run_search(model, (analysis, figures), space, settings, classes)
    rewriting = _Rewriter(model, size, classes, in_channels, leaf_classes, pretrained, timed, name)
    goal = _Goal(objective, budget, prefer)
    candidates, choice, result = _choose_verified(candidates, goal, verify, rewriting, dry_run)
    other = choose(
        candidates, objective=objective, budget=budget, prefer="fit" if prefer == "cost" else "cost"
    )
    return OptimizeResult(
        name or type(model).__name__, size, objective, budget, space, tuple(candidates),
        tuple(pareto_front(candidates, objective)), choice, result, time.perf_counter() - start, notes,
        classes, other,
    )  # fmt: skip


def _widths_from_data(
    model: nn.Module, context: Context, scalers: Mapping[str, WidthScaling], exclude: Sequence[str]
) -> tuple[dict[str, tuple[float, ...]], tuple[str, ...]]:
    """The width factor each strategy of ``scalers`` not excluded that measures one
    (``WidthScaling.measured_from``) measures on the baseline and ``context.data``, by strategy name, and the
    notes that say so (for an untrained baseline none: what it measures says nothing about the width it needs)."""
    measuring = {name: scaling for name, scaling in scalers.items() if scaling.measured_from}
    if not measuring:
        return {}, ("width not searched: no registered strategy measures a width factor",)
    widths, notes = {}, []
    for name, scaling in measuring.items():
        if name in exclude:
            continue
        if not context.pretrained:
            notes.append(
                f"width not searched: {scaling.measured_from} needs a trained baseline (give its `weights`, "
                "or `width_factors`)"
            )
            continue
        plan = get_strategy(name)().plan(model, context)
        factor = plan.params.get(scaling.param)
        if factor is not None:
            widths[name] = (factor,)
        notes.append(
            f"width factor {factor} from the baseline's {scaling.measured_from}: {' '.join(plan.notes[:1])}"
        )
    return widths, tuple(notes)


def _with_widths(
    search: Values | None, widths: Mapping[str, Sequence[float]], scalers: Mapping[str, WidthScaling]
) -> dict[str, Mapping[str, Sequence[Any]]]:
    """``search`` with the width factors to try set as the values of each width-scaling strategy's factor."""
    values = {k: dict(v) for k, v in (search or {}).items()}
    for name, factors in widths.items():
        if factors:
            values.setdefault(name, {})[scalers[name].param] = tuple(factors)
    return values


@dataclass(frozen=True)
class _Rewriter:
    """Rewrites a candidate for real with ``rewriter.rewrite`` (every invariant, on the weights)."""

    model: nn.Module
    size: tuple[int, int]
    classes: int
    in_channels: int
    leaf_classes: tuple[type, ...]
    pretrained: bool
    latency: bool
    name: str | None

    def __call__(self, candidate: Candidate, *, measure: bool) -> Result:
        recipe = Recipe(candidate.steps, self.size, self.classes, source="rewriter optimize")
        return rewrite(
            self.model, recipe, in_channels=self.in_channels, leaf_modules=self.leaf_classes,
            pretrained=self.pretrained, name=self.name, measure_cost=measure, latency=self.latency and measure,
        )  # fmt: skip


def _disagreement(candidate: Candidate, result: Result) -> str | None:
    """Where the rewritten model's measured figures differ from the candidate's evaluation (None: nowhere)."""
    row, f = result.report.rows[-1], candidate.figures
    pairs = {
        "params": (row.params, f.params),
        "FLOPs": (row.flops, f.flops),
        "unproductive layers": (row.unproductive, f.unproductive),
        "b_min": (row.border_layer_min, f.border_layer_min),
    }
    wrong = [
        f"{what} {got} (evaluated {expected})" for what, (got, expected) in pairs.items() if got != expected
    ]
    return "; ".join(wrong) or None


@dataclass(frozen=True)
class _Goal:
    """What the choice is made for: the objective, the budget and the preference."""

    objective: Objective
    budget: Budget
    prefer: Prefer

    def choose(self, candidates: Sequence[Candidate]) -> Choice:
        return choose(candidates, objective=self.objective, budget=self.budget, prefer=self.prefer)


def _choose_verified(candidates, goal: _Goal, verify: Verify, rewriting: _Rewriter, dry_run: bool):
    """Choose, rewrite what ``verify`` asks for (the chosen one always, measured, unless a dry run), drop
    what fails and choose again, until the choice holds."""
    candidates = list(candidates)
    results: dict[int, Result] = {}
    objective = goal.objective
    while True:
        choice = goal.choose(candidates)
        if dry_run:
            return candidates, choice, None
        targets = [] if choice.chosen is None else [choice.chosen]
        if verify == "front":
            targets += pareto_front(candidates, objective)
        elif verify == "all":
            targets += [c for c in candidates if c.ok]
        failed = False
        for target in {t.index: t for t in targets}.values():
            chosen = target is choice.chosen
            if target.verified and (not chosen or results[target.index].report.rows):
                continue
            try:
                result = rewriting(target, measure=chosen)
                problem = _disagreement(target, result) if chosen else None
            except RewriterError as err:
                problem = one_line(err)
            if problem is None:
                candidates[target.index] = dataclasses.replace(target, verified=True)
                results[target.index] = result
            else:
                candidates[target.index] = dataclasses.replace(target, status="dropped", reason=problem)
                failed = True
        if not failed:
            final = goal.choose(candidates)
            return candidates, final, None if final.chosen is None else results[final.chosen.index]
