"""``rewrite``: apply a recipe step by step to copies of a model, check the invariants, measure each result.

The one place where plans are applied: for every step the pipeline analyzes the current model, asks the
strategy for a plan, deep-copies the model, lets the strategy change the copy, and verifies the result
(``rewriter.engine.verify``). A failing step stops the run with the reason. The input model is never modified.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .._errors import RewriteError
from ..analysis.analyzer import Analysis, resolve_leaf_classes
from ..analysis.sizes import parse_size
from ..analysis.traced_model import analyze
from .plan import Plan
from .recipe import Recipe, Step
from .report import Measurement, Report, measure
from .strategy import Applied, Context, Strategy, apply_plan
from .verify import check_no_dead_modules, check_step, check_unchanged, idle_parameters, snapshot


@dataclass
class Result:
    """The rewritten model, the plan of every step, the before/after report, and the resolved recipe."""

    model: nn.Module
    plans: tuple[Plan, ...]
    report: Report
    recipe: Recipe


RecipeLike = Recipe | Mapping[str, Any] | Sequence[Any] | str | os.PathLike


def as_recipe(recipe: RecipeLike) -> Recipe:
    """A Recipe from a Recipe, a YAML path, a dict (the YAML's content) or a list of steps; no steps is the
    model unchanged."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, os.PathLike)):
        return Recipe.from_yaml(recipe, allow_empty=True)
    return Recipe.from_dict(recipe, allow_empty=True)


def _output_classes(analysis: Analysis) -> int:
    graph = analysis.graph
    shape = graph[graph.output_name].input_shape if graph is not None else None
    if not shape or len(shape) != 2:
        raise RewriteError(f"the model returns {shape}, not [batch, classes]; give num_classes explicitly")
    return shape[-1]


def rewrite(
    model: nn.Module,
    recipe: RecipeLike,
    *,
    input_size: int | Sequence[int] | None = None,
    num_classes: int | None = None,
    in_channels: int = 3,
    leaf_modules: Sequence[type | str] = (),
    pretrained: bool = False,
    data: Any = None,
    replay: bool = False,
    name: str | None = None,
    measure_cost: bool = True,
    latency: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Result:
    """Apply ``recipe`` to a copy of ``model``; ``input_size``/``num_classes`` override the recipe's.

    Args:
        model: the baseline; it is never modified.
        recipe: a ``Recipe``, a YAML path, the YAML's content as a dict, or a list of steps.
        pretrained: the baseline's weights are trained (a freshly attached head is then flagged as untrained).
        data: a ``rewriter.lab.DataSource`` for strategies that measure or train the model.
        replay: the model is being rebuilt to load saved weights into: strategies build, but do not train.
        measure_cost: measure params, FLOPs, b_min (and latency) of the baseline and after each step; off
            for a dry run.
        progress: called with a short status line before each stage.

    Raises:
        RecipeError: the recipe is malformed (with the location).
        RewriteError: a strategy does not apply, or its result breaks an invariant (with the reason).

    Example:
        >>> from rewriter.models.zoo import create_model
        >>> result = rewrite(create_model("cifar_vgg16"), {"steps": ["truncate"]}, input_size=32, latency=False)
        >>> result.plans[0].cut.at, result.model.head.fc
        ('features.22', Linear(in_features=256, out_features=10, bias=True))
    """
    recipe = as_recipe(recipe).with_overrides(
        input_size=parse_size(input_size) if input_size is not None else None, num_classes=num_classes
    )
    if recipe.input_size is None:
        raise RewriteError(
            "no input size: give `input_size` or put the input size in the recipe", param="input_size"
        )
    strategies = recipe.strategies()
    leaf_classes = resolve_leaf_classes(model, leaf_modules)
    say = progress or (lambda _message: None)
    assess = _Assessor(recipe.input_size, in_channels, leaf_classes, measure_cost, latency, say)
    before = snapshot(model)
    row, analysis = assess(model, "baseline")
    rows = [row] if row else []
    classes = recipe.num_classes or _output_classes(analysis)
    current, plans, measured = model, [], []
    for i, strategy in enumerate(strategies):
        context = Context.of(
            analysis, num_classes=classes, in_channels=in_channels, leaf_classes=leaf_classes,
            pretrained=pretrained, data=data, replay=replay, progress=say,
        )  # fmt: skip
        idle = idle_parameters(
            current, analysis.graph.module_use(), input_size=recipe.input_size, in_channels=in_channels
        )
        plan, applied = _step(
            strategy, current, context, f"steps[{i}] {strategy.name}", say, loud=measure_cost
        )
        current = applied.model
        plans.append(plan)
        measured.extend(applied.notes)
        row, analysis = assess(current, f"{i + 1}. {strategy.name}")
        if not plan.is_noop:  # invariant 5, on the trace the analysis of the new model made
            try:
                check_no_dead_modules(current, analysis.graph.module_use(), idle, plan, input_size=recipe.input_size,
                                      in_channels=in_channels)  # fmt: skip
            except RewriteError as err:
                raise RewriteError(f"steps[{i}] {strategy.name}: {err}; nothing was written") from err
        rows.extend([row] if row else [])
    check_unchanged(model, before)
    if current is model:  # every step was a no-op: still return a copy, never the caller's object
        current = copy.deepcopy(model)
    resolved = Recipe(tuple(Step(p.strategy, dict(p.params)) for p in plans), recipe.input_size,
                      recipe.num_classes, recipe.source)  # fmt: skip
    notes = (*(note for plan in plans for note in plan.notes), *measured)
    report = Report(name or type(model).__name__, recipe.input_size, tuple(rows), resolved.to_dict(),
                    tuple(p.to_dict() for p in plans), notes)  # fmt: skip
    return Result(current, tuple(plans), report, resolved)


def _step(
    strategy: Strategy,
    current: nn.Module,
    context: Context,
    where: str,
    say: Callable[[str], None],
    *,
    loud: bool,
) -> tuple[Plan, Applied]:
    """Plan one step; unless it is a no-op, apply it to a copy of ``current`` and verify the result (said
    only when ``loud``: a dry run verifies too, but only to plan the next step)."""
    say(f"{where}: planning")
    try:
        plan = strategy.plan(current, context)
        if plan.is_noop:
            return plan, Applied(current)
        applied = apply_plan(strategy, copy.deepcopy(current), plan, context)
        new = applied.model
        new.train(current.training)
        if loud:
            say(f"{where}: verifying")
        check_step(current, new, plan, input_size=context.input_size, in_channels=context.in_channels,
                   leaf_classes=context.leaf_classes)  # fmt: skip
    except RewriteError as err:
        raise RewriteError(f"{where}: {err}; nothing was written") from err
    return plan, applied


@dataclass(frozen=True)
class _Assessor:
    """Measures a model of the pipeline (params, FLOPs, b_min, latency) or, for a dry run, only analyses it."""

    size: tuple[int, int]
    in_channels: int
    leaf_classes: tuple[type, ...]
    measure_cost: bool
    latency: bool
    say: Callable[[str], None]

    def __call__(self, model: nn.Module, label: str) -> tuple[Measurement | None, Analysis]:
        if not self.measure_cost:
            return None, analyze(
                model, self.size, in_channels=self.in_channels, leaf_modules=self.leaf_classes, flops=False
            )
        self.say(f"measuring {label}")
        return measure(model, self.size, label=label, in_channels=self.in_channels,
                       leaf_modules=self.leaf_classes, latency=self.latency)  # fmt: skip
