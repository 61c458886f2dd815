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
    ModelNotFoundError,
    RewriterError,
    TraceError,
    UntrustedPickleError,
    WeightsError,
)
from .analysis import Analysis, Layer, analyze
from .graph import LayerGraph, LayerNode, build_layer_graph
from .layers import register_function_rule, register_module_rule
from .metrics import count_flops, count_params
from .sources import ModelSpec, available_models, load_model, load_weights

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "AnalysisError",
    "InputSizeError",
    "Layer",
    "LayerGraph",
    "LayerNode",
    "ModelNotFoundError",
    "ModelSpec",
    "RewriterError",
    "TraceError",
    "UntrustedPickleError",
    "WeightsError",
    "__version__",
    "analyze",
    "available_models",
    "build_layer_graph",
    "count_flops",
    "count_params",
    "load_model",
    "load_weights",
    "register_function_rule",
    "register_module_rule",
]
