"""``rewrite``: apply a recipe step by step to copies of a model, check the invariants, measure each result.

The one place where plans are applied: for every step the pipeline analyzes the current model, asks the
strategy for a plan, deep-copies the model, lets the strategy change the copy, and verifies the result
(``rewriter.verify``). A failing step stops the run with the reason. The input model is never modified.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .._errors import RewriteError
from ..analysis.analyzer import Analysis, analyze, as_size, resolve_leaf_classes
from .plan import Plan
from .recipe import Recipe, Step
from .report import Measurement, Report, measure
from .strategy import Context
from .verify import check_step, check_unchanged, snapshot


@dataclass
class Result:
    """The rewritten model, the plan of every step, the before/after report, and the resolved recipe."""

    model: nn.Module
    plans: tuple[Plan, ...]
    report: Report
    recipe: Recipe


RecipeLike = Recipe | Mapping[str, Any] | Sequence[Any] | str | os.PathLike


def as_recipe(recipe: RecipeLike) -> Recipe:
    """A Recipe from a Recipe, a YAML path, a dict (the YAML's content) or a list of steps."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, os.PathLike)):
        return Recipe.from_yaml(recipe)
    return Recipe.from_dict(recipe)


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
        data: a ``rewriter.data.DataSource`` for strategies that measure or train the model.
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
        input_size=as_size(input_size) if input_size is not None else None, num_classes=num_classes
    )
    if recipe.input_size is None:
        raise RewriteError("no input size: give input_size (--input-size) or put input_size in the recipe")
    size = recipe.input_size
    strategies = recipe.strategies()
    say = progress or (lambda _message: None)
    label = name or type(model).__name__
    leaf_classes = resolve_leaf_classes(model, leaf_modules)
    before = snapshot(model)

    def assess(current: nn.Module, row_label: str) -> tuple[Measurement | None, Analysis]:
        if measure_cost:
            say(f"measuring {row_label}")
            return measure(
                current,
                size,
                label=row_label,
                in_channels=in_channels,
                leaf_modules=leaf_classes,
                latency=latency,
            )
        return None, analyze(current, size, in_channels=in_channels, leaf_modules=leaf_classes, flops=False)

    row, analysis = assess(model, "baseline")
    rows = [row] if row else []
    classes = recipe.num_classes or _output_classes(analysis)
    current, plans, measured = model, [], []
    for i, strategy in enumerate(strategies):
        where = f"steps[{i}] {strategy.name}"
        context = Context(
            input_size=size, num_classes=classes, analysis=analysis, in_channels=in_channels,
            pretrained=pretrained, leaf_classes=leaf_classes, data=data, replay=replay,
        )  # fmt: skip
        say(f"{where}: planning")
        try:
            plan = strategy.plan(current, context)
            new = current
            if not plan.is_noop:
                work = copy.deepcopy(current)
                new = strategy.apply(work, plan, context)
                new.train(current.training)
                say(f"{where}: verifying")
                check_step(
                    current, new, plan, input_size=size, in_channels=in_channels, leaf_classes=leaf_classes
                )
        except RewriteError as err:
            raise RewriteError(f"{where}: {err}; nothing was written") from err
        plans.append(plan)
        measured.extend(context.notes)
        row, analysis = assess(new, f"{i + 1}. {strategy.name}")
        rows.extend([row] if row else [])
        current = new
    check_unchanged(model, before)
    if current is model:  # every step was a no-op: still return a copy, never the caller's object
        current = copy.deepcopy(model)
    resolved = Recipe(
        tuple(Step(plan.strategy, plan.params) for plan in plans), size, recipe.num_classes, recipe.source
    )
    notes = (*(note for plan in plans for note in plan.notes), *measured)
    report = Report(label, size, tuple(rows), resolved.to_dict(), tuple(p.to_dict() for p in plans), notes)
    return Result(current, tuple(plans), report, resolved)
