"""Setting up a measurement for a command: the model it names (its file read once), the data it runs on,
the input size, and a quick training first, as functions with explicit arguments (``_common`` turns the
options into these). The record of the model, ``ModelRequest``, is the lab's: the optimizer's trials build
their models through it too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._errors import AnalysisError, UsageError
from .._text import one_line
from ..analysis.modes import eval_mode
from ..lab.data import DataError, DataSource, DataSpec, load_data, native_size, parse_data_spec, scan_data
from ..lab.model_request import ModelRequest, model_for_data
from ..lab.training import EpochRecord, TrainConfig, TrainResult, train
from ..models.sources import ModelSpec

Say = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True)
class Setup:
    """The data, the model (its head sized for the data), how it was built, and the input size."""

    data: DataSource
    model: nn.Module
    spec: ModelSpec
    input_size: tuple[int, int]


def resolve_input_size(
    given: tuple[int, int] | None, request: ModelRequest, native: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The input size: ``given`` (--input-size), else the size the model file of ``request`` (read once,
    ``ModelRequest.read``) was written for, else ``native`` (the data's own resolution).

    Raises:
        UsageError: none of them is known.
    """
    size = given or request.recorded_input_size or native
    if size is None:
        raise UsageError("give --input-size: the resolution you train at (32, or HEIGHT,WIDTH)")
    return size


def load_setup(
    request: ModelRequest,
    data_spec: str | DataSpec,
    *,
    input_size: tuple[int, int] | None = None,
    download: bool = False,
    progress: Say | None = None,
    **data_options: Any,
) -> Setup:
    """Read the data at the input size (given, the model file's own, or the data's: an image folder is
    listed once for both) and build the model; ``data_options`` go to ``load_data`` (``train_samples``,
    ``test_samples``, ``memory_limit``).

    Raises:
        DataError: the model's outputs do not match the data's classes (with the way to fix it).
        UsageError: no input size is known.
    """
    say = progress or _quiet
    request = request.read()
    spec = parse_data_spec(data_spec) if isinstance(data_spec, str) else data_spec
    if input_size is None and request.recorded_input_size is None:
        spec = scan_data(spec)
        size = resolve_input_size(None, request, native_size(spec))
        if spec.kind == "imagefolder":
            say(f"input size {size[0]}x{size[1]}: every image of {spec.path} has that size")
    else:
        size = resolve_input_size(input_size, request)
    say(f"reading data {spec} at {size[0]}x{size[1]}")
    data = load_data(spec, size, download=download, progress=say, **data_options)
    model, model_spec = model_for_data(
        dataclasses.replace(request, input_size=request.input_size or size), data
    )
    _check_classes(model, data, request, spec)
    return Setup(data, model, model_spec, size)


def _check_classes(model: nn.Module, data: DataSource, request: ModelRequest, spec: DataSpec) -> None:
    outputs = output_classes(model, data.train[0][0])
    if outputs is None or outputs == data.num_classes:
        return
    if request.is_file or request.weights:
        hint = "rewrite it with --num-classes first"
    elif request.num_classes is not None:
        hint = f"drop --num-classes {request.num_classes}"
    else:
        hint = f"build it with a {data.num_classes}-class head (e.g. --model-arg num_classes=...)"
    raise DataError(f"{request.source} outputs {outputs} classes but {spec} has {data.num_classes}; {hint}")


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
