"""Recipes: a YAML list of strategy steps with their parameters, validated with the location of each error.

    input_size: 32          # optional; a command-line --input-size overrides it
    num_classes: 10         # optional; --num-classes overrides it
    steps:
      - remove-stem-downsampling: {}
      - truncate: {rule: output, keep_blocks: 1}

Errors name the file and the place: ``trim.yaml steps[1].truncate.rul: unknown parameter; did you mean
'rule'?``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import InputSizeError, RecipeError, close_matches
from .._files import read_text_input
from .._untrusted import load_yaml, plain_fault, shown
from ..analysis.sizes import check_classes, parse_size
from .strategy import Strategy, build_strategy

TOP_LEVEL_KEYS = ("input_size", "num_classes", "steps")
MAX_STEPS = 64  # steps in one recipe (each is a rewrite and a verification: seconds)


@dataclass(frozen=True)
class Step:
    """One step: a strategy name and its parameters (as written, before validation)."""

    strategy: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """Steps applied in order, each on the model the previous step produced."""

    steps: tuple[Step, ...]
    input_size: tuple[int, int] | None = None
    num_classes: int | None = None
    source: str = "recipe"

    @classmethod
    def from_strategies(cls, names: Sequence[str], *, source: str = "the strategy list") -> Recipe:
        return cls(tuple(Step(name) for name in names), source=source)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, *, allow_empty: bool = False) -> Recipe:
        """Read a recipe file as bounded YAML (``steps: []``, the unchanged model, with ``allow_empty``).

        Raises:
            RecipeError: the file is missing, not YAML, or not a valid recipe.
        """
        source = Path(path).name
        text = read_text_input(path, what="recipe", error=RecipeError)
        data = load_yaml(text, where=source, error=RecipeError)
        return cls.from_dict(data, source=source, allow_empty=allow_empty)

    @classmethod
    def empty(cls, input_size: tuple[int, int] | None = None) -> Recipe:
        """No steps: how a trained (not rewritten) model is recorded in a model file."""
        return cls((), input_size)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "recipe", allow_empty: bool = False) -> Recipe:
        fault = plain_fault(data)
        if fault:
            raise RecipeError(f"{source}: the recipe {fault}")
        if isinstance(data, list):
            data = {"steps": data}
        if not isinstance(data, Mapping):
            raise RecipeError(f"{source}: expected a mapping with 'steps', got {type(data).__name__}")
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                hint = (
                    close_matches(str(key), TOP_LEVEL_KEYS) or f"; a recipe has {', '.join(TOP_LEVEL_KEYS)}"
                )
                raise RecipeError(f"{source}: unknown key '{key}'{hint}")
        if "steps" not in data:
            raise RecipeError(f"{source}: missing 'steps' (a list of '- strategy-name: {{parameters}}')")
        steps = data["steps"]
        if not isinstance(steps, list) or (not steps and not allow_empty):
            raise RecipeError(f"{source} steps: expected a non-empty list of strategies, got {shown(steps)}")
        if len(steps) > MAX_STEPS:
            raise RecipeError(f"{source} steps: {len(steps)} steps, more than the bound of {MAX_STEPS}")
        return cls(
            steps=tuple(_parse_step(item, f"{source} steps[{i}]") for i, item in enumerate(steps)),
            input_size=_parse_size(data.get("input_size"), f"{source} input_size"),
            num_classes=_parse_classes(data.get("num_classes"), f"{source} num_classes"),
            source=source,
        )

    def strategies(self) -> list[Strategy]:
        """Validate every step and build its strategy (errors carry the step's location)."""
        return [
            build_strategy(step.strategy, step.params, where=f"{self.source} steps[{i}].{step.strategy}")
            for i, step in enumerate(self.steps)
        ]

    def with_overrides(
        self,
        *,
        input_size: tuple[int, int] | None = None,
        num_classes: int | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Recipe:
        """Command-line values win over the file: sizes, classes, and ``{strategy: {param: value}}``."""
        used = {s.strategy for s in self.steps}
        for name in params or {}:
            if name not in used:
                hint = close_matches(name, used) or f"; the steps are {', '.join(sorted(used))}"
                raise RecipeError(
                    f"a parameter is set for '{name}', which no step of {self.source} uses{hint}"
                )
        steps = tuple(
            Step(s.strategy, {**s.params, **(params or {}).get(s.strategy, {})}) for s in self.steps
        )
        return Recipe(
            steps=steps,
            input_size=input_size or self.input_size,
            num_classes=num_classes if num_classes is not None else self.num_classes,
            source=self.source,
        )

    def resolved(self) -> Recipe:
        """The recipe with every parameter written out, defaults included (what the report records)."""
        steps = tuple(Step(s.name, s.params()) for s in self.strategies())
        return Recipe(steps, self.input_size, self.num_classes, self.source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size) if self.input_size else None,
            "num_classes": self.num_classes,
            "steps": [{s.strategy: dict(s.params)} for s in self.steps],
        }

    def text(self) -> str:
        """The steps on one line, ``truncate + scale-width(factor=0.5)``; ``baseline`` for no steps."""
        steps = [
            s.strategy + (f"({', '.join(f'{k}={v}' for k, v in s.params.items())})" if s.params else "")
            for s in self.steps
        ]
        return " + ".join(steps) or "baseline"


def _parse_step(item: Any, where: str) -> Step:
    if isinstance(item, str):
        return Step(item)
    if not isinstance(item, Mapping) or len(item) != 1:
        raise RecipeError(f"{where}: expected '- strategy-name: {{parameters}}', got {shown(item)}")
    ((name, params),) = item.items()
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise RecipeError(f"{where}.{name}: parameters must be a mapping, got {shown(params)}")
    return Step(str(name), dict(params))


def _parse_size(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        return parse_size(value, where)
    except InputSizeError as err:
        raise RecipeError(str(err), param=err.param) from None


def _parse_classes(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        return check_classes(value, where)
    except InputSizeError as err:
        raise RecipeError(str(err), param=err.param) from None
