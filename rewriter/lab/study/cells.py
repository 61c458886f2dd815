"""Running one study cell: build the model (initial weights from the seed), rewrite it by its recipe,
measure it, train it with the shared setup, and judge its training curve. A failure of the cell itself is
its result (``status`` failed, with the reason); it never stops the study."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..._errors import RewriterError, UntrustedPickleError
from ..._text import one_line
from .errors import StudyError
from .grid import Cell, Study, StudySetup, checkpoint_file
from .record import CellRow, EpochPoint

#: what a cell whose recipe changes nothing takes from its baseline
_RESULTS = ("test_accuracy", "params", "flops", "flops_static", "latency_ms_b1", "latency_ms_b32", "latency_noisy",
            "train_s", "border_layer_min", "convergence", "chance", "curve", "precision", "images_per_s",
            "extensions", "epochs")  # fmt: skip

_DATA_CACHE: dict[tuple[str, tuple[int, int]], Any] = {}


def _data(setup: StudySetup) -> Any:
    """The study's data (with its subsets), read once per process."""
    from ..data import load_data

    key = (setup.data, setup.input_size, setup.train_samples, setup.test_samples)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_data(setup.data, setup.input_size, train_samples=setup.train_samples,
                                     test_samples=setup.test_samples)  # fmt: skip
    return _DATA_CACHE[key]


@dataclass(frozen=True)
class CellJob:
    """What every cell of a run shares: the setup, the learning rate (the setup's, or the one a range test
    found for ``lr auto``), the device to train on (None: cuda where there is one), the folder of the cells'
    checkpoints and whether fresh cells write theirs (``keep``; a continued cell always updates its own)."""

    setup: StudySetup
    lr: float
    device: str | None = None
    checkpoints: Path | None = None
    keep: bool = False

    def run(
        self,
        cell: Cell,
        baseline: CellRow | None,
        *,
        latency: bool = True,
        progress: bool = False,
        earlier: CellRow | None = None,
    ) -> CellRow:
        """Run ``cell``; given its ``earlier`` row (fewer epochs), continue that from its checkpoint."""
        path = None if self.checkpoints is None else checkpoint_file(self.checkpoints, cell)
        return run_cell(cell, self.setup, lr=self.lr, device=self.device, latency=latency, baseline=baseline,
                        progress=progress, earlier=earlier,
                        checkpoint=path if self.keep or earlier is not None else None)  # fmt: skip


def head_name(model: nn.Module) -> str:
    """The last Linear (or conv) in registration order: the classifier that ``--finetune-head`` trains."""
    layers = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise StudyError(
            "`finetune_head`: the model has no Linear or conv layer to train", param="finetune_head"
        )
    return layers[-1]


def build_variant(cell: Cell, setup: StudySetup) -> tuple[nn.Module, Any, bool]:
    """The cell's model: built (initial weights from the seed) and rewritten by its recipe; the data; and
    whether the recipe changed the model."""
    from ...engine.pipeline import rewrite
    from ...models.sources import load_model_for_classes

    data = _data(setup)
    torch.manual_seed(cell.seed)
    from_file = Path(cell.model).is_file()
    if setup.num_classes is not None and setup.num_classes != data.num_classes:
        raise StudyError(
            f"num_classes={setup.num_classes}, but {setup.data} has {data.num_classes} classes: drop num_classes",
            param="num_classes",
        )
    args = {"model_args": dict(cell.model_args)} if cell.model_args else {}  # a model file takes none
    model, _ = load_model_for_classes(
        cell.model, setup.num_classes or data.num_classes, input_size=setup.input_size, **args
    )
    changed = False
    if cell.variant.recipe.steps:
        result = rewrite(
            model, cell.variant.recipe, input_size=setup.input_size, data=data, pretrained=from_file,
            measure_cost=False,
        )  # fmt: skip
        model, changed = result.model, not all(plan.is_noop for plan in result.plans)
    return model, data, changed


LATENCY_THREADS = 1  # a study times on one thread: steady beside other work, comparable between cells


def latencies(model: nn.Module, setup: StudySetup) -> dict[str, Any]:
    """Median latency at batch 1 and 32 on the CPU, timed on ``LATENCY_THREADS`` threads, and whether
    either figure is noisy (its spread over ``NOISY_SPREAD`` of the median)."""
    from ...engine.report import time_model

    model = model.cpu()
    previous = torch.get_num_threads()
    torch.set_num_threads(LATENCY_THREADS)
    try:
        timed = {
            b: time_model(model, setup.input_size, batch=b, repeats=setup.latency_repeats) for b in (1, 32)
        }
    finally:
        torch.set_num_threads(previous)
    figures: dict[str, Any] = {f"latency_ms_b{b}": round(t.median_ms, 4) for b, t in timed.items()}
    return {**figures, "latency_noisy": any(t.noisy for t in timed.values())}


def blank_row(
    cell: Cell, setup: StudySetup, *, lr: float | None = None, device: str | None = None
) -> CellRow:
    """A cell's row with nothing measured yet."""
    return CellRow(model=cell.model, recipe=cell.variant.label, seed=cell.seed, status="ok", source=cell.source,
                   epochs=setup.epochs, lr=lr, device=device, is_baseline=cell.variant.is_baseline)  # fmt: skip


def run_cell(
    cell: Cell,
    setup: StudySetup,
    *,
    lr: float | None = None,
    device: str | torch.device | None = "cpu",
    latency: bool = True,
    baseline: CellRow | None = None,
    progress: bool = False,
    earlier: CellRow | None = None,
    checkpoint: Path | None = None,
) -> CellRow:
    """Build, rewrite, measure and train one cell; return its row (``status`` ok or failed, never raises
    for a failure of the cell itself). Without ``latency`` the latency columns stay empty (``fill_latency``).
    A recipe that changes nothing builds the baseline's model with the same seed: given the ``baseline`` row
    of that seed, the cell takes its results instead of training the same model again. Training writes a
    checkpoint at ``checkpoint`` every epoch; given the cell's ``earlier`` row (fewer epochs than the
    setup's), training continues from that checkpoint instead (``extension.py``), its figures kept; if that
    fails, the cell keeps ``earlier`` as it was, with the reason in ``not_extended``. A baseline kept at fewer
    epochs is not copied."""
    from ..training import resolve_device

    rate = setup.lr if lr is None else lr
    row = earlier or blank_row(cell, setup, lr=None if rate == "auto" else rate)
    try:
        if rate == "auto":
            raise StudyError("run_cell needs the learning rate a range test found (lr=...) for lr 'auto'")
        device = resolve_device(device)
        row = row.replace(device=str(device))
        model, data, changed = build_variant(cell, setup)
        row = row.replace(same_as_baseline=not changed)
        if not changed and baseline is not None and baseline.ok and baseline.epochs in (None, setup.epochs):
            return row.replace(**{k: getattr(baseline, k) for k in _RESULTS})
        if earlier is None:
            row = _measured(row, model, cell, setup, latency)
        return _trained(row, model, data, cell, setup, float(rate), device, progress, checkpoint=checkpoint,
                        earlier=earlier)  # fmt: skip
    except Exception as err:  # a failed cell is a result: recorded with its reason, the study goes on
        if earlier is not None:  # a failed continuation keeps the finished result; a later extend tries again
            return earlier.replace(not_extended=cell_error(err, cell))
        return row.failed(cell_error(err, cell))


def _measured(row: CellRow, model: nn.Module, cell: Cell, setup: StudySetup, latency: bool) -> CellRow:
    from ...analysis.traced_model import analyze

    analysis = analyze(model, setup.input_size, name=cell.model)
    row = row.replace(params=analysis.params, flops=analysis.flops, flops_static=analysis.flops,
                      border_layer_min=analysis.border_layer_min)  # fmt: skip
    return row.replace(**latencies(model, setup)) if latency else row


def _config(model: nn.Module, cell: Cell, setup: StudySetup, lr: float):
    """The training configuration of a cell: the shared setup, the cell's seed, the study's rate."""
    from ..training import TrainConfig

    return TrainConfig(
        epochs=setup.epochs, batch_size=setup.batch_size, lr=lr, momentum=setup.momentum,
        weight_decay=setup.weight_decay, seed=cell.seed, max_batches=setup.max_batches,
        train_only=head_name(model) if setup.finetune_head else None, test_every=setup.test_every,
        warmup_epochs=setup.warmup_epochs, on_divergence="stop", precision=setup.precision,
    )  # fmt: skip


def _trained(
    row: CellRow, model, data, cell: Cell, setup: StudySetup, lr: float, device, progress, *,
    checkpoint: Path | None = None, earlier: CellRow | None = None,
) -> CellRow:  # fmt: skip
    from ..batches import loader
    from ..convergence import chance_level, judge
    from ..data import dataset_labels
    from ..routing import RoutedModel, routing_stats
    from ..training import train
    from .extension import continues, extension_of

    config = _config(model, cell, setup, lr)
    start = time.perf_counter()
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    result = train(model, data, config, device=device, progress=progress, checkpoint=checkpoint,
                   resume=earlier is not None, extend=earlier is not None)  # fmt: skip
    spent = time.perf_counter() - start
    if earlier is not None:
        if not continues(earlier, [(h.epoch, h.loss, h.lr) for h in result.history]):
            raise StudyError(
                f"the checkpoint {checkpoint} does not hold this cell's training (its curve differs from "
                f"the cell's); delete it and the cell's file {cell.id}.json to train the cell again"
            )
        row = row.replace(
            epochs=setup.epochs,
            extensions=(*earlier.extensions, extension_of(earlier, config)),
            not_extended=None,
        )
        spent += earlier.train_s or 0.0
    chance = chance_level(dataset_labels(data.test))
    accuracy = result.test_accuracy
    row = row.replace(
        train_s=round(spent, 2), test_accuracy=accuracy if accuracy == accuracy else None,
        curve=tuple(EpochPoint.of(h) for h in result.history), chance=round(chance, 6),
        convergence=judge(result.history, chance), precision=result.precision,
        images_per_s=result.throughput()["train_images_per_s"],
    )  # fmt: skip
    if isinstance(model, RoutedModel):  # input-adaptive depth: FLOPs of the units each test image ran
        model = model.cpu()
        stats = routing_stats(model, loader(data.test, batch_size=256), setup.input_size,
                              in_channels=data.in_channels)  # fmt: skip
        row = row.replace(flops=round(stats.mean_flops))
    return row


def cell_error(err: BaseException, cell: Cell) -> str:
    """The one line a failed cell records: our own errors as they are, others with their type and place;
    a refused pickle without the hint of a flag that ``study`` does not have."""
    if isinstance(err, UntrustedPickleError):
        return (
            f"{cell.model} holds a whole pickled model, and `rewriter study` never unpickles one; give the "
            "model as package.module:callable, or as a model file written by `rewriter rewrite` or `train`"
        )
    return one_line(err, limit=None if isinstance(err, RewriterError) else 300, where=True)


def fill_latency(study: Study, progress: Callable[[str], None] | None = None, *, again: bool = False) -> None:
    """Measure the latency of finished cells that lack it (every finished cell with ``again``), one at a
    time with nothing else running: cells trained in parallel processes are timed here, since timing beside
    training measures contention, and ``again`` times a study whose cells ran on a busy machine."""
    from ..._files import write_json

    # baselines first: a recipe that changes nothing takes their figures
    for cell in sorted(study.cells, key=lambda cell: not cell.variant.is_baseline):
        row = study.read_cell(cell)
        if row is None or not row.ok or (row.latency_ms_b1 is not None and not again):
            continue
        baseline = study.baseline_row(cell) if not cell.variant.is_baseline and row.same_as_baseline else None
        if baseline is not None and baseline.latency_ms_b1 is not None:
            timed = {
                key: getattr(baseline, key) for key in ("latency_ms_b1", "latency_ms_b32", "latency_noisy")
            }
        else:
            if progress:
                progress(f"timing {cell.id}")
            timed = latencies(build_variant(cell, study.setup)[0], study.setup)
        write_json(study.cell_path(cell), row.replace(**timed).to_json())
