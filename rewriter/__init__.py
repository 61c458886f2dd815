"""rewriter: receptive-field analysis and training-free rewrites of convolutional networks.

Example:
    >>> import rewriter
    >>> model, _ = rewriter.load_model("cifar_vgg16")
    >>> rewriter.analyze(model, input_size=32).border_layer_min
    'features.23'
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._errors import (
    AnalysisError,
    InputSizeError,
    ModelFileError,
    ModelNotFoundError,
    RecipeError,
    RewriteError,
    RewriterError,
    TraceError,
    UntrustedPickleError,
    WeightsError,
)
from .analysis.analyzer import Analysis, Layer, analyze
from .analysis.cost import count_flops, count_params
from .analysis.graph import LayerGraph, LayerNode, build_layer_graph
from .analysis.rules import register_function_rule, register_module_rule
from .engine.modelfile import save
from .engine.pipeline import Result, rewrite
from .engine.recipe import Recipe
from .engine.report import Report
from .engine.strategy import Context, Edit, Plan, Strategy, get_strategy, list_strategies, register_strategy
from .models.sources import ModelSpec, available_models, load_model, load_weights


def load(path: str, *, trust_pickle: bool = False):
    """Load a model file written by ``rewriter rewrite -o`` (``rewriter.modelfile.load`` keeps the metadata).

    The base model is rebuilt from its recorded spec, the recipe replayed, and the weights read with
    ``weights_only=True``; no pickle is trusted unless the base itself was a pickled file.
    """
    from .engine.modelfile import load as load_file

    return load_file(path, trust_pickle=trust_pickle).model


__all__ = [
    "Analysis",
    "AnalysisError",
    "Context",
    "Edit",
    "InputSizeError",
    "Layer",
    "LayerGraph",
    "LayerNode",
    "ModelFileError",
    "ModelNotFoundError",
    "ModelSpec",
    "Plan",
    "Recipe",
    "RecipeError",
    "Report",
    "Result",
    "RewriteError",
    "RewriterError",
    "Strategy",
    "TraceError",
    "UntrustedPickleError",
    "WeightsError",
    "__version__",
    "analyze",
    "available_models",
    "build_layer_graph",
    "count_flops",
    "count_params",
    "get_strategy",
    "list_strategies",
    "load",
    "load_model",
    "load_weights",
    "register_function_rule",
    "register_module_rule",
    "register_strategy",
    "rewrite",
    "save",
]
