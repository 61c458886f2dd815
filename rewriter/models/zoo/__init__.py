"""Built-in architectures from the papers, so that their results can be reproduced by name."""

from . import mobilenet, mpnet, relevance, resnet, vgg  # noqa: F401  (importing registers the models)
from ._registry import create_model, get_model_doc, is_model, list_models, register_model

__all__ = ["create_model", "get_model_doc", "is_model", "list_models", "register_model"]
