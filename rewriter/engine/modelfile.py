"""Model files: write a rewritten model so that loading it never needs to trust a pickle.

A file holds plain data only: how the base model was built (its ``ModelSpec``), the resolved recipe, the
input size, the report, and the state dict. ``load`` rebuilds the base, replays the recipe, and loads the
state dict with ``weights_only=True``, checking every key and shape. A base that cannot be rebuilt (a
pickled model file) is stored as a whole pickled module instead, which then needs ``trust_pickle`` to load.
``--format pt2`` writes a ``torch.export`` program that runs without this package.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from .._errors import ModelFileError, UntrustedPickleError
from .._files import atomic_path
from ..analysis.graph import eval_mode
from ..models.sources import ModelSpec, is_named_model
from .recipe import Recipe

FORMAT = "rewriter-model"
VERSION = 1


@dataclass(frozen=True)
class LoadedModel:
    """A model read back from a file, with what the file says about it."""

    model: nn.Module
    spec: ModelSpec
    recipe: Recipe
    input_size: tuple[int, int]
    metadata: dict[str, Any]


def check_target(path: str | os.PathLike, force: bool) -> None:
    """Refuse an output path before any work is done: an existing file without ``force``, a folder, no folder."""
    target = Path(path)
    if target.is_dir():
        raise ModelFileError(f"{target} is a folder; give a file name")
    if target.exists() and not force:
        raise ModelFileError(f"{target} exists; pass --force (force=True) to overwrite it")
    if not target.parent.exists():
        raise ModelFileError(f"cannot write {target}: folder {target.parent} does not exist")


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
    force: bool = False,
) -> Path:
    """Write ``model`` to ``path`` atomically; an existing file is only replaced with ``force``."""
    target = Path(path)
    check_target(target, force)
    if fmt == "pt2":
        return _save_exported(model, target, input_size, in_channels)
    if fmt != "pt":
        raise ModelFileError(f"unknown format '{fmt}': use 'pt' or 'pt2'")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
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
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def _save_exported(model: nn.Module, target: Path, input_size: tuple[int, int], in_channels: int) -> Path:
    example = torch.zeros(1, in_channels, *input_size)
    with eval_mode(model):
        try:
            program = torch.export.export(model, (example,))
        except Exception as err:
            raise ModelFileError(
                f"torch.export cannot export the model: {' '.join(str(err).split()[:40])}"
            ) from err
    with atomic_path(target) as tmp:
        torch.export.save(program, tmp)
    return target


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file written by ``save`` (read with ``weights_only=True``)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return _is_pickled_model_file(path)
    return isinstance(data, dict) and data.get("format") == FORMAT


def recorded_input_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """The input size a model file was written for, or None (not a model file, or a pickled one)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return tuple(data["input_size"])  # type: ignore[return-value]
    return None


def _is_pickled_model_file(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as handle:
            return FORMAT.encode() in handle.read(1 << 16)
    except OSError:
        return False


def load(path: str | os.PathLike, *, trust_pickle: bool = False) -> LoadedModel:
    """Read a file written by ``save``: rebuild the base, replay the recipe, load the weights.

    Raises:
        ModelFileError: the file is not a rewriter model file, or its weights do not fit the rebuilt model.
        UntrustedPickleError: the file holds a pickled module and ``trust_pickle`` is False.
    """
    from ..models.sources import load_model
    from .pipeline import rewrite

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as err:
        if not trust_pickle:
            raise UntrustedPickleError(
                f"{path} holds a pickled model (its base was itself a pickled file); loading it runs code from "
                "the file. Pass --trust-pickle (trust_pickle=True) if you trust it"
            ) from err
        data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a model file written by rewriter")
    spec = ModelSpec.from_json(data["base"])
    recipe = Recipe.from_dict(data["recipe"], source=Path(path).name, allow_empty=True)
    size = tuple(data["input_size"])
    if "module" in data:
        return LoadedModel(data["module"], spec, recipe, size, data)  # type: ignore[arg-type]
    if not trust_pickle and not is_named_model(spec.source):
        raise UntrustedPickleError(
            f"{path} was built from '{spec.source}'; rebuilding it imports and runs the code that name points to. "
            "Pass --trust-pickle (trust_pickle=True) if you trust the file"
        )
    model, _ = load_model(spec.source, num_classes=spec.num_classes, model_args=spec.model_args)
    steps = [
        *spec.history,
        {**history_step(recipe, size, data.get("in_channels", 3), data.get("leaf_modules", ()))},
    ]
    for step in steps:
        replay = Recipe.from_dict(step["recipe"], source=Path(path).name, allow_empty=True)
        if not replay.steps:  # a trained, not rewritten, model
            continue
        model = rewrite(
            model,
            replay,
            input_size=tuple(step["input_size"]),
            in_channels=step.get("in_channels", 3),
            leaf_modules=tuple(step.get("leaf_modules", ())),
            measure_cost=False,
            replay=True,
        ).model
    _load_checked(model, data["state_dict"], path)
    return LoadedModel(model, spec, recipe, size, data)  # type: ignore[arg-type]


def _load_checked(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and expected[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        raise ModelFileError(
            f"{path}: the replayed recipe builds a model whose weights differ from the file's (missing "
            f"{missing[:4]}, unexpected {unexpected[:4]}, shape mismatch {mismatched[:4]}); was it written by "
            "another version of torch, torchvision or rewriter?"
        )
    model.load_state_dict(state, strict=True)
