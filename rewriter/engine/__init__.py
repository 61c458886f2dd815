"""The rewrite engine: strategies and their registry, recipes, the pipeline that plans, applies and
verifies each step on a copy, model surgery, before/after reports, and saving/loading rewritten models.
Imports ``rewriter.analysis``, ``rewriter.models`` and the foundation, never the layers above."""

from __future__ import annotations

from .pipeline import Result, as_recipe, rewrite
from .recipe import Recipe, Step
from .report import Measurement, Report, measure, measure_latency
from .saving import LoadedModel, load, save
from .strategy import (
    Context,
    Edit,
    Plan,
    Strategy,
    get_strategy,
    list_strategies,
    param,
    register_strategy,
)
from .surgery import extract_prefix, fresh_copy, set_submodule, training_dependent_classes

__all__ = [
    "Context",
    "Edit",
    "LoadedModel",
    "Measurement",
    "Plan",
    "Recipe",
    "Report",
    "Result",
    "Step",
    "Strategy",
    "as_recipe",
    "extract_prefix",
    "fresh_copy",
    "get_strategy",
    "list_strategies",
    "load",
    "measure",
    "measure_latency",
    "param",
    "register_strategy",
    "rewrite",
    "save",
    "set_submodule",
    "training_dependent_classes",
]
