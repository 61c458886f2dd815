"""Where models come from and how their weights are read: torchvision names, the built-in zoo of the
papers' architectures, ``package.module:callable``, and files (a model file is rebuilt by the engine's
loader, which the table of file kinds names). Imports only ``rewriter.analysis`` and the foundation."""

from __future__ import annotations

from . import modelfile, zoo
from .blocks import FactorizedConv, GapLinearHead, RollingPointwise, Truncated, factorized_conv
from .modelfile import ModelFile
from .sources import (
    ModelSpec,
    NoNumClassesError,
    available_models,
    check_source,
    is_named_model,
    load_model,
    load_model_for_classes,
    parse_model_args,
    read_source,
    torchvision_models,
)
from .weights import load_weights, read_state_dict

__all__ = [
    "FactorizedConv",
    "GapLinearHead",
    "ModelFile",
    "ModelSpec",
    "NoNumClassesError",
    "RollingPointwise",
    "Truncated",
    "available_models",
    "check_source",
    "factorized_conv",
    "is_named_model",
    "load_model",
    "load_model_for_classes",
    "load_weights",
    "modelfile",
    "parse_model_args",
    "read_source",
    "read_state_dict",
    "torchvision_models",
    "zoo",
]
