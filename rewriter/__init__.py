"""rewriter: receptive-field analysis and training-free rewrites of convolutional networks.

Example:
    >>> import rewriter
    >>> model, _ = rewriter.load_model("cifar_vgg16")
    >>> rewriter.analyze(model, input_size=32).border_layer_min
    'features.23'
"""

from __future__ import annotations

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
from ._version import __version__
from .analysis import (
    Analysis,
    Layer,
    LayerGraph,
    LayerNode,
    analyze,
    build_layer_graph,
    count_flops,
    count_params,
    register_function_rule,
    register_module_rule,
)
from .engine import (
    Context,
    Edit,
    Plan,
    Recipe,
    Report,
    Result,
    Strategy,
    get_strategy,
    list_strategies,
    register_strategy,
    rewrite,
    save,
)
from .engine import load as _load_file
from .models import ModelSpec, available_models, load_model, load_weights


def load(path: str, *, trust_pickle: bool = False):
    """Load a model file written by ``rewriter rewrite -o`` (``rewriter.engine.load`` keeps the metadata).

    The base model is rebuilt from its recorded spec, the recipe replayed, and the weights read with
    ``weights_only=True``; no pickle is trusted unless the base itself was a pickled file.
    """
    return _load_file(path, trust_pickle=trust_pickle).model


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
