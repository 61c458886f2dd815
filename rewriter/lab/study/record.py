"""The record of one study cell: what ``OUT/cells/<id>.json`` holds and what a row of ``results.csv`` shows.

``CellRow`` is a frozen dataclass with typed fields; ``to_json`` and ``from_json`` round-trip it, and the CSV
columns are its fields (the per-epoch curve stays in the JSON). ``from_json`` checks every field's type and
names the file and the fault, so a foreign, empty or hand-edited cell file is reported, never half-read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import StudyError

Status = Literal["ok", "failed"]


@dataclass(frozen=True)
class EpochPoint:
    """One epoch of a cell's training curve (train figures are running means over the epoch's batches)."""

    epoch: int
    loss: float
    accuracy: float
    test_loss: float
    test_accuracy: float
    lr: float

    @classmethod
    def of(cls, record: Any) -> EpochPoint:
        """From a ``rewriter.lab.training.EpochRecord``."""
        return cls(
            record.epoch, record.loss, record.accuracy, record.test_loss, record.test_accuracy, record.lr
        )


@dataclass(frozen=True)
class Extension:
    """One continuation of a cell (``study --extend``): trained for ``from_epochs``, then continued from its
    checkpoint to ``to_epochs`` with the schedule of ``to_epochs`` from the epoch reached. ``lr_last`` is
    the rate of its last epoch before, ``lr_next`` of the first after (a fresh ``to_epochs`` run's rate
    there); ``epochs_off_fresh`` counts its first ``from_epochs`` epochs that ran at another rate than a
    fresh ``to_epochs`` run's (0: the cell is that fresh run)."""

    from_epochs: int
    to_epochs: int
    lr_last: float
    lr_next: float
    epochs_off_fresh: int

    @staticmethod
    def history(extensions: tuple[Extension, ...]) -> str:
        """``fresh``, or the epochs a cell was trained for and continued to: ``12>24>36``."""
        if not extensions:
            return "fresh"
        return ">".join(str(e) for e in [extensions[0].from_epochs, *(x.to_epochs for x in extensions)])


@dataclass(frozen=True)
class CellRow:
    """One cell's result. ``source`` tells models apart that share a display name; ``convergence`` is the
    mark of ``rewriter.lab.convergence`` (None for a failed cell); ``chance`` the test split's chance level."""

    model: str
    recipe: str
    seed: int
    status: Status
    source: str = ""
    test_accuracy: float | None = None
    params: int | None = None
    flops: int | None = None
    flops_static: int | None = None
    latency_ms_b1: float | None = None
    latency_ms_b32: float | None = None
    latency_noisy: bool = False  # a latency's spread is over NOISY_SPREAD of its median: no delta from it
    train_s: float | None = None
    epochs: int | None = None
    lr: float | None = None
    device: str | None = None
    precision: str | None = None  # what the cell trained in (e.g. "bf16 + channels_last")
    images_per_s: float | None = None  # training throughput, the median over its epochs
    border_layer_min: str | None = None
    is_baseline: bool = False
    same_as_baseline: bool = False
    convergence: str | None = None
    chance: float | None = None
    error: str | None = None
    curve: tuple[EpochPoint, ...] = field(default=(), metadata={"csv": False})
    extensions: tuple[Extension, ...] = field(default=(), metadata={"csv": False})  # study --extend
    # why the latest continuation of this cell failed: it kept its earlier result (None: none failed)
    not_extended: str | None = field(default=None, metadata={"csv": False})

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def replace(self, **changes: Any) -> CellRow:
        return dataclasses.replace(self, **changes)

    def failed(self, error: str) -> CellRow:
        """This cell as failed with ``error`` (the figures measured before the failure are kept)."""
        return self.replace(status="failed", error=error, convergence=None)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["curve"] = [_finite_or_none(dataclasses.asdict(p)) for p in self.curve]
        data["extensions"] = [dataclasses.asdict(e) for e in self.extensions]
        return _finite_or_none(data)

    @classmethod
    def from_json(cls, data: Any, *, where: str = "a cell record") -> CellRow:
        """A row from its JSON (``where``, e.g. the file, names it in errors).

        Raises:
            StudyError: not an object, a required field missing, an unknown field, a wrong type.
        """
        if not isinstance(data, dict):
            raise StudyError(f"{where}: not a cell record (a JSON {type(data).__name__}, expected an object)")
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(data) - set(hints))
        if unknown:
            raise StudyError(f"{where}: not a cell record (unknown fields {', '.join(unknown)})")
        missing = [
            f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in data
        ]
        if missing:
            raise StudyError(f"{where}: not a cell record (no {', '.join(missing)})")
        values = dict(data)
        if "curve" in values:
            values["curve"] = tuple(_epoch(p, where) for p in _list(values["curve"], where))
        if "extensions" in values:
            extensions = _list(values["extensions"], where, "extensions")
            values["extensions"] = tuple(_extension(e, where) for e in extensions)
        for name, value in values.items():
            if name not in ("curve", "extensions"):
                values[name] = _checked(value, hints[name], f"{where}: field '{name}'")
        return cls(**values)

    @classmethod
    def read(cls, path: Path) -> CellRow:
        """The row in a cell file; an unreadable, empty or foreign file raises ``StudyError`` naming it."""
        try:
            text = path.read_text()
        except UnicodeDecodeError as err:
            raise StudyError(f"{path}: not a cell record this study wrote (not UTF-8)") from err
        except OSError as err:
            raise StudyError(f"{path}: cannot be read ({err.strerror or err})") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            fault = "empty" if not text.strip() else f"not JSON (line {err.lineno}: {err.msg})"
            raise StudyError(f"{path}: {fault}") from err
        except (RecursionError, ValueError) as err:  # nested too deeply, a 5000-digit number
            raise StudyError(f"{path}: not a cell record this study wrote ({type(err).__name__})") from err
        return cls.from_json(data, where=str(path))


def stopped(row: CellRow) -> bool:
    """Whether the cell's training ended at a NaN or infinite loss (its last epoch has no finite loss)."""
    return bool(row.curve) and not math.isfinite(row.curve[-1].loss)


#: the columns of results.csv: every field but the curve and the extensions, which ``extended`` sums up
COLUMNS: tuple[str, ...] = (
    *(f.name for f in dataclasses.fields(CellRow) if f.metadata.get("csv", True)),
    "extended",
)


def csv_row(row: CellRow) -> dict[str, Any]:
    data = {**row.to_json(), "extended": Extension.history(row.extensions) if row.extensions else None}
    return {name: data[name] for name in COLUMNS}


def _finite_or_none(data: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: a float that is not finite is written as null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in data.items()}


def _list(value: Any, where: str, name: str = "curve") -> list:
    if not isinstance(value, list):
        raise StudyError(f"{where}: field '{name}' must be a list, got {type(value).__name__}")
    return value


def _extension(value: Any, where: str) -> Extension:
    hints = typing.get_type_hints(Extension)
    if not isinstance(value, dict) or set(value) != set(hints):
        raise StudyError(f"{where}: an entry of 'extensions' must have the fields {', '.join(hints)}")
    return Extension(
        **{k: _checked(v, hints[k], f"{where}: extensions field '{k}'") for k, v in value.items()}
    )


def _epoch(value: Any, where: str) -> EpochPoint:
    names = [f.name for f in dataclasses.fields(EpochPoint)]
    if not isinstance(value, dict) or set(value) != set(names):
        raise StudyError(f"{where}: an epoch of 'curve' must have the fields {', '.join(names)}")
    numbers = {k: _checked(v, float | None, f"{where}: curve field '{k}'") for k, v in value.items()}
    return EpochPoint(**{k: math.nan if v is None else v for k, v in numbers.items()})


def _checked(value: Any, hint: Any, what: str) -> Any:
    """``value`` if it has the annotated type (an int is a float; None where the hint allows it)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return value
        if typing.get_origin(option) is Literal and value in typing.get_args(option):
            return value
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    expected = " or ".join(_name(o) for o in options)
    raise StudyError(f"{what} must be {expected}, got {json.dumps(value)[:60]}")


def _name(option: Any) -> str:
    if option is type(None):
        return "null"
    if typing.get_origin(option) is Literal:
        return "/".join(map(repr, typing.get_args(option)))
    return getattr(option, "__name__", str(option))
