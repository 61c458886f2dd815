"""rewriter: receptive-field analysis and training-free rewrites of convolutional networks.

Example:
    >>> import rewriter
    >>> model, _ = rewriter.load_model("cifar_vgg16")
    >>> rewriter.analyze(model, input_size=32).border_layer_min
    'features.23'
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from ._errors import (
    AnalysisError,
    InputSizeError,
    InvalidFileError,
    ModelFileError,
    ModelNotFoundError,
    RecipeError,
    RewriteError,
    RewriterError,
    RewriterWarning,
    TraceError,
    UntrustedPickleError,
    UsageError,
    WeightsError,
)
from ._version import __version__

# The names below are imported when first used (PEP 562), so that ``import rewriter`` (and the console
# script's start) costs no torch import: an interrupt during start-up then reaches ``rewriter.cli.main``.
_LAZY = {
    **dict.fromkeys(
        ("Analysis", "Layer", "LayerGraph", "LayerNode", "TracedModel", "analyze", "build_layer_graph",
         "count_flops", "count_params", "register_function_rule", "register_layer", "register_module_rule",
         "trace_model"),
        ".analysis",
    ),
    **dict.fromkeys(
        ("Context", "Edit", "LoadedModel", "Plan", "Recipe", "Report", "Result", "Strategy", "get_strategy",
         "list_strategies", "load_model_file", "register_strategy", "rewrite", "save"),
        ".engine",
    ),
    **dict.fromkeys(("ModelSpec", "available_models", "load_model", "load_weights"), ".models"),
    **dict.fromkeys(("OptimizeResult", "sweep"), ".optimize"),
    # the errors of the upper packages, beside the others (importing them costs those packages' imports)
    "OptimizeError": ".optimize.errors", "DataError": ".lab.data", "TrainError": ".lab.train_records",
    "StudyError": ".lab.study.errors",
}  # fmt: skip
# a name the face gives a function of a subpackage: ``optimize`` is the subpackage's own name
_RENAMED = {"optimize_model": (".optimize", "optimize")}
# the subpackages, each imported when first used as an attribute (``rewriter.optimize.pareto_front``)
_SUBPACKAGES = ("analysis", "engine", "lab", "models", "optimize", "render")

if TYPE_CHECKING:
    from torch import nn

    from .analysis import (
        Analysis,
        Layer,
        LayerGraph,
        LayerNode,
        TracedModel,
        analyze,
        build_layer_graph,
        count_flops,
        count_params,
        register_function_rule,
        register_layer,
        register_module_rule,
        trace_model,
    )
    from .engine import (
        Context,
        Edit,
        LoadedModel,
        Plan,
        Recipe,
        Report,
        Result,
        Strategy,
        get_strategy,
        list_strategies,
        load_model_file,
        register_strategy,
        rewrite,
        save,
    )
    from .lab.data import DataError
    from .lab.study.errors import StudyError
    from .lab.train_records import TrainError
    from .models import ModelSpec, available_models, load_model, load_weights
    from .optimize import OptimizeResult, sweep
    from .optimize import optimize as optimize_model
    from .optimize.errors import OptimizeError


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)  # the import binds it in this module
    if name in _RENAMED:
        module, attribute = _RENAMED[name]
    elif name in _LAZY:
        module, attribute = _LAZY[name], name
    else:
        raise AttributeError(f"module 'rewriter' has no attribute '{name}'")
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load(path: str | os.PathLike, *, trust_pickle: bool = False) -> nn.Module:
    """The model in a model file written by ``rewriter rewrite -o`` (or ``train``, ``optimize``), ready for
    inference: in eval mode, as torch.hub and timm give pretrained models.

    The base model is rebuilt from its recorded spec, the recipe replayed, and the weights read with
    ``weights_only=True``; no pickle is trusted unless the base itself was a pickled file. The file's spec,
    recipe and input size come with ``load_model_file``; any model source with its spec, ``load_model``.
    """
    from .engine import load_model_file

    return load_model_file(path, trust_pickle=trust_pickle).model.eval()


__all__ = [
    "Analysis",
    "AnalysisError",
    "Context",
    "DataError",
    "Edit",
    "InputSizeError",
    "InvalidFileError",
    "Layer",
    "LayerGraph",
    "LayerNode",
    "LoadedModel",
    "ModelFileError",
    "ModelNotFoundError",
    "ModelSpec",
    "OptimizeError",
    "OptimizeResult",
    "Plan",
    "Recipe",
    "RecipeError",
    "Report",
    "Result",
    "RewriteError",
    "RewriterError",
    "RewriterWarning",
    "Strategy",
    "StudyError",
    "TraceError",
    "TracedModel",
    "TrainError",
    "UntrustedPickleError",
    "UsageError",
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
    "load_model_file",
    "load_weights",
    "optimize_model",
    "register_function_rule",
    "register_layer",
    "register_module_rule",
    "register_strategy",
    "rewrite",
    "save",
    "sweep",
    "trace_model",
]
