"""The rewrite engine: strategies and their registry, recipes, the pipeline that plans, applies and
verifies each step on a copy, model surgery, before/after reports, and saving/loading rewritten models.
Imports ``rewriter.analysis``, ``rewriter.models`` and the foundation, never the layers above."""

from __future__ import annotations

from .pipeline import Result, as_recipe, rewrite
from .plan import Cut, Edit, Moved, Plan
from .recipe import Recipe, Step
from .registry import get_strategy, list_strategies, register_strategy
from .report import Measurement, Report, measure, measure_latency
from .saving import LoadedModel, load, save
from .strategy import Context, Parameter, Strategy, param, parameters
from .surgery import extract_prefix, fresh_copy, set_submodule, training_dependent_classes

__all__ = [
    "Context",
    "Cut",
    "Edit",
    "LoadedModel",
    "Measurement",
    "Moved",
    "Parameter",
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
    "parameters",
    "register_strategy",
    "rewrite",
    "save",
    "set_submodule",
    "training_dependent_classes",
]
