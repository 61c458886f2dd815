"""torchvision classification models by name, with their pretrained weights from the user's cache.

``--model-arg weights=DEFAULT`` (or a name such as ``IMAGENET1K_V1``) builds the model with torchvision's
weights of that name, read from the user's torch hub cache (``$TORCH_HOME/hub/checkpoints``, where
torchvision keeps what it downloads) with ``weights_only=True``; rewriter downloads nothing, and refuses
weights that are not cached with the one line that fetches them. Built for another number of classes,
the model keeps every pretrained layer and gets a new head (a warning names it).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from .._errors import ModelNotFoundError, RewriterWarning, WeightsError, close_matches

# Arguments torchvision would otherwise warn about on every build; users can still override them.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "googlenet": {"init_weights": False},
    "inception_v3": {"init_weights": False},
}
# What torchvision's builders set when they load weights and that shapes the architecture: recorded with
# the model, so that a rewritten model file rebuilds the same architecture without the pretrained weights.
_PRETRAINED_ARCHITECTURE: dict[str, dict[str, Any]] = {
    "googlenet": {"transform_input": True, "aux_logits": False},
    "inception_v3": {"transform_input": True},
}


def build_torchvision_model(
    name: str, num_classes: int | None, args: Mapping[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    """The model and the arguments it was built with (to record); ``args["weights"]`` names pretrained
    weights (``DEFAULT``, ``IMAGENET1K_V1``, or ``ResNet18_Weights.IMAGENET1K_V1``).

    Raises:
        ModelNotFoundError: torchvision cannot build it with these arguments, or the weights are unknown.
        WeightsError: the weights are not in the user's cache (with the command that fetches them).
    """
    recorded = dict(args)
    kwargs = {**_DEFAULTS.get(name, {}), **recorded}
    chosen = kwargs.pop("weights", None)
    entry = None if chosen is None else _weights_entry(name, chosen)
    if entry is not None:
        recorded = {**_PRETRAINED_ARCHITECTURE.get(name, {}), **recorded, "weights": entry.name}
        kwargs = {**_PRETRAINED_ARCHITECTURE.get(name, {}), **kwargs}
    try:
        if entry is None:
            model = torchvision.models.get_model(name, weights=None, **_with_classes(kwargs, num_classes))
        else:
            model = _pretrained(name, entry, cached_weights(name, entry), num_classes, kwargs)
    except (WeightsError, ModelNotFoundError):
        raise
    except Exception as err:
        raise ModelNotFoundError(f"cannot build torchvision model '{name}' with {recorded}: {err}") from err
    return model, recorded


def _with_classes(kwargs: dict[str, Any], num_classes: int | None) -> dict[str, Any]:
    return kwargs if num_classes is None else {**kwargs, "num_classes": num_classes}


def _weights_entry(name: str, chosen: Any) -> Any:
    """The weights enum entry ``chosen`` names for model ``name``."""
    enum = torchvision.models.get_model_weights(name)
    names = [entry.name for entry in enum]
    text = str(chosen).rpartition(".")[2] if str(chosen).startswith(enum.__name__ + ".") else str(chosen)
    if text == "DEFAULT":
        return enum.DEFAULT
    if text not in names:
        hint = close_matches(text, names) or "."
        raise ModelNotFoundError(
            f"torchvision has no weights '{chosen}' for {name}{hint} Its weights: DEFAULT, {', '.join(names)}"
        )
    return enum[text]


def cached_weights(name: str, entry: Any) -> Path:
    """The file of the weights ``entry`` in the user's torch hub cache; nothing is downloaded.

    Raises:
        WeightsError: the file is not there (with the line that fetches it).
    """
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(entry.url).path)
    if not path.is_file():
        raise WeightsError(
            f"the weights {type(entry).__name__}.{entry.name} of {name} are not in your torch hub cache ({path}), "
            f'and rewriter downloads nothing: fetch them once with python -c "import torchvision; '
            f"torchvision.models.get_model('{name}', weights='{entry.name}')\", or give a state dict as `weights`",
            param="weights",
        )
    return path


def _pretrained(
    name: str, entry: Any, path: Path, num_classes: int | None, kwargs: dict[str, Any]
) -> nn.Module:
    """Built by torchvision's own builder (which sets what the weights need), the state dict read from
    ``path`` with ``weights_only=True``; for another number of classes, a new head."""
    classes = len(entry.meta["categories"])

    def from_cache(url: str, *args: Any, **options: Any) -> dict[str, Any]:
        return torch.load(path, map_location="cpu", weights_only=True)

    if num_classes is None or num_classes == classes:
        with mock.patch.object(torchvision.models._api, "load_state_dict_from_url", from_cache):
            return torchvision.models.get_model(name, weights=entry, **kwargs)
    model = torchvision.models.get_model(name, weights=None, **_with_classes(kwargs, num_classes))
    state, own = from_cache(entry.url), model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    new = [k for k in own if k not in kept]
    warnings.warn(
        f"{name}: the weights {entry.name} are for {classes} classes; {', '.join(new)} "
        f"{'is' if len(new) == 1 else 'are'} new (random) for {num_classes} classes: train the head",
        RewriterWarning,
        stacklevel=4,
    )
    return model
