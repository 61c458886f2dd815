"""Saving and loading rewritten models so that loading never needs to trust a pickle.

``save`` writes the base model's spec, the resolved recipe and the state dict (the format is
``rewriter.models.modelfile``); ``load_model_file`` validates the file, rebuilds the base, replays the
recipe, checks every key and shape, and only then reads the state dict with ``weights_only=True``.
``load_as_source`` is how ``rewriter.models.load_model("out.pt")`` rebuilds a model file (its table of file
kinds names it).
``fmt="pt2"`` and ``fmt="onnx"`` export for deployment instead (``rewriter.engine.exporting``).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import InvalidFileError, RecipeError, UntrustedPickleError
from .._files import check_target
from .._version import __version__
from ..analysis.sizes import parse_size
from ..models import modelfile
from ..models.modelfile import ModelFile
from ..models.sources import ModelSpec, is_named_model, load_model
from ..models.weights import load_weights
from .exporting import check_format, export
from .pipeline import rewrite
from .recipe import Recipe


@dataclass(frozen=True)
class LoadedModel:
    """A model read back from a file, with what the file says about it."""

    model: nn.Module
    spec: ModelSpec
    recipe: Recipe
    input_size: tuple[int, int]
    metadata: dict[str, Any]


def history_step(
    recipe: Recipe, input_size: tuple[int, int], in_channels: int, leaf_modules: Sequence[str] = ()
) -> dict[str, Any]:
    """One rewrite as a model file records it, so that it can be replayed."""
    return {
        "recipe": recipe.to_dict(),
        "input_size": list(input_size),
        "in_channels": in_channels,
        "leaf_modules": list(leaf_modules),
    }


def save(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    spec: ModelSpec,
    recipe: Recipe,
    input_size: tuple[int, int],
    in_channels: int = 3,
    leaf_modules: Sequence[type | str] = (),
    report: dict[str, Any] | None = None,
    fmt: str = "pt",
    overwrite: bool = False,
    force: bool = False,
) -> Path:
    """Write ``model`` to ``path`` atomically; an existing file is only replaced with ``overwrite``
    (``force`` is its older name), and one of the running command's inputs never.

    ``fmt`` ``"pt"`` writes a model file (spec + recipe + state dict); ``"pt2"`` and ``"onnx"`` export it
    for deployment (``rewriter.engine.exporting``, which also checks the export against the model).

    Raises:
        ModelFileError: the target exists, is an input, does not fit the format's suffix, or cannot be written.
    """
    check_format(path, fmt)
    target = check_target(path, overwrite or force)
    if fmt != "pt":
        return export(model, target, fmt, input_size=input_size, in_channels=in_channels, overwrite=True).path
    payload: dict[str, Any] = {
        "rewriter": __version__,
        "torch": str(torch.__version__),
        "base": spec.to_json(),
        "recipe": recipe.to_dict(),
        "input_size": list(input_size),
        "in_channels": in_channels,
        "leaf_modules": [m if isinstance(m, str) else m.__name__ for m in leaf_modules],
        "report": report or {},
    }
    if spec.kind == "file":
        payload["module"] = model  # the base cannot be rebuilt from a name: only a pickle can carry it
    else:
        payload["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return modelfile.write_payload(payload, target, overwrite=overwrite or force)


def load_model_file(path: str | os.PathLike | ModelFile, *, trust_pickle: bool = False) -> LoadedModel:
    """Read a file written by ``save`` (or one already read, a ``ModelFile``): rebuild the base, replay the
    recipe, load the weights; the model with its spec, recipe, input size and metadata (``rewriter.load``
    gives the model alone, in eval mode).

    The file's structure is read and validated first, with no tensor data; the rebuilt model's names
    and shapes are compared with the file's before its tensors are read.

    Raises:
        ModelFileError: the file does not exist, is empty or corrupt, is not a rewriter model file (or is of
            a newer format version, or breaks its schema), or its weights do not fit the rebuilt model.
        UntrustedPickleError: the file holds a pickled module and ``trust_pickle`` is False.
    """
    if isinstance(path, ModelFile):
        file = path
        if file.kind != "rewriter":
            raise InvalidFileError(
                f"{file.path} is not a model file written by rewriter (it holds a pickled module)"
            )
    else:
        file = ModelFile(str(path), "rewriter", modelfile.read_payload(path, trust_pickle=trust_pickle))
    data = dict(file.payload)
    spec = ModelSpec.from_json(data["base"])
    try:
        recipe = Recipe.from_dict(data["recipe"], source=Path(file.path).name, allow_empty=True)
    except RecipeError as err:
        raise InvalidFileError(f"{file.path} is not a valid model file: recipe: {err}") from err
    size = file.input_size
    if "module" in data:  # a copy: two models built from one reading share no parameter
        return LoadedModel(copy.deepcopy(data["module"]), spec, recipe, size, data)
    if not trust_pickle and not is_named_model(spec.source):
        raise UntrustedPickleError(
            f"{file.path} was built from '{spec.source}'; rebuilding it imports and runs the code that name "
            "points to. Pass trust_pickle=True if you trust the file",
            param="trust_pickle",
        )
    # the architecture only: the file's own weights follow (pretrained ones need not be in the cache)
    pretrained = {"timm": "pretrained", "torchvision": "weights"}.get(spec.kind)
    args = {k: v for k, v in spec.model_args.items() if k != pretrained}
    model, _ = load_model(spec.source, num_classes=spec.num_classes, model_args=args, allow_file=False)
    steps = [
        *spec.history,
        {**history_step(recipe, size, data.get("in_channels", 3), data.get("leaf_modules", ()))},
    ]
    for step in steps:
        model = _replay(model, step, Path(file.path).name)
    _check_shapes(model, data["state_dict"], file.path)  # meta tensors: no tensor data read yet
    model.load_state_dict(file.read_tensors(), strict=True)
    return LoadedModel(model, spec, recipe, size, data)


def load(path: str | os.PathLike, *, trust_pickle: bool = False) -> LoadedModel:
    """Deprecated: the older name of ``load_model_file`` (three functions were called load)."""
    warnings.warn(
        "rewriter.engine.load is now rewriter.engine.load_model_file (rewriter.load gives the model alone)",
        DeprecationWarning,
        stacklevel=2,
    )
    return load_model_file(path, trust_pickle=trust_pickle)


def _replay(model: nn.Module, step: dict[str, Any], source: str) -> nn.Module:
    """Apply one recorded rewrite again (building, not training: the weights are loaded next)."""
    replay = Recipe.from_dict(step["recipe"], source=source, allow_empty=True)
    if not replay.steps:  # a trained, not rewritten, model
        return model
    return rewrite(
        model,
        replay,
        input_size=parse_size(step["input_size"], "input_size"),
        in_channels=step.get("in_channels", 3),
        leaf_modules=tuple(step.get("leaf_modules", ())),
        measure_cost=False,
        replay=True,
    ).model


def _check_shapes(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and expected[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        raise InvalidFileError(
            f"{path}: the replayed recipe builds a model whose weights differ from the file's (missing "
            f"{missing[:4]}, unexpected {unexpected[:4]}, shape mismatch {mismatched[:4]}); was it written by "
            "another version of torch, torchvision or rewriter?"
        )


def load_as_source(file: ModelFile, *, trust_pickle: bool, weights: Any) -> tuple[nn.Module, ModelSpec]:
    """A model file already read as a model source: rebuilt from its spec and recipe, then its weights; the
    spec records the file's rewrite as one more step of its history, so that a file made from it can be
    replayed."""
    loaded = load_model_file(file, trust_pickle=trust_pickle)
    if weights is not None:
        load_weights(loaded.model, weights)
    step = history_step(
        loaded.recipe,
        loaded.input_size,
        loaded.metadata.get("in_channels", 3),
        loaded.metadata.get("leaf_modules", ()),
    )
    spec = ModelSpec(
        loaded.spec.source,
        loaded.spec.kind,
        loaded.spec.num_classes,
        loaded.spec.model_args,
        str(weights or file.path),
        (*loaded.spec.history, step),
    )
    return loaded.model, spec
