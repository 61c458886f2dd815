"""The registry of built-in architectures: ``@register_model`` fills it, ``create_model`` reads it."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

from ..._errors import ModelNotFoundError, close_matches

ModelFactory = Callable[..., nn.Module]

_MODELS: dict[str, ModelFactory] = {}


def register_model(fn: ModelFactory) -> ModelFactory:
    """Register ``fn`` under its function name as a built-in architecture."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"a built-in model named '{fn.__name__}' is already registered")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Names of the built-in architectures matching a shell-style ``pattern``, sorted.

    Example:
        >>> list_models("cifar_vgg*")
        ['cifar_vgg11', 'cifar_vgg13', 'cifar_vgg16', 'cifar_vgg19']
    """
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def is_model(name: str) -> bool:
    """Whether ``name`` is a built-in architecture."""
    return name in _MODELS


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the built-in architecture ``name``; ``kwargs`` go to its factory (e.g. ``num_classes``).

    Raises:
        ModelNotFoundError: ``name`` is not registered; the message lists close matches.
    """
    try:
        factory = _MODELS[name]
    except KeyError:
        raise ModelNotFoundError(f"unknown built-in model '{name}'{close_matches(name, _MODELS)}") from None
    return factory(**kwargs)


def get_model_doc(name: str) -> str:
    """The first paragraph of the factory's docstring, on one line: what the architecture is and where it
    comes from."""
    doc = (_MODELS[name].__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split()) if doc else ""
