"""The model-file format: plain data, read back with ``weights_only=True``.

A file holds how the base model was built (its ``ModelSpec``), the resolved recipe as a dict, the input
size, the report, and the state dict; a base that cannot be rebuilt (a pickled model file) is stored as a
whole pickled module instead, which then needs ``trust_pickle`` to load. This module reads and writes that
payload; rebuilding the model from it (replaying the recipe) is the engine's (``rewriter.engine.saving``).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .._errors import ModelFileError, UntrustedPickleError
from .._files import atomic_path

FORMAT = "rewriter-model"
VERSION = 1


def write_payload(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a model-file payload atomically (the caller checked the target first)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
    return target


def read_payload(path: str | os.PathLike, *, trust_pickle: bool = False) -> dict[str, Any]:
    """Read a model file's payload; a pickled module inside is only unpickled with ``trust_pickle``.

    Raises:
        ModelFileError: the file is not a rewriter model file.
        UntrustedPickleError: the file holds a pickled module and ``trust_pickle`` is False.
    """
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
    return data


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file written by ``rewriter.save`` (read with ``weights_only=True``)."""
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
