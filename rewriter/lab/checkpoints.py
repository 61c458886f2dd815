"""Training checkpoints: written after every epoch, and read back only into the run they came from.

A checkpoint holds the model, optimizer and scheduler states, the history, the random state, the
configuration and the name of the data. Resuming compares the configuration and the data with the
checkpoint's and refuses a difference, naming the fields: training on with the checkpoint's schedule while
recording other values would make the model file lie about how it was trained.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._files import atomic_path
from .._text import one_line, root_cause
from .train_records import EpochRecord, TrainConfig, TrainError

#: fields that may differ between a run and its resumption: they do not change what is computed
_FREE = frozenset({"workers", "test_every"})  # how it is run, not what is trained


def save_checkpoint(
    path: Path, model: nn.Module, optimizer, scheduler, epoch: int, history, config: TrainConfig, data: str
) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": [asdict(h) for h in history],
        "config": asdict(config),
        "data": data,
        "rng": torch.get_rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def restore(
    path: Path | None, model: nn.Module, optimizer, scheduler, config: TrainConfig, data: str, device
) -> list[EpochRecord]:
    """Load the checkpoint at ``path`` into the model, optimizer and scheduler; return its history.

    Raises:
        TrainError: no checkpoint, a checkpoint of another model, configuration or data, or one that
            cannot be read.
    """
    if path is None or not path.is_file():
        raise TrainError(f"cannot resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated or foreign file: name it, never unpickle it
        raise TrainError(f"cannot resume from {path}: not a readable checkpoint ({root_cause(err)})") from err
    if not isinstance(state, dict) or not {"model", "optimizer", "scheduler", "history", "epoch"} <= set(
        state
    ):
        raise TrainError(f"cannot resume from {path}: it is not a checkpoint written by `rewriter train`")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise TrainError(f"checkpoint {path} does not fit the model: {one_line(err, limit=300)}") from err
    _check_same_run(path, state, config, data)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise TrainError(f"checkpoint {path}: its optimizer state does not fit ({err})") from err
    torch.set_rng_state(state["rng"].cpu())
    history = [EpochRecord(**h) for h in state["history"]]
    if len(history) != state["epoch"] + 1:
        raise TrainError(
            f"checkpoint {path}: {len(history)} epochs of history for epoch {state['epoch'] + 1}"
        )
    return history


def _check_same_run(path: Path, state: dict[str, Any], config: TrainConfig, data: str) -> None:
    """Refuse a resumption whose configuration or data differ from the checkpoint's, naming the fields."""
    recorded = {**asdict(TrainConfig()), **dict(state.get("config") or {})}
    now = asdict(config)
    changed = [f"{k} ({recorded[k]!r} in the checkpoint, {now[k]!r} now)" for k in now
               if k not in _FREE and recorded.get(k) != now[k]]  # fmt: skip
    if state.get("data") not in (None, data):
        changed.append(f"data ({state['data']!r} in the checkpoint, {data!r} now)")
    if changed:
        raise TrainError(
            f"cannot resume from {path}: it was written with another setup, differing in {'; '.join(changed)}; "
            "resume with the checkpoint's values, or start again without --resume (another --checkpoint)"
        )
