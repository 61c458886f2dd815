"""The search space: which strategies take part and which parameter values each one tries, read from the
strategies' own declarations (``rewriter.engine.param(..., search=...)``), never from a list kept here.

The rules, in order:

1. A registered strategy takes part when at least one of its parameters declares ``search`` values, when
   the caller includes it by name, or when the caller gives values for one of its parameters; an excluded
   strategy never does. A third-party strategy found through the ``rewriter.strategies`` entry-point group
   takes part by the same rules.
2. The values a parameter tries: the caller's, else its declared ``search`` values, else the choices of a
   ``Literal`` annotation, else its default only (bools included: trying both sides of a flag is a choice the
   strategy declares).
3. A strategy's configurations are every combination of those values (its other parameters keep their
   defaults and are left out of the recipe); each is validated like a recipe step.
4. Compositions apply the strategies in ``Strategy.search_order`` (then by name), each at most once.
"""

from __future__ import annotations

import itertools
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import RecipeError, close_matches
from ..engine.registry import get_strategy, list_strategies
from ..engine.strategy import build_strategy, parameters
from .errors import SearchValueError

Values = Mapping[str, Mapping[str, Sequence[Any]]]  # {strategy: {parameter: values}}
MAX_CONFIGS = 10_000  # configurations of one strategy (each is validated, then searched)


@dataclass(frozen=True)
class StrategyChoices:
    """One strategy of the search: its place in a composition and the configurations it tries."""

    name: str
    order: int
    configs: tuple[dict[str, Any], ...]
    values: dict[str, tuple[Any, ...]]  # the values each searched parameter tries

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.name,
            "order": self.order,
            "values": {k: list(v) for k, v in self.values.items()},
            "configurations": len(self.configs),
        }


def _check_names(names: Sequence[str], known: list[str], what: str) -> None:
    for name in names:
        if name not in known:
            hint = close_matches(name, known) or f"; known strategies: {', '.join(known)}"
            raise RecipeError(f"{what} '{name}': no such strategy{hint}", param=what)


def _values(name: str, param, given: Mapping[str, Sequence[Any]]) -> tuple[Any, ...]:
    if param.name in given:
        return tuple(given[param.name])
    if param.search:
        return tuple(param.search)
    if typing.get_origin(param.annotation) is Literal:
        return typing.get_args(param.annotation)
    if param.required:
        raise RecipeError(
            f"strategy '{name}' needs a value for '{param.name}' to take part in the search; give values "
            f"for {name}.{param.name} in `search`",
            param="search",
        )
    return (param.default,)


def _choices(name: str, given: Mapping[str, Sequence[Any]]) -> StrategyChoices:
    cls = get_strategy(name)
    params = parameters(cls)
    unknown = set(given) - {p.name for p in params}
    for key in sorted(unknown):
        hint = (
            close_matches(key, [p.name for p in params])
            or f"; {name} takes {', '.join(p.name for p in params)}"
        )
        raise RecipeError(f"search {name}.{key}: unknown parameter{hint}", param="search")
    values = {p.name: _values(name, p, given) for p in params}
    searched = {k: v for k, v in values.items() if len(v) > 1 or k in given or _declared(params, k)}
    count = math.prod(len(v) for v in searched.values())
    if count > MAX_CONFIGS:  # counted before any is built
        raise RecipeError(
            f"search {name}: {count} combinations of {', '.join(searched)}, more than {MAX_CONFIGS}; give "
            "fewer values",
            param="search",
        )
    configs = []
    for combo in itertools.product(*searched.values()):
        config = dict(zip(searched, combo, strict=True))
        build_strategy(name, config, where=f"the search of {name}")  # validates types and ranges
        configs.append(config)
    return StrategyChoices(name, int(getattr(cls, "search_order", 45)), tuple(configs), searched)


def _declared(params, key: str) -> bool:
    return any(p.name == key and p.search for p in params)


def search_space(
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    values: Values | None = None,
) -> tuple[StrategyChoices, ...]:
    """The strategies that take part and their configurations, in the order compositions apply them.

    Args:
        include: strategies to search although they declare no search values (their defaults, and every
            choice of a ``Literal`` parameter).
        exclude: strategies never to search.
        values: the values to try per strategy and parameter, over the declared ones.

    Raises:
        RecipeError: an unknown strategy or parameter, or a value its declaration refuses.

    Example:
        >>> [c.name for c in search_space()][:2]
        ['remove-stem-downsampling', 'reposition-downsampling']
    """
    try:
        return _search_space(include, exclude, dict(values or {}))
    except RecipeError as err:
        raise SearchValueError(str(err), param=err.param) from err


def _search_space(
    include: Sequence[str], exclude: Sequence[str], values: dict[str, Mapping[str, Sequence[Any]]]
) -> tuple[StrategyChoices, ...]:
    known = list_strategies()
    _check_names(include, known, "include")
    _check_names(exclude, known, "exclude")
    _check_names(list(values), known, "search")
    space = []
    for name in known:
        if name in exclude:
            continue
        declared = any(p.search for p in parameters(get_strategy(name)))
        if declared or name in include or name in values:
            space.append(_choices(name, values.get(name, {})))
    return tuple(sorted(space, key=lambda c: (c.order, c.name)))


def composition_count(space: Sequence[StrategyChoices], max_steps: int | None = None) -> int:
    """How many compositions (the unchanged model included) the space holds, at most ``max_steps`` long."""
    sizes = [len(c.configs) for c in space]
    limit = len(sizes) if max_steps is None else max_steps
    total = 0
    for steps in range(min(limit, len(sizes)) + 1):
        total += sum(math.prod(combo) for combo in itertools.combinations(sizes, steps))
    return total
