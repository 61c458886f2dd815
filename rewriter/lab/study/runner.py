"""Running a study: record the setup, find the shared learning rate when it is ``auto``, run the pending
cells on the chosen executor (or with DDP inside each cell under torchrun), write each as it finishes, time
the cells one at a time, and write the tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..._files import write_json
from .cells import CellJob, build_variant, fill_latency
from .errors import StudyError
from .executors import Executor, run_processes, run_ray, run_serial
from .folder import load_json
from .grid import CHECKPOINTS, Cell, Study
from .markdown import PlotCurves, PlotPareto, write_results
from .record import CellRow

LR_KEY = "lr_auto"  # where study.json keeps the rate a range test found, so that a resumed study reuses it


def recorded_lr(study: Study) -> float | None:
    """The rate recorded in the folder's study.json by an earlier ``lr auto`` run, if any."""
    path = study.out / "study.json"
    record = load_json(path) if path.is_file() else {}
    found = record.get(LR_KEY) if isinstance(record, dict) else None
    if found is None:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("lr"), (int, float)) or found["lr"] <= 0:
        raise StudyError(
            f"{path}: '{LR_KEY}' must hold a positive 'lr'; remove the entry to run the range test again"
        )
    return float(found["lr"])


def find_study_lr(study: Study, device: str | None = None) -> dict[str, Any]:
    """A range test (``rewriter.lab.lr_range.find_lr``) on every model's baseline at seed 0 with the study's
    optimizer settings; the smallest of the rates found is shared by every cell (a rate too high for one
    model would make its cells diverge). Returns what study.json records."""
    from ...engine.recipe import Recipe
    from ..lr_range import find_lr
    from ..training import TrainConfig
    from .grid import Variant

    setup = study.setup
    config = TrainConfig(
        batch_size=setup.batch_size, momentum=setup.momentum, weight_decay=setup.weight_decay
    )
    per_model = {}
    for model in study.models:
        cell = Cell(model, Variant("baseline", Recipe.empty()), 0, model_args=tuple(study.model_args.items()))
        net, data, _ = build_variant(cell, setup)
        per_model[model] = find_lr(net, data, config, device=device).lr
    method = "range test: rates 1e-6 .. 10 over 100 batches; the rate of the lowest smoothed loss / 10"
    return {"lr": min(per_model.values()), "per_model": per_model, "method": method}


def _study_lr(study: Study, device: str | None, rank: int) -> float:
    if not study.setup.auto_lr:
        return float(study.setup.lr)
    found = recorded_lr(study)
    if found is None:
        record = find_study_lr(study, device)
        if rank == 0:
            study.prepare({LR_KEY: record})
        found = record["lr"]
    return found


def run_study(
    study: Study,
    *,
    executor: Executor | None = None,
    workers: int = 1,
    device: str | None = None,
    on_cell: Callable[[Cell, CellRow], None] | None = None,
    progress: bool = True,
    plot: PlotPareto | None = None,
    curves: PlotCurves | None = None,
) -> list[CellRow]:
    """Run the pending cells, write each as it finishes, then the tables and, given ``plot``
    (``rewriter.render.plot_pareto``) and ``curves`` (``rewriter.render.plot_curves``), the Pareto plot and
    the training curves. ``executor`` says where the cells run (default:
    ``workers`` processes if more than one, else here); ``device`` is what they train on (None: cuda where
    there is one). Returns all rows."""
    from ..._progress import progress_bar
    from ..training import distributed

    executor = executor or Executor("processes" if workers > 1 else "serial", workers=workers)
    rank, world = distributed()
    if rank == 0:
        study.prepare()
    if world > 1:
        torch.distributed.barrier()
    job = CellJob(study.setup, _study_lr(study, device, rank), device, checkpoints=study.out / CHECKPOINTS,
                  keep=study.keeps_checkpoints())  # fmt: skip
    pending = study.pending()
    bar = progress_bar(total=len(study.cells), initial=len(study.cells) - len(pending), desc="study",
                       unit="cell", show=progress and rank == 0)  # fmt: skip

    def finish(cell: Cell, row: CellRow) -> None:
        if rank == 0:
            write_json(study.cell_path(cell), row.to_json())
            if on_cell is not None:
                on_cell(cell, row)
        bar.update()

    try:
        _dispatch(study, pending, job, finish, executor, world)
    finally:
        bar.close()
    if rank == 0:
        fill_latency(study)
        _record_extension(study)
        write_results(
            study, study.rows(), plot=plot, curves=curves, lr=job.lr if study.setup.auto_lr else None
        )
    return study.rows()


def _record_extension(study: Study) -> None:
    """What the latest extension did to each cell of this grid, in study.json (if the study was extended)."""
    from .extension import KEY, outcome, record_outcomes

    entries = (load_json(study.out / "study.json") or {}).get(KEY)
    if entries and isinstance(entries[-1], dict) and entries[-1].get("to_epochs") == study.setup.epochs:
        done = {cell.id: outcome(study.read_cell(cell), study.setup.epochs) for cell in study.cells}
        record_outcomes(study.out, {**entries[-1].get("cells", {}), **done})


def _dispatch(
    study: Study, pending: list[Cell], job: CellJob, finish, executor: Executor, world: int
) -> None:
    if world > 1:  # torchrun: every process takes part in every cell (DDP)
        run_serial(study, pending, job, finish, after=torch.distributed.barrier)
    elif executor.kind == "ray":
        run_ray(study, pending, job, finish, executor)
    elif executor.kind == "processes" and executor.workers > 1:
        run_processes(study, pending, job, finish, executor.workers)
    else:
        run_serial(study, pending, job, finish)
