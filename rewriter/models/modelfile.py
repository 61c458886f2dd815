"""The model-file format: plain data, read back with ``weights_only=True`` and checked against a schema.

A file (format ``rewriter-model``, version 1) holds how the base model was built (its ``ModelSpec``), the
resolved recipe as a dict, the input size and channels, the report, and the state dict; a base that cannot
be rebuilt (a pickled model file) is stored as a whole pickled module instead, which then needs
``trust_pickle`` to load. Reading is in two steps: ``read_payload`` reads the structure with every tensor on
the meta device and validates it (one clause per fault, an unknown future version refused), so that the
engine can rebuild the model and compare shapes before ``read_tensors`` reads any tensor data. Rebuilding
the model from the payload (replaying the recipe) is the engine's (``rewriter.engine.saving``). A file given
as a model is read once into a ``ModelFile`` (``read_model_file``: a rewriter model file or a pickled module)
that the rest of a command uses: its input size, its payload, then its tensors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .._errors import (
    InputSizeError,
    InvalidFileError,
    ModelFileError,
    ModelNotFoundError,
    UntrustedPickleError,
    WeightsError,
)
from .._files import atomic_path
from .._text import one_line, root_cause
from .._untrusted import plain_fault, shown
from ..analysis.sizes import LIFT_HINT, check_channels, check_classes, parse_size
from . import filetypes

FORMAT = "rewriter-model"
VERSION = 1
KINDS = ("torchvision", "builtin", "timm", "import", "file")
_SLACK = 1 << 20  # bytes of tensor data beyond what the tensors need that a file may hold (alignment)
MAX_HISTORY = 64  # rewrites recorded in a base's history (each is replayed when the file is loaded)


def write_payload(payload: dict[str, Any], path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write a model-file payload atomically (the caller checked the target first)."""
    target = Path(path)
    with atomic_path(target, overwrite=overwrite) as tmp:
        try:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
        except RuntimeError as err:  # torch's writer reports a full disk or a file size limit this way
            raise ModelFileError(f"cannot write {target}: {one_line(err, limit=200)}") from err
    return target


@dataclass(frozen=True, eq=False)
class ModelFile:
    """A file given as a model, read once (``read_model_file``) for every later step of a command to use.

    ``kind`` is ``"rewriter"`` for a model file written by ``rewriter.save`` (``payload``: its validated
    fields, the state dict's tensors on the meta device until ``read_tensors``) or ``"module"`` for a whole
    pickled module (``module``, unpickled with the trust flag). ``path`` is the path as it was given.
    """

    path: str
    kind: Literal["rewriter", "module"]
    payload: Mapping[str, Any] = field(default_factory=dict, repr=False)
    module: nn.Module | None = field(default=None, repr=False)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The input size a rewriter model file was written for (None for a pickled module)."""
        return parse_size(self.payload["input_size"], "input_size") if self.kind == "rewriter" else None

    def read_tensors(self) -> dict[str, torch.Tensor]:
        """The tensor data of a rewriter model file's state dict (``read_tensors``)."""
        return read_tensors(self.path, self.payload)


def read_model_file(path: str | os.PathLike, *, trust_pickle: bool = False) -> ModelFile:
    """Read a file given as a model: its structure once, with ``weights_only=True`` (a pickled module only
    with ``trust_pickle``), validated against the schema if it is a rewriter model file.

    Raises:
        ModelFileError: the file does not exist, cannot be read, is empty or corrupt, or a rewriter model file
            breaks the schema or is of a newer format version (each fault named).
        ModelNotFoundError: the file is an export for deployment (torch.export, ONNX).
        UntrustedPickleError: the file holds a pickled module and ``trust_pickle`` is False.
        WeightsError: the file holds a state dict or another object, not a model.
    """
    refusal = None
    try:
        data = filetypes.read_structure(path)
    except UntrustedPickleError as err:
        refusal = err  # acted on below, so that a failing trusted load is not chained to this refusal
    except InvalidFileError as err:  # an export is a model, but one made for another runtime
        if filetypes.sniff(path) in ("export", "onnx"):
            raise ModelNotFoundError(str(err)) from None
        raise
    if refusal is not None:
        if filetypes.contains_marker(path, FORMAT.encode()):
            return ModelFile(str(path), "rewriter", _trusted_payload(path, trust_pickle, refusal))
        return ModelFile(str(path), "module", module=_trusted_module(path, trust_pickle, refusal))
    if isinstance(data, Mapping) and data.get("format") == FORMAT:
        return ModelFile(str(path), "rewriter", _checked(path, data))
    if isinstance(data, Mapping):
        raise WeightsError(
            f"{path} is a state dict, not a model; give the architecture as the model and the file as `weights`",
            param="weights",
        )
    raise WeightsError(f"{path} holds a {type(data).__name__}, not a model")


def read_payload(path: str | os.PathLike, *, trust_pickle: bool = False) -> dict[str, Any]:
    """The validated payload of a model file written by ``rewriter.save``; the tensors of its state dict are
    on the meta device (shapes only: ``read_tensors`` reads the data). A pickled module inside is only
    unpickled with ``trust_pickle``.

    Raises:
        ModelFileError: the file does not exist, is empty, corrupt, not a rewriter model file, of a newer
            format version, or its fields do not follow the schema (each fault named).
        UntrustedPickleError: the file holds a pickled module and ``trust_pickle`` is False.
    """
    try:
        data = filetypes.read_structure(path)
    except UntrustedPickleError as err:
        if not filetypes.contains_marker(path, FORMAT.encode()):
            raise InvalidFileError(
                f"{path} is not a model file written by rewriter (it holds a pickle)"
            ) from err
        return _trusted_payload(path, trust_pickle, err)
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise InvalidFileError(f"{path} is not a model file written by rewriter (no 'format: {FORMAT}')")
    return _checked(path, data)


def _trusted_payload(path: str | os.PathLike, trust_pickle: bool, refusal: Exception) -> dict[str, Any]:
    """A model file whose base is a pickled module: unpickled only with the trust flag, then checked."""
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{path} holds a pickled model (its base was itself a pickled file); loading it runs code from "
            "the file. Pass trust_pickle=True if you trust it",
            param="trust_pickle",
        ) from refusal
    data = _load_trusted(path)
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise InvalidFileError(f"{path} is not a model file written by rewriter (no 'format: {FORMAT}')")
    return _checked(path, data)


def _trusted_module(path: str | os.PathLike, trust_pickle: bool, refusal: Exception) -> nn.Module:
    """A whole pickled module given as a model: unpickled only with the trust flag."""
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{path} holds a pickled Python object; unpickling it can run arbitrary code. Pass "
            "trust_pickle=True only if you trust where the file came from",
            param="trust_pickle",
        ) from refusal
    obj = _load_trusted(path)
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, Mapping):
        raise WeightsError(
            f"{path} is a state dict, not a model; give the architecture as the model and the file as `weights`",
            param="weights",
        )
    raise WeightsError(f"{path} holds a {type(obj).__name__}, not a model")


def _checked(path: str | os.PathLike, data: Mapping[str, Any]) -> dict[str, Any]:
    """A payload that names this format, checked against its bounds, version and schema."""
    bomb = plain_fault({k: v for k, v in data.items() if k not in ("state_dict", "module")})
    if bomb:  # before anything walks or formats the fields
        raise InvalidFileError(f"{path} is not a valid model file: its payload {bomb}")
    version = data.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise ModelFileError(
            f"{path} has format version {version}, written by a newer rewriter ({_text(data.get('rewriter'))}); "
            f"this one reads version {VERSION}: upgrade rewriter"
        )
    faults = validate(data)
    if faults:
        shown = "; ".join(faults[:6]) + (f"; and {len(faults) - 6} more" if len(faults) > 6 else "")
        lift = any(
            LIFT_HINT in fault for fault in faults
        )  # a size over its bound: the CLI says --allow-large
        raise InvalidFileError(
            f"{path} is not a valid model file: {shown}", param="unbounded" if lift else None
        )
    return dict(data)


def read_tensors(path: str | os.PathLike, payload: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict's tensor data, read after the shapes were checked (one opening of the file); refused
    if the file holds more tensor data than its tensors need (a damaged or crafted file).

    Raises:
        ModelFileError: the file's tensor data does not match its declared tensors, or cannot be read.
    """
    state = payload["state_dict"]
    needed = sum(t.numel() * t.element_size() for t in state.values())
    declared = sum(t.untyped_storage().nbytes() for t in state.values())
    with filetypes.opened(path) as (handle, kind):
        if handle is None:
            raise (ModelFileError if kind == "missing" else InvalidFileError)(filetypes.describe(path, kind))
        stored = filetypes.tensor_bytes(handle)
        if declared > 2 * needed + _SLACK or stored > declared + _SLACK:
            raise InvalidFileError(
                f"{path} holds {stored} bytes of tensor data for tensors that need {needed}; the file is "
                "damaged or not what it claims"
            )
        try:
            data = torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as err:
            raise InvalidFileError(f"{filetypes.describe(path, 'corrupt')} ({root_cause(err)})") from err
    return dict(data["state_dict"])


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file written by ``rewriter.save`` (read without tensor data or unpickling)."""
    if filetypes.sniff(path) != "torch":
        return False
    try:
        data = filetypes.read_structure(path)
    except UntrustedPickleError:
        return filetypes.contains_marker(path, FORMAT.encode())
    except ModelFileError:
        return False
    return isinstance(data, Mapping) and data.get("format") == FORMAT


def _load_trusted(path: str | os.PathLike) -> Any:
    """Unpickle a file the caller trusts. Its archive was read already (its structure named the pickled
    classes), so a failure here is the pickle's own (a class whose module is not importable), not damage."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise WeightsError(f"cannot load {path}: {one_line(err, limit=200)}") from err


# ---- the schema of version 1 -------------------------------------------------------------------------


def validate(data: Mapping[str, Any]) -> list[str]:
    """Every fault of a payload against the schema, one clause each (empty: valid)."""
    faults = [f"{key}: {fault}" for key, check in _TOP.items() for fault in _field(data, key, *check)]
    faults += [f"unknown field {_text(key)}" for key in data if key not in _TOP]
    if ("state_dict" in data) == ("module" in data):
        faults.append("exactly one of 'state_dict' (the weights) and 'module' (a pickled base) is needed")
    return faults


def _field(
    data: Mapping[str, Any], key: str, required: bool, check: Callable[[Any], str | None]
) -> list[str]:
    if key not in data:
        return ["missing"] if required else []
    fault = check(data[key])
    return [fault] if fault else []


def _text(value: Any) -> str:
    return shown(value, 50)


def _expect(kind: str, ok: Callable[[Any], bool]) -> Callable[[Any], str | None]:
    return lambda value: None if ok(value) else f"expected {kind}, got {_text(value)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _size_fault(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)):
        return f"expected [height, width], got {_text(value)}"
    try:
        parse_size(list(value), "input_size")
    except InputSizeError as err:
        return str(err).removeprefix("input_size: ")
    return None


def _channels_fault(value: Any) -> str | None:
    try:
        check_channels(value, "in_channels")
    except InputSizeError as err:
        return str(err).removeprefix("in_channels: ")
    return None


def _strings(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _mapping_with_str_keys(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


def _recipe_fault(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return f"expected a mapping with 'steps', got {_text(value)}"
    steps = value.get("steps")
    if not isinstance(steps, list):
        return f"expected 'steps' to be a list, got {_text(steps)}"
    return None


def _state_fault(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return f"expected a mapping from names to tensors, got {type(value).__name__}"
    bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    return f"{len(bad)} entries are not name -> tensor (first {_text(bad[0])})" if bad else None


def _history_fault(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)):
        return f"expected a list of rewrites, got {_text(value)}"
    if len(value) > MAX_HISTORY:
        return f"{len(value)} rewrites, more than the bound of {MAX_HISTORY} (each is replayed on loading)"
    for i, step in enumerate(value):
        if not isinstance(step, Mapping):
            return f"[{i}]: expected a mapping, got {_text(step)}"
        for key, (required, check) in _STEP.items():
            for fault in _field(step, key, required, check):
                return f"[{i}].{key}: {fault}"
        unknown = [k for k in step if k not in _STEP]
        if unknown:
            return f"[{i}]: unknown field {_text(unknown[0])}"
    return None


def _classes_fault(value: Any) -> str | None:
    if value is not None and not (_is_int(value) and value > 0):
        return f"expected null or a positive int, got {_text(value)}"
    try:
        value is None or check_classes(value, "num_classes")
    except InputSizeError as err:
        return str(err).removeprefix("num_classes: ")
    return None


def _model_args_fault(value: Any) -> str | None:
    if not _mapping_with_str_keys(value):
        return f"expected a mapping of arguments, got {_text(value)}"
    try:
        check_model_args(value, "model_args")
    except InputSizeError as err:
        return str(err).removeprefix("model_args").lstrip(": ")
    return None


def _base_fault(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return f"expected a mapping (the model's spec), got {_text(value)}"
    faults = [f"{key}: {fault}" for key, check in _BASE.items() for fault in _field(value, key, *check)]
    faults += [f"unknown field {_text(key)}" for key in value if key not in _BASE]
    return "; base.".join(faults) or None


_STEP: dict[str, tuple[bool, Callable[[Any], str | None]]] = {
    "recipe": (True, _recipe_fault),
    "input_size": (True, _size_fault),
    "in_channels": (False, _channels_fault),
    "leaf_modules": (False, _expect("a list of class names", _strings)),
}
_BASE: dict[str, tuple[bool, Callable[[Any], str | None]]] = {
    "source": (True, _expect("a model name or import spec", lambda v: isinstance(v, str) and bool(v))),
    "kind": (True, _expect(f"one of {', '.join(KINDS)}", lambda v: v in KINDS)),
    "num_classes": (False, _classes_fault),
    "model_args": (False, _model_args_fault),
    "weights": (False, _expect("null or a file name", lambda v: v is None or isinstance(v, str))),
    "history": (False, _history_fault),
}
_TOP: dict[str, tuple[bool, Callable[[Any], str | None]]] = {
    "format": (True, _expect(repr(FORMAT), lambda v: v == FORMAT)),
    "version": (True, _expect(f"an int from 1 to {VERSION}", lambda v: _is_int(v) and 1 <= v <= VERSION)),
    "rewriter": (False, _expect("a version string", lambda v: isinstance(v, str))),
    "torch": (False, _expect("a version string", lambda v: isinstance(v, str))),
    "base": (True, _base_fault),
    "recipe": (True, _recipe_fault),
    "input_size": (True, _size_fault),
    "in_channels": (False, _channels_fault),
    "leaf_modules": (False, _expect("a list of class names", _strings)),
    "report": (False, _expect("a mapping", lambda v: isinstance(v, Mapping))),
    "state_dict": (False, _state_fault),
    "module": (False, _expect("a torch.nn.Module", lambda v: isinstance(v, nn.Module))),
}


#: model arguments that size what a model allocates, and the bound each takes (the one declared for it)
_SIZED_ARGUMENTS: dict[str, Callable[[Any, str], Any]] = {
    "num_classes": check_classes,
    "img_size": parse_size,
    "image_size": parse_size,
    "input_size": parse_size,
    "in_chans": check_channels,
    "in_channels": check_channels,
}


def check_model_args(args: Mapping[str, Any], where: str = "model_args") -> dict[str, Any]:
    """Model arguments within the bounds: plain data of bounded size, and the arguments that size a model
    (``num_classes``, timm's ``img_size``, ``in_chans`` ...) within the bound declared for each.

    Raises:
        InputSizeError: the fault, naming the argument.
    """
    fault = plain_fault(dict(args))
    if fault:
        raise InputSizeError(f"{where} {fault}")
    for key, check in _SIZED_ARGUMENTS.items():
        if args.get(key) is not None:
            check(args[key], f"{where} {key}")
    return dict(args)
