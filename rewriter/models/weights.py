"""State dicts: read with ``weights_only=True`` (never unpickling code), and loaded into a model strictly,
naming every key that does not fit."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import BinaryIO

import torch
from torch import nn

from .._errors import WeightsError
from .._text import one_line
from . import filetypes

_REFUSED = ("missing", "folder", "unreadable", "special", "loop", "empty", "corrupt", "export", "onnx")


def read_state_dict(path: str | os.PathLike, *, meta: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict with ``weights_only=True``; unwraps ``{"state_dict": ...}``/``{"model": ...}``.

    With ``meta`` every tensor is on the meta device: the names and shapes, no data read.
    """
    with filetypes.opened(path) as (handle, kind):
        return _state_dict(handle, kind, path, meta=meta)


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load the state dict in ``path`` into ``model``, strictly, naming every key that does not fit.

    The names and shapes are compared first, with no tensor data read, so a file that does not fit is
    refused before it costs memory; both reads go through one opening of the file.
    """
    with filetypes.opened(path) as (handle, kind):
        check_fits(model, _state_dict(handle, kind, path, meta=True), f"weights file {path}")
        handle.seek(0)
        model.load_state_dict(_state_dict(handle, kind, path), strict=True)


def _state_dict(handle: BinaryIO | None, kind: str, path: str | os.PathLike, *, meta: bool = False):
    if handle is None or kind in _REFUSED:
        raise WeightsError(f"weights file {filetypes.describe(path, kind)}")
    try:
        obj = torch.load(handle, map_location="meta" if meta else "cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"cannot read {path} as a state dict with weights_only=True ({one_line(err, limit=120)}); "
            "a whole pickled model is given as the model itself, with trust_pickle=True",
            param="trust_pickle",
        ) from err
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping from names to tensors)")
    state = {str(k): v for k, v in obj.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel/DDP
    return state


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse a state dict whose names or shapes differ from the model's, naming the keys.

    Raises:
        WeightsError: with the missing, unexpected and mismatched keys (four of each).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
                parts.append(f"{len(keys)} {label} ({shown})")
        head_mismatch = any(k.split(":")[0].endswith(("fc.weight", "classifier.weight")) for k in mismatched)
        hint = " (is `num_classes` right?)" if head_mismatch else ""
        raise WeightsError(
            f"{what} does not match the model: " + "; ".join(parts) + hint, param="num_classes"
        )
