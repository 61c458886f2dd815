"""The grid of a study (models x recipes x seeds), its shared setup, and the folder its cells live in.

A cell is identified by its model's readable name, a short hash of the model source (the bytes of a model
file, else the name), its recipe label and its seed, so two models whose names read alike (``sub/m.pt`` and
``sub-m.pt``) never share a result. ``OUT/study.json`` records the setup and the grid; a resumed study must
use the same setup, and a folder that holds something else is refused unless it is empty or ``force``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..._errors import RecipeError, UsageError
from ..._files import write_json
from ...engine.recipe import Recipe
from ...engine.registry import list_strategies
from .._ranges import bounded, check_ranges
from .errors import StudyError
from .extension import check_finished, check_longer, planned
from .folder import SETUP_FILE, check_folder, check_same_study, read_record
from .record import CellRow, stopped


@dataclass(frozen=True)
class Variant:
    """One column of the grid: a recipe under a short label (``baseline``, ``truncate``, ``stem``)."""

    label: str
    recipe: Recipe

    @property
    def is_baseline(self) -> bool:
        return not self.recipe.steps


def parse_variant(text: str) -> Variant:
    """``baseline`` (the unchanged model), a strategy name (one step, default parameters), or a YAML file
    (labelled by its stem; ``steps: []`` is a baseline too)."""
    if text == "baseline":
        return Variant("baseline", Recipe.empty())
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        recipe = Recipe.from_yaml(path, allow_empty=True)
        recipe.strategies()
        return Variant(path.stem, recipe)
    if text in list_strategies():
        return Variant(text, Recipe.from_strategies([text]))
    raise RecipeError(
        f"`recipe` '{text}' is neither 'baseline', a strategy ({', '.join(list_strategies())}) nor a YAML file",
        param="recipe",
    )


@dataclass(frozen=True)
class StudySetup:
    """What every cell shares; recorded in ``study.json`` so that a resumed study cannot mix setups.
    ``lr`` is a rate or ``"auto"`` (a range test on the baselines picks one rate for every cell)."""

    data: str
    input_size: tuple[int, int]
    epochs: int = bounded(30, low=1)
    lr: float | str = 0.1
    batch_size: int = bounded(64, low=1)
    momentum: float = bounded(0.9, low=0, high=1, open_high=True)
    weight_decay: float = bounded(0.0, low=0)
    max_batches: int | None = bounded(None, low=1)
    finetune_head: bool = False
    latency_repeats: int = bounded(15, low=1)
    warmup_epochs: int = bounded(1, low=0)
    precision: str = "fp32"  # auto, fp32, bf16 or fp16 (lab/precision.py); each cell records what it ran
    train_samples: int | None = bounded(None, low=1)  # a stratified sample of the training split (seed 0)
    test_samples: int | None = bounded(None, low=1)  # a stratified sample of the test split (seed 0)
    test_every: int = bounded(1, low=0)  # score the test split every K epochs (0: only after the last)
    num_classes: int | None = bounded(None, low=1)  # the head's classes (None: the data's, as in train)

    def __post_init__(self) -> None:
        check_ranges(self, StudyError)
        if self.lr != "auto":
            check_ranges(_Rate(self.lr), StudyError)
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise StudyError(
                f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}", param="precision"
            )
        if len(self.input_size) != 2 or any(not isinstance(s, int) or s < 1 for s in self.input_size):
            raise StudyError(
                f"input_size must be two positive sizes, got {self.input_size}", param="input_size"
            )

    @property
    def auto_lr(self) -> bool:
        return self.lr == "auto"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "input_size": list(self.input_size)}


@dataclass(frozen=True)
class _Rate:
    lr: float = bounded(0.1, low=0, open_low=True)


_MAX_PART = 64  # characters of a model or recipe in a cell's file name (the name must stay under 255 bytes)


def _readable(text: str) -> str:
    """``text`` as a file-name part: other characters become ``-``; a long one is cut and ends in a hash
    of the whole (so two long names that differ only at their end stay two files)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    if len(name) <= _MAX_PART:
        return name
    return f"{name[: _MAX_PART - 9]}~{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@functools.cache
def _file_digest(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_key(model: str, model_args: Mapping[str, Any] | None = None) -> str:
    """A short hash of what ``model`` builds: the bytes of a model file, else the name or import spec, and
    the model arguments it is built with (``width_mult=0.5`` is another model)."""
    path = Path(model)
    if os.path.isfile(path):  # False, not an error, for a name too long to be a path
        stat = path.stat()
        identity = "file:" + _file_digest(str(path.resolve()), stat.st_size, stat.st_mtime)
    else:
        identity = "name:" + model
    if model_args:
        identity += " args:" + json.dumps(dict(model_args), sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Cell:
    model: str
    variant: Variant
    seed: int
    source: str = ""
    model_args: tuple[tuple[str, Any], ...] = field(default=(), compare=False)  # in ``source`` already

    @property
    def id(self) -> str:
        source = self.source or source_key(self.model)
        return f"{_readable(self.model)}-{source}__{_readable(self.variant.label)}__seed{self.seed}"


CHECKPOINTS = "checkpoints"  # the folder of a study's checkpoints, in its ``out``


def checkpoint_file(folder: Path, cell: Cell) -> Path:
    """The checkpoint of ``cell`` in the checkpoints ``folder``."""
    return Path(folder) / f"{cell.id}.pt"


@dataclass
class Study:
    """A grid of models x variants x seeds and where its results live. ``extend`` allows a setup of more
    epochs than the folder's: its finished cells continue from their checkpoints (``extension.py``);
    ``keep_checkpoints`` keeps every cell's checkpoint in ``OUT/checkpoints/`` (a study that did is
    recorded as keeping them, and so does an extended one)."""

    models: Sequence[str]
    variants: Sequence[Variant]
    seeds: Sequence[int]
    setup: StudySetup
    out: Path
    retry_failed: bool = False
    force: bool = False
    model_args: Mapping[str, Any] = field(default_factory=dict)  # given to every model's builder
    extend: bool = False
    keep_checkpoints: bool = False
    cells: list[Cell] = field(init=False)
    ignored: list[str] = field(init=False, default_factory=list)  # files in cells/ that are no cell record

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise StudyError(f"two recipes share a label: {labels}; rename one of the files")
        if not self.models or not self.variants or not self.seeds:
            raise StudyError(
                "a study needs at least one `model`, one `recipe` and one seed", param=("model", "recipe")
            )
        if any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise StudyError(f"seeds must be whole numbers 0 or more, got {list(self.seeds)}")
        sources = {m: source_key(m, self.model_args) for m in self.models}
        args = tuple(sorted(self.model_args.items()))
        self.cells = [
            Cell(m, v, s, sources[m], args) for m in self.models for v in self.variants for s in self.seeds
        ]

    def cell_path(self, cell: Cell) -> Path:
        return self.out / "cells" / f"{cell.id}.json"

    def checkpoint_path(self, cell: Cell) -> Path:
        return checkpoint_file(self.out / CHECKPOINTS, cell)

    def keeps_checkpoints(self) -> bool:
        """Whether cells write their checkpoints: asked for now, by an extension, or recorded so earlier."""
        path = self.out / SETUP_FILE
        recorded = read_record(self.out, force=True) if path.is_file() else None
        return self.keep_checkpoints or self.extend or bool((recorded or {}).get("checkpoints"))

    def to_continue(self, cell: Cell) -> CellRow | None:
        """The cell's row if it finished with fewer epochs than the setup's, and its training did not stop
        at a NaN loss: an extended study continues it from its checkpoint."""
        row = self.read_cell(cell)
        if row is None or not row.ok or row.epochs is None or stopped(row):
            return None
        return row if row.epochs < self.setup.epochs else None

    def _needs_checkpoint(self, cell: Cell) -> bool:
        row = self.to_continue(cell)
        copied = row is not None and not cell.variant.is_baseline and row.same_as_baseline
        copied = copied and any(v.is_baseline for v in self.variants)
        return row is not None and not copied  # a copy of its baseline is copied again, not trained

    def check_checkpoints(self) -> None:
        """Refuse to continue cells that have no checkpoint, naming how to get one."""
        missing = [cell for cell in self.cells if self._needs_checkpoint(cell)
                   and not self.checkpoint_path(cell).is_file()]  # fmt: skip
        if missing:
            raise StudyError(
                f"{len(missing)} of {len(self.cells)} cells to train on to {self.setup.epochs} epochs have no "
                f"checkpoint to continue from (such as {self.checkpoint_path(missing[0])}): the study ran "
                "without keep_checkpoints=True. Run it with epochs="
                f"{self.setup.epochs} keep_checkpoints=True into a new `out` (every cell trained from scratch, "
                "and extendable later)",
                param=("keep_checkpoints", "epochs", "out"),
            )

    def read_cell(self, cell: Cell) -> CellRow | None:
        """The cell's recorded row; a file that is no cell record is the row of a failed cell."""
        path = self.cell_path(cell)
        if not path.is_file():
            return None
        try:
            return CellRow.read(path)
        except StudyError as err:
            return _blank(cell).failed(f"{err}; run again with --retry-failed")

    def pending(self) -> list[Cell]:
        """Cells without a result yet (or with a failed one, if ``retry_failed``) and finished ones to train
        on to more epochs (``to_continue``), baselines first (a recipe that changes nothing reuses their
        results)."""
        cells = [cell for cell in self.cells if not self._finished(cell) or self.to_continue(cell)]
        return sorted(cells, key=lambda cell: not cell.variant.is_baseline)

    def _finished(self, cell: Cell) -> bool:
        row = self.read_cell(cell)
        return row is not None and (row.ok or not self.retry_failed)

    def baseline_row(self, cell: Cell) -> CellRow | None:
        """The finished baseline cell of the same model and seed, if the grid has one (None for a baseline:
        its own earlier row is no baseline to copy)."""
        if cell.variant.is_baseline:
            return None
        for variant in self.variants:
            if variant.is_baseline:
                row = self.read_cell(Cell(cell.model, variant, cell.seed, cell.source, cell.model_args))
                if row is not None:
                    return row
        return None

    def recorded(self) -> dict[str, Any] | None:
        """The study.json of the folder, after checking that the folder may take this study: a study of the
        same setup and recipes, or (no study.json) an empty folder, or any with ``force``."""
        check_folder(self.out, force=self.force)
        recorded = read_record(self.out, force=self.force)
        if recorded is None and self.extend:
            raise UsageError(
                f"`extend`: {self.out} holds no study to extend; drop extend=True to start one there",
                param="extend",
            )
        if recorded is not None:
            now = _as_recorded(self.setup.to_json(), recorded["setup"])
            if self.extend and "epochs" in recorded["setup"]:
                now["epochs"] = recorded["setup"]["epochs"]  # compared below
            check_same_study(self.out, now, {v.label: v.recipe.to_dict() for v in self.variants}, recorded)
            if self.extend:
                check_longer(self.out, self.setup.epochs, recorded)
                continued = [(c.id, self.to_continue(c), self.checkpoint_path(c)) for c in self.cells]
                check_finished(self.setup.epochs, [(i, row, path) for i, row, path in continued if row])
            self.check_checkpoints()
        return recorded

    def prepare(self, extra: dict[str, Any] | None = None) -> None:
        """Create the folder and record the setup and the grid (a resumed study may extend the grid);
        ``extra`` adds fields (the learning rate a range test found)."""
        recorded = self.recorded() or {}
        (self.out / "cells").mkdir(parents=True, exist_ok=True)
        grid = {"models": list(self.models), "recipes": {v.label: v.recipe.to_dict() for v in self.variants},
                "seeds": list(self.seeds)}  # fmt: skip
        if recorded:
            grid["models"] = list(dict.fromkeys([*recorded["grid"]["models"], *grid["models"]]))
            grid["recipes"] = {**recorded["grid"]["recipes"], **grid["recipes"]}
            grid["seeds"] = sorted({*recorded["grid"]["seeds"], *grid["seeds"]})
        extras = {k: v for k, v in recorded.items() if k not in ("setup", "grid")}
        if recorded and self.extend:
            extras["extensions"] = planned(recorded, self.setup.epochs)
        if self.keeps_checkpoints():
            extras["checkpoints"] = True
        write_json(
            self.out / SETUP_FILE, {"setup": self.setup.to_json(), "grid": grid, **extras, **(extra or {})}
        )

    def rows(self) -> list[CellRow]:
        """Every finished cell in the folder (this grid's and earlier runs'), in a stable order. A file that
        is not a cell record is a failed row if it is one of this grid's cells, else listed in ``ignored``."""
        mine = {f"{cell.id}.json": cell for cell in self.cells}
        rows, self.ignored = [], []
        for path in sorted((self.out / "cells").glob("*.json")):
            try:
                rows.append(CellRow.read(path))
            except StudyError as err:
                if path.name in mine:
                    rows.append(_blank(mine[path.name]).failed(f"{err}; run again with --retry-failed"))
                else:
                    self.ignored.append(str(err))
        models = {m: i for i, m in enumerate(self.models)}
        recipes = {v.label: i for i, v in enumerate(self.variants)}

        def key(row: CellRow) -> tuple:
            return (models.get(row.model, len(models)), row.model, row.source,
                    recipes.get(row.recipe, len(recipes)), row.recipe, row.seed)  # fmt: skip

        return sorted(rows, key=key)


def _as_recorded(now: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """``now`` without the fields a folder written before they existed lacks, where they hold their default
    (such a folder's study ran with that default)."""
    defaults = {f.name: f.default for f in fields(StudySetup)}
    return {k: v for k, v in now.items() if k in recorded or v != defaults.get(k)}


def _blank(cell: Cell) -> CellRow:
    return CellRow(model=cell.model, recipe=cell.variant.label, seed=cell.seed, status="ok", source=cell.source,
                   is_baseline=cell.variant.is_baseline)  # fmt: skip
