"""The model a run trains: the MODEL argument and its options as one record (``ModelRequest``), a file it
names read once, and the model built with a head for the data's classes (``model_for_data``). The CLI, the
optimizer's trials and its validation build their models through it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..models.modelfile import ModelFile
from ..models.sources import ModelSpec, load_model, load_model_for_classes, read_source
from .data import DataSource


@dataclass(frozen=True)
class ModelRequest:
    """The model a command works on: the MODEL argument and its options, as ``load_model`` takes them, and
    (``read``) the file MODEL names, read once for every later step."""

    source: str
    num_classes: int | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None
    trust_pickle: bool = False
    input_size: tuple[int, int] | None = None  # the size a timm model with a fixed one is built for
    file: ModelFile | None = field(default=None, compare=False, repr=False)

    def read(self) -> ModelRequest:
        """This request with the file its source names read (``read_source``): a missing, empty, corrupt or
        untrusted file is refused here, before any work, and every later ``load`` builds from this reading.

        Raises:
            ModelNotFoundError, ModelFileError, UntrustedPickleError, WeightsError: as ``read_source``.
        """
        if self.file is not None:
            return self
        file = read_source(self.source, trust_pickle=self.trust_pickle)
        return self if file is None else dataclasses.replace(self, file=file)

    @property
    def is_file(self) -> bool:
        return self.file is not None or Path(self.source).is_file()

    @property
    def recorded_input_size(self) -> tuple[int, int] | None:
        """The input size the file was written for (None: not read, not a model file, or no file)."""
        return self.file.input_size if self.file is not None else None

    def load(self) -> tuple[nn.Module, ModelSpec]:
        return load_model(
            self.file or self.source,
            num_classes=self.num_classes,
            model_args=self.model_args,
            weights=self.weights,
            trust_pickle=self.trust_pickle,
            input_size=self.input_size,
        )


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
