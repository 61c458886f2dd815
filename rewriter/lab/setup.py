"""Setting up a measurement: the model a command names, the data it runs on, the input size, and a quick
training first. What every command that measures a model on data does before measuring, as library
functions with explicit arguments (the CLI only turns its options into these).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import AnalysisError, InputSizeError
from .._text import one_line
from ..analysis.modes import eval_mode
from ..analysis.sizes import parse_size
from ..models.modelfile import recorded_input_size
from ..models.sources import ModelSpec, check_source, load_model, load_model_for_classes
from .data import DataError, DataSource, load_data, native_size, parse_data_spec
from .training import EpochRecord, TrainConfig, TrainResult, train

Say = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True)
class ModelRequest:
    """The model a command works on: the MODEL argument and its options, as ``load_model`` takes them."""

    source: str
    num_classes: int | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None
    trust_pickle: bool = False
    input_size: tuple[int, int] | None = None  # the size a timm model with a fixed one is built for

    @property
    def is_file(self) -> bool:
        return Path(self.source).is_file()

    def load(self) -> tuple[nn.Module, ModelSpec]:
        return load_model(
            self.source,
            num_classes=self.num_classes,
            model_args=self.model_args,
            weights=self.weights,
            trust_pickle=self.trust_pickle,
            input_size=self.input_size,
        )


@dataclass(frozen=True)
class Setup:
    """The data, the model (its head sized for the data), how it was built, and the input size."""

    data: DataSource
    model: nn.Module
    spec: ModelSpec
    input_size: tuple[int, int]


def resolve_input_size(
    given: Any, source: str | None = None, native: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The input size: ``given``, else the size a model file ``source`` was written for, else ``native``
    (the data's own resolution).

    Raises:
        InputSizeError: none of them is known.
    """
    if given is not None:
        return parse_size(given, "--input-size")
    if source is not None:
        check_source(source)  # a missing, empty or corrupt file is the fault to report, not the size
    recorded = recorded_input_size(source) if source is not None and Path(source).is_file() else None
    if recorded is not None:
        return recorded
    if native is not None:
        return native
    raise InputSizeError("give --input-size: the resolution you train at (32, or HEIGHT,WIDTH)")


def model_for_data(request: ModelRequest, data: DataSource) -> tuple[nn.Module, ModelSpec]:
    """The requested model; one built fresh by name (no file, no weights, no num_classes) gets a head for
    the data's classes, unless its builder takes no num_classes (then it is built as it is). The spec
    records the classes it was built with."""
    if request.num_classes is not None or request.is_file or request.weights:
        return request.load()
    return load_model_for_classes(
        request.source, data.num_classes, model_args=request.model_args, trust_pickle=request.trust_pickle,
        input_size=request.input_size,
    )  # fmt: skip


def load_data_and_model(
    request: ModelRequest,
    data_spec: str,
    *,
    input_size: Any = None,
    download: bool = False,
    progress: Say | None = None,
    **data_options: Any,
) -> Setup:
    """Read the data at the input size (given, a model file's own, or the data's) and build the model;
    ``data_options`` go to ``load_data`` (``train_samples``, ``test_samples``, ``memory_limit``).

    Raises:
        DataError: the model's outputs do not match the data's classes (with the way to fix it).
    """
    say = progress or _quiet
    spec = parse_data_spec(data_spec)
    size = resolve_input_size(input_size, request.source, native_size(spec))
    say(f"reading data {spec} at {size[0]}x{size[1]}")
    data = load_data(spec, size, download=download, progress=say, **data_options)
    model, model_spec = model_for_data(
        dataclasses.replace(request, input_size=request.input_size or size), data
    )
    outputs = output_classes(model, data.train[0][0])
    if outputs is not None and outputs != data.num_classes:
        if request.is_file or request.weights:
            hint = "rewrite it with --num-classes first"
        elif request.num_classes is not None:
            hint = f"drop --num-classes {request.num_classes}"
        else:
            hint = f"build it with a {data.num_classes}-class head (e.g. --model-arg num_classes=...)"
        raise DataError(
            f"{request.source} outputs {outputs} classes but {spec} has {data.num_classes}; {hint}"
        )
    return Setup(data, model, model_spec, size)


def output_classes(model: nn.Module, example: torch.Tensor) -> int | None:
    """The number of scores the model gives for one image, or None if it does not return [batch, classes].

    Raises:
        AnalysisError: the model does not run on the image.
    """
    try:
        with eval_mode(model), torch.no_grad():
            out = model(example[None])
    except Exception as err:
        raise AnalysisError(
            f"the model does not run on the data's images {tuple(example.shape)}: {one_line(err, limit=200)}"
        ) from err
    return out.shape[1] if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def pretrain(
    model: nn.Module,
    data: DataSource,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 0.1,
    workers: int = 0,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    progress: Say | None = None,
) -> TrainResult | None:
    """Train ``model`` in place for ``epochs`` epochs with ``rewriter train``'s schedule (nothing is saved);
    None when ``epochs`` is 0."""
    if epochs <= 0:
        return None
    say = progress or _quiet
    say(f"training for {epochs} epochs first (use `rewriter train` to keep the result)")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, workers=workers, precision=precision)
    result = train(model, data, config, device=device, on_epoch=epoch_reporter(config, data, say))
    say(f"test accuracy after {epochs} epochs: {result.test_accuracy:.2%}")
    return result


def epoch_reporter(config: TrainConfig, data: DataSource, say: Say) -> Callable[[EpochRecord], None]:
    """A status line per epoch; after the first, a hint if the loss is worse than guessing."""
    chance = math.log(data.num_classes)

    def report(record: EpochRecord) -> None:
        say(
            f"epoch {record.epoch + 1}/{config.epochs}: loss {record.loss:.4f}, train accuracy "
            f"{record.accuracy:.2%}, test accuracy {record.test_accuracy:.2%}, lr {record.lr:g}"
        )
        if record.epoch == 0 and record.loss > 1.5 * chance:
            say(
                f"note: the loss is above that of guessing ({chance:.2f}); the learning rate {config.lr:g} may "
                "be too high for this data (a small set has few steps per epoch): try --lr 0.01"
            )

    return report
