"""The strategy registry: strategies register under one name each, and are found through the
``rewriter.strategies`` entry-point group, so ``rewriter`` itself never imports ``strategies``:

    [project.entry-points."rewriter.strategies"]
    my-rewrite = "mypkg.rewrites:MyRewrite"
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging

from .._errors import RecipeError, close_matches

ENTRY_POINT_GROUP = "rewriter.strategies"
logger = logging.getLogger(__name__)

StrategyClass = type  # a subclass of rewriter.engine.Strategy (not imported: the registry is below it)
_REGISTRY: dict[str, StrategyClass] = {}
_ENTRY_POINTS_LOADED = False


def register_strategy(cls: StrategyClass) -> StrategyClass:
    """Register a strategy class under ``cls.name`` (for code that does not use the entry-point group)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"strategy {cls.__qualname__} must be a dataclass whose fields are its parameters")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"two strategies are named '{cls.name}': {existing.__qualname__} and {cls.__qualname__}"
        )
    _REGISTRY[cls.name] = cls
    return cls


_BROKEN: dict[str, str] = {}  # entry points that failed to load, with the reason


def _load_entry_points() -> None:
    """Load each entry point once; a broken third-party one is remembered, not fatal to the others."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
            if getattr(cls, "name", None) != entry.name:
                raise ValueError(f"it loads {cls!r}, whose name is not '{entry.name}'")
            register_strategy(cls)
        except Exception as err:
            _BROKEN[entry.name] = f"{entry.value}: {type(err).__name__}: {err}"
            logger.warning("strategy entry point '%s' does not load (%s)", entry.name, _BROKEN[entry.name])


def list_strategies() -> list[str]:
    """Names of all registered strategies, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_strategy(name: str) -> StrategyClass:
    """The strategy class registered as ``name``.

    Raises:
        RecipeError: no strategy has that name; the message lists close matches.
    """
    _load_entry_points()
    if name in _BROKEN:
        raise RecipeError(f"strategy '{name}' is installed but does not load: {_BROKEN[name]}")
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = close_matches(name, _REGISTRY) or f"; known strategies: {', '.join(sorted(_REGISTRY))}"
        raise RecipeError(f"unknown strategy '{name}'{hint}") from None
