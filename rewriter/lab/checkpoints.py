"""Training checkpoints: written after every epoch, and read back only into the run they came from.

A checkpoint holds the model, optimizer and scheduler states, the history, the random state, the
configuration and the name of the data. Resuming compares the configuration and the data with the
checkpoint's and refuses a difference, naming the fields: training on with the checkpoint's schedule while
recording other values would make the model file lie about how it was trained. The one difference a
caller may ask for is a longer run (``extend``): the checkpoint's run goes on to more epochs, its rate from
the epoch reached on set by the schedule of the new count (a StepLR at thirds of 24 epochs, not of 12).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._files import atomic_path
from .._text import one_line, root_cause
from .train_records import EpochRecord, TrainConfig, TrainError, scheduled_lr

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
    path: Path | None,
    model: nn.Module,
    optimizer,
    scheduler,
    config: TrainConfig,
    data: str,
    device,
    *,
    extend: bool = False,
) -> list[EpochRecord]:
    """Load the checkpoint at ``path`` into the model, optimizer and scheduler; return its history.

    With ``extend``, the checkpoint may hold a run of fewer epochs than ``config``: the scheduler is not
    restored but set to ``config``'s schedule at the epoch the checkpoint reached (``continue_schedule``).

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
    _check_same_run(path, state, config, data, extend=extend)
    try:
        optimizer.load_state_dict(state["optimizer"])
        if extend:
            continue_schedule(optimizer, scheduler, config, state["epoch"] + 1)
        else:
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


def checkpoint_progress(path: Path) -> tuple[int, int] | None:
    """(epochs done, epochs of the run) of the checkpoint at ``path``; None if there is none or it cannot
    be read (resuming from it says why). Its tensors are mapped, not read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        done, run = state["epoch"] + 1, state["config"]["epochs"]
    except Exception:  # no checkpoint, a truncated or foreign one: restore names the fault
        return None
    return (done, run) if isinstance(done, int) and isinstance(run, int) else None


def continue_schedule(
    optimizer, scheduler: torch.optim.lr_scheduler.StepLR, config: TrainConfig, epoch: int
) -> None:
    """Set ``scheduler`` (``config``'s StepLR) and the rates of ``optimizer`` to where ``config``'s schedule
    is at ``epoch``: the rate a fresh run of the new length uses there (``train_records.scheduled_lr``)."""

    factor = scheduled_lr(config, epoch) / config.lr
    rates = [base * factor for base in scheduler.base_lrs]
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler.load_state_dict({**scheduler.state_dict(), "last_epoch": epoch, "_last_lr": rates})


def _check_same_run(
    path: Path, state: dict[str, Any], config: TrainConfig, data: str, *, extend: bool = False
) -> None:
    """Refuse a resumption whose configuration or data differ from the checkpoint's, naming the fields
    (with ``extend``, a checkpoint of fewer epochs is the same run)."""
    recorded = {**asdict(TrainConfig()), **dict(state.get("config") or {})}
    now = asdict(config)
    free = _FREE | ({"epochs"} if extend and recorded.get("epochs", 0) <= now["epochs"] else set())
    changed = [f"{k} ({recorded[k]!r} in the checkpoint, {now[k]!r} now)" for k in now
               if k not in free and recorded.get(k) != now[k]]  # fmt: skip
    if state.get("data") not in (None, data):
        changed.append(f"data ({state['data']!r} in the checkpoint, {data!r} now)")
    if changed:
        raise TrainError(
            f"cannot resume from {path}: it was written with another setup, differing in {'; '.join(changed)}; "
            "resume with the checkpoint's values, or start again without resume=True (another `checkpoint`)",
            param=("resume", "checkpoint"),
        )
