"""Where models come from: torchvision names, the built-in zoo, ``timm:NAME``, ``package.module:callable``,
and files.

``load_model`` turns the MODEL argument of every command into an ``nn.Module`` plus a ``ModelSpec`` that
records how it was built, so that a rewritten model can later be rebuilt from the spec without unpickling.
Files are safe by default: state dicts load with ``weights_only=True``; a whole pickled module is only
unpickled when the caller passes ``trust_pickle=True``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import pkgutil
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torchvision
from torch import nn

from .._errors import (
    InputSizeError,
    InvalidFileError,
    ModelNotFoundError,
    RewriterWarning,
    UsageError,
    close_matches,
)
from .._text import one_line
from .._untrusted import load_yaml, shown
from ..analysis.sizes import check_classes
from . import filetypes, modelfile, zoo
from .modelfile import ModelFile, check_model_args
from .timm_source import PREFIX as TIMM_PREFIX
from .timm_source import build_timm_model, is_timm_source
from .torchvision_source import build_torchvision_model
from .weights import load_weights

SourceKind = Literal["torchvision", "builtin", "timm", "import", "file"]


@dataclass(frozen=True)
class ModelSpec:
    """How a model was built: enough to build it again."""

    source: str
    kind: SourceKind
    num_classes: int | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None
    # rewrites already applied to the base, oldest first: {"recipe": ..., "input_size": [h, w], "in_channels": c}
    history: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "num_classes": self.num_classes,
            "model_args": dict(self.model_args),
            "weights": self.weights,
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelSpec:
        return cls(**{**data, "history": tuple(data.get("history") or ())})


def torchvision_models() -> list[str]:
    """Names of torchvision's classification models (the ones ``torchvision.models.get_model`` builds)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def is_named_model(source: str) -> bool:
    """Whether ``source`` names a built-in, torchvision or timm model (building it runs no code chosen by a
    file)."""
    return zoo.is_model(source) or source in torchvision_models() or is_timm_source(source)


def available_models() -> list[str]:
    """Every name MODEL accepts without an import spec or a file: the built-in zoo, then torchvision."""
    return zoo.list_models() + torchvision_models()


class NoNumClassesError(ModelNotFoundError):
    """The source builds its model without a num_classes argument (its head is what it is)."""


def load_model_for_classes(
    source: str | ModelFile, classes: int, **kwargs: Any
) -> tuple[nn.Module, ModelSpec]:
    """``load_model`` with a head for ``classes`` where the source takes num_classes (a name, a builder with
    that argument); a model file, or a builder or module without it, is built as it is."""
    if isinstance(source, ModelFile) or Path(source).is_file():
        return load_model(source, **kwargs)
    try:
        return load_model(source, num_classes=classes, **kwargs)
    except NoNumClassesError:
        return load_model(source, **kwargs)


def load_model(
    source: str | ModelFile,
    *,
    num_classes: int | None = None,
    model_args: Mapping[str, Any] | None = None,
    weights: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    allow_file: bool = True,
    input_size: tuple[int, int] | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """Build the model named by ``source`` and optionally load a state dict into it.

    ``source`` is, in this order of precedence: a file already read (a ``ModelFile``, see ``read_source``)
    or an existing file (a model file, or a whole pickled module only with ``trust_pickle``), ``timm:NAME``
    (``timm.create_model`` with ``model_args``, random weights unless ``pretrained=True`` is among them; built
    for ``input_size`` where the model has a fixed one), ``package.module:callable`` (called with
    ``model_args``), a built-in architecture (``cifar_vgg16``), or a torchvision classification model
    (``resnet18``; pretrained with ``weights=DEFAULT`` or a weights name among ``model_args``, from the user's
    cache only). A file named like a built-in model is taken, with a warning; ``allow_file=False`` never
    takes a file (how a model file's recorded base is rebuilt, so that a file named like its own base cannot
    recurse).

    Raises:
        ModelNotFoundError: the name is unknown (close matches are listed) or the import fails.
        WeightsError: the weights file does not fit the model (the mismatching keys are listed).
        UntrustedPickleError: the file holds a pickled module and ``trust_pickle`` is False.
    """
    args = dict(model_args or {})
    check_model_args(args)
    if num_classes is not None:
        check_classes(num_classes, "num_classes")
    file = source if isinstance(source, ModelFile) else None
    if file is None and allow_file:
        file = read_source(source, trust_pickle=trust_pickle)
    if file is not None:
        if num_classes is not None or args:
            raise ModelNotFoundError(
                f"{file.path} fixes its architecture; drop `num_classes` and `model_args`",
                param=("num_classes", "model_args"),
            )
        return _build_from_file(file, trust_pickle=trust_pickle, weights=weights)
    if source.startswith(TIMM_PREFIX):
        model, built_with = build_timm_model(source, num_classes, args, input_size)
        spec = ModelSpec(source, "timm", num_classes, built_with)
    elif ":" in source:
        model = _build_from_import(source, num_classes, args)
        spec = ModelSpec(source, "import", num_classes, args)
    elif zoo.is_model(source):
        model = _call_factory(source, _zoo_factory(source), num_classes, args)
        spec = ModelSpec(source, "builtin", num_classes, args)
    elif source in torchvision_models():
        model, built_with = build_torchvision_model(source, num_classes, args)
        spec = ModelSpec(source, "torchvision", num_classes, built_with)
    else:
        raise _unknown(source)
    if weights is not None:
        load_weights(model, weights)
        spec = ModelSpec(spec.source, spec.kind, spec.num_classes, spec.model_args, str(weights))
    return model, spec


def read_source(source: str, *, trust_pickle: bool = False) -> ModelFile | None:
    """The file ``source`` names, read once into a ``ModelFile`` for the rest of a command to use (its input
    size, its payload, its tensors), or None where it names no file (a model name, an import spec, a
    folder named like a model). A file named like a built-in model is taken, with a warning.

    Raises:
        ModelNotFoundError: a path (it has a folder or a model file's suffix) that does not exist, a folder.
        ModelFileError, UntrustedPickleError, WeightsError: as ``modelfile.read_model_file``.
    """
    if not _exists(source):
        check_source(source)
        return None
    if os.path.isdir(source):
        if _looks_like_a_path(source) and not is_named_model(source):
            raise ModelNotFoundError(f"{source} is a folder, not a model file; {_MODEL_IS}")
        return None
    if is_named_model(source) and os.sep not in source:
        warnings.warn(
            f"'{source}' names both a file in this folder and a built-in model; using the file (write "
            f"./{source} to mean the file, or rename it to use the built-in model)",
            RewriterWarning,
            stacklevel=3,
        )
    return modelfile.read_model_file(source, trust_pickle=trust_pickle)


def _exists(source: str) -> bool:
    """Whether anything is at ``source`` (a link that leads nowhere included). A name the system refuses
    (too long) is not there if it looks like a path (``check_source`` says so); otherwise its ``OSError``,
    which says what the system refused, is raised."""
    try:
        os.lstat(source)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        if _looks_like_a_path(source):
            return False
        raise
    return True


_MODEL_IS = "MODEL is a model name (`rewriter models`), package.module:callable, or an existing file"


def check_source(source: str) -> None:
    """Refuse, before any work, a MODEL that names a file that does not exist, is empty, is corrupt, or is
    not a regular file (a FIFO, a device, a symlink loop: reading it would block or never end).

    Raises:
        ModelNotFoundError: a path (it has a folder or a model file's suffix) that does not exist.
        ModelFileError: a file that cannot be read (the reason is given), is empty, corrupt or special.
    """
    found = filetypes.sniff(source) if os.path.lexists(source) else "missing"
    if found in ("unreadable", "empty", "corrupt", "special", "loop"):
        raise InvalidFileError(filetypes.describe(source, found))
    if found == "missing" and _looks_like_a_path(source) and not is_named_model(source):
        raise ModelNotFoundError(f"{source} does not exist (no such file); {_MODEL_IS}")


def _unknown(source: str) -> ModelNotFoundError:
    if _looks_like_a_path(source) and _exists(source):
        return ModelNotFoundError(f"'{source}' is a file where a model name was expected")
    if _looks_like_a_path(source):
        return ModelNotFoundError(f"{source} does not exist (no such file); {_MODEL_IS}")
    hint = close_matches(source, available_models()) or "."
    return ModelNotFoundError(
        f"unknown model '{source}'{hint} MODEL is a torchvision classification model or a built-in "
        "architecture (`rewriter models` lists both), timm:NAME (a timm model), "
        "package.module:callable, or a model file"
    )


def _looks_like_a_path(source: str) -> bool:
    return os.sep in source or Path(source).suffix in (
        ".pt",
        ".pth",
        ".pt2",
        ".onnx",
        ".ckpt",
        ".bin",
        ".pkl",
    )


def _pickled_module(file: ModelFile, *, trust_pickle: bool, weights: Any) -> tuple[nn.Module, ModelSpec]:
    """A whole pickled module (unpickled with the trust flag when the file was read): a copy of it each
    time, so that two models built from one reading share no parameter."""
    model = copy.deepcopy(file.module)
    if weights is not None:
        load_weights(model, weights)
    return model, ModelSpec(file.path, "file", None, {}, None if weights is None else str(weights))


#: the engine's loader of a rewriter model file (it replays the file's recipe), named here and resolved on
#: first use rather than registered by importing the layer above, so that loading does not depend on what was
#: imported first (the strategy registry names strategies by entry point the same way)
_MODEL_FILE_LOADER = "rewriter.engine.saving:load_as_source"


def _build_from_file(file: ModelFile, **kwargs: Any) -> tuple[nn.Module, ModelSpec]:
    """A model file already read, built: a rewriter model file by the engine, a pickled module copied."""
    if file.kind == "rewriter":
        return pkgutil.resolve_name(_MODEL_FILE_LOADER)(file, **kwargs)
    return _pickled_module(file, **kwargs)


def _zoo_factory(name: str) -> Any:
    return lambda **kwargs: zoo.create_model(name, **kwargs)


def _call_factory(label: str, factory: Any, num_classes: int | None, args: dict[str, Any]) -> nn.Module:
    kwargs = dict(args)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        model = factory(**kwargs)
    except Exception as err:
        raise ModelNotFoundError(
            f"cannot build '{label}' with arguments {shown(kwargs, 200)}: {one_line(err, limit=300)}"
        ) from err
    if not isinstance(model, nn.Module):
        raise ModelNotFoundError(f"'{label}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _build_from_import(source: str, num_classes: int | None, args: dict[str, Any]) -> nn.Module:
    module_path, _, attr_path = source.partition(":")
    if not module_path or not attr_path:
        raise ModelNotFoundError(f"import spec '{source}' must look like package.module:callable")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`, let users name modules in the current folder
    try:
        obj: Any = importlib.import_module(module_path)
    except ImportError as err:
        raise ModelNotFoundError(f"cannot import '{module_path}' (from '{source}'): {err}") from err
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise ModelNotFoundError(
                f"'{module_path}' has no attribute '{attr_path}'{close_matches(part, names)}"
            )
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        if args or num_classes is not None:
            error = ModelNotFoundError if args else NoNumClassesError
            raise error(
                f"'{source}' is a module instance; it takes no `model_args` or `num_classes`",
                param=("model_args", "num_classes"),
            )
        return copy.deepcopy(obj)
    if not callable(obj):
        raise ModelNotFoundError(f"'{source}' is a {type(obj).__name__}, not a callable that builds a model")
    if num_classes is not None and not _accepts(obj, "num_classes"):
        raise NoNumClassesError(
            f"'{source}' does not take a class count; drop `num_classes`", param="num_classes"
        )
    return _call_factory(source, obj, num_classes, args)


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def parse_model_args(items: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` pairs; values are read as YAML scalars (``32`` -> int, ``true`` -> bool).

    Raises:
        UsageError: an item without ``=``, a value that is not YAML or over the bounds (``check_model_args``).
    """
    args: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"`model_args` expects key=value, got {shown(item)}", param="model_args")
        where = f"`model_args` {shown(key.strip(), 40)}"
        try:
            args[key.strip()] = load_yaml(value, where=where, error=UsageError) if value else ""
        except UsageError as err:
            raise UsageError(str(err), param=("model_args", *err.params)) from None
    try:
        return check_model_args(args, "`model_args`")
    except InputSizeError as err:
        raise UsageError(str(err), param=("model_args", *err.params)) from None
