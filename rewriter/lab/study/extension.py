"""Extending a study (``study --extend``): its cells, trained for E0 epochs, go on to E1 > E0 from their
checkpoints, so that a summary's "train longer" can be followed without training every cell again.

The rule: a cell continues from its last checkpoint (weights, momentum, random state) with the schedule of
E1 epochs from the epoch it reached, so from epoch E0 + 1 on its rate is exactly a fresh E1-epoch run's.
Its first E0 epochs ran the E0-epoch schedule (StepLR at thirds of E0), which decays sooner: an extended
cell is close to a fresh E1-epoch run, not equal to it, unless both schedules agree on those epochs (each
cell records how many epochs did not, and the rates before and after the continuation; the summary and
the plots say which cells were extended). ``study.json`` records every extension and what it did to each
cell. A continuation that fails keeps the cell's earlier result and checkpoint (a later extension tries
again). An interrupted extension resumes with the same count; another count is refused until it is
finished, since the epochs it ran past the cell's record followed its schedule, which one extension record
(from one schedule to another) cannot tell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._errors import UsageError
from ..._files import write_json
from ..training import TrainConfig, scheduled_lr
from .folder import SETUP_FILE, load_json
from .record import CellRow, Extension, stopped

RULE = (
    "each cell continued from its checkpoint with the schedule of the new epoch count from the epoch it "
    "reached (from then on a fresh run's rates; its earlier epochs ran the shorter schedule)"
)
KEY = "extensions"  # where study.json lists the extensions


def check_longer(out: Path, epochs: int, recorded: dict[str, Any]) -> None:
    """Refuse ``--extend`` unless ``epochs`` is above the recorded count, or equal to it where an extension
    to it was recorded (resuming that extension).

    Raises:
        UsageError: what the study was trained for and what was asked.
    """
    before = recorded["setup"].get("epochs")
    resumed = [e.get("to_epochs") for e in recorded.get(KEY) or [] if isinstance(e, dict)][-1:] == [epochs]
    if not isinstance(before, int) or epochs > before or (epochs == before and resumed):
        return
    raise UsageError(
        f"`extend` needs `epochs` above the {before} the study in {out} was trained for, got epochs={epochs}; "
        f"give a larger `epochs` (e.g. epochs={2 * before})",
        param=("extend", "epochs"),
    )


def check_finished(epochs: int, continued: list[tuple[str, CellRow, Path]]) -> None:
    """Refuse to extend to ``epochs`` while the checkpoint of a cell to continue (``(cell id, its row, its
    checkpoint)``) holds an unfinished extension to another count: its epochs past the cell's record ran
    that count's schedule, which an extension record (one step from one schedule to another) cannot tell.

    Raises:
        UsageError: the unfinished extension, and the count that finishes it.
    """
    from ..checkpoints import checkpoint_progress

    stopped_within = []
    for cell_id, row, path in continued:
        progress = checkpoint_progress(path)
        if progress is not None and progress[0] > (row.epochs or 0) and progress[1] != epochs:
            stopped_within.append((cell_id, row.epochs, *progress))
    if not stopped_within:
        return
    cell_id, recorded, done, run = stopped_within[0]
    raise UsageError(
        f"`extend`: {len(stopped_within)} of the cells to continue stopped part way through an extension to "
        f"{run} epochs (such as {cell_id}: {done} epochs in its checkpoint, {recorded} in its record), and "
        f"epochs={epochs} would continue them under another schedule than the one they ran; finish that "
        f"extension first with epochs={run} extend=True, then extend to {epochs}",
        param=("extend", "epochs"),
    )


def planned(recorded: dict[str, Any], epochs: int) -> list[dict[str, Any]]:
    """The recorded extensions, with one from the recorded epoch count to ``epochs`` if that is more."""
    done = [e for e in recorded.get(KEY) or [] if isinstance(e, dict)]
    before = recorded["setup"].get("epochs")
    if isinstance(before, int) and epochs > before:
        done.append({"from_epochs": before, "to_epochs": epochs, "rule": RULE, "cells": {}})
    return done


def extension_of(earlier: CellRow, config: TrainConfig) -> Extension:
    """The record of continuing ``earlier`` (its curve) to ``config.epochs`` under ``config``'s schedule."""
    reached = len(earlier.curve)
    off = sum(1 for p in earlier.curve if abs(p.lr - scheduled_lr(config, int(p.epoch))) > 1e-9 * config.lr)
    return Extension(
        from_epochs=reached, to_epochs=config.epochs, lr_last=earlier.curve[-1].lr if reached else config.lr,
        lr_next=scheduled_lr(config, reached), epochs_off_fresh=off,
    )  # fmt: skip


def continues(earlier: CellRow, points: list[tuple[int, float, float]]) -> bool:
    """Whether a checkpoint's history (epoch, loss, lr per epoch) begins with ``earlier``'s curve: the
    checkpoint holds this cell's training, not another run's."""

    def known(points: list[tuple[int, float, float]]) -> list[tuple]:
        return [tuple(None if v != v else v for v in point) for point in points]  # NaN == NaN here

    mine = known([(int(p.epoch), p.loss, p.lr) for p in earlier.curve])
    return known(points[: len(mine)]) == mine


def record_outcomes(out: Path, outcomes: dict[str, Any]) -> None:
    """Write what the latest extension did to each cell (``cell id -> its Extension, or a sentence``) into
    ``study.json``."""
    path = out / SETUP_FILE
    record = load_json(path)
    entries = record.get(KEY) if isinstance(record, dict) else None
    if not entries or not isinstance(entries[-1], dict):
        return
    entries[-1]["cells"] = outcomes
    write_json(path, record)


def outcome(row: CellRow | None, epochs: int) -> Any:
    """What an extension to ``epochs`` did to a cell whose row is now ``row``."""
    if row is None:
        return "not run yet"
    if not row.ok:
        return f"failed: {row.error}"
    if row.not_extended is not None:
        return f"failed: {row.not_extended}; kept at {row.epochs} epochs"
    if row.extensions and row.extensions[-1].to_epochs == epochs:
        return {"continued": True, **row.extensions[-1].__dict__}
    if row.epochs == epochs:
        return f"trained fresh for {epochs} epochs"
    if stopped(row):
        return f"not continued: its training stopped at a non-finite loss (kept at {len(row.curve)} epochs)"
    return f"not continued (kept at {row.epochs} epochs)"
