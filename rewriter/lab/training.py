"""Training: SGD with the schedule of paper 000 III-B by default, checkpoints every epoch, resumable, DDP-ready.

Paper 000 trains every model for 60 epochs with SGD (learning rate 0.1, momentum 0.9), dividing the rate by
10 every 20 epochs, batch size 64. ``TrainConfig`` defaults to that schedule scaled to the number of epochs
(a step every third of the run); ``warmup_epochs`` raises the rate linearly from almost 0 over the first
epochs (the CLI's default is one), which keeps a rate found by ``find_lr`` from blowing up the first steps.
Run under ``torchrun --nproc_per_node N`` and the same code trains with DistributedDataParallel (gloo on the
CPU, nccl on GPUs); only rank 0 writes checkpoints and shows progress. In-memory data is read in whole
batches transformed on the training device (``batches.loader``); ``config.precision`` picks the number
format (``precision.py``: bf16 autocast and channels_last where the hardware computes bf16 natively).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from .batches import loader as batch_loader
from .checkpoints import restore, save_checkpoint
from .data import DataSource
from .precision import Precision, resolve_precision
from .scoring import tally
from .train_records import EpochRecord, TrainConfig, TrainError, TrainResult, scheduled_lr, step_every

__all__ = [  # the records are defined in train_records and belong to this module's interface too
    "EpochRecord", "TrainConfig", "TrainError", "TrainResult", "distributed", "evaluate", "evaluate_loss",
    "init_distributed", "make_optimizer", "resolve_device", "scheduled_lr", "train",
]  # fmt: skip

Forward = Callable[[nn.Module, Any, torch.device], tuple[torch.Tensor, torch.Tensor]]


def plain_forward(net: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch
    return net(x.to(device)), y.to(device)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda if available, else cpu; a CUDA device on a machine without one is refused."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise TrainError(
            f"device={str(device)!r} is not a device (cpu, cuda, cuda:1, ...): {err}", param="device"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(
            f"device='{device}': torch sees no CUDA on this machine; use device='cpu'", param="device"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TrainError(
            f"device='{device}': this machine has {torch.cuda.device_count()} CUDA devices", param="device"
        )
    return device


def distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) unless launched by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> bool:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return True


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``config`` over the parameters of ``model`` that require gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":  # Keras' defaults (rho 0.9), as paper 004 trains
        return torch.optim.RMSprop(
            params, lr=config.lr, alpha=0.9, eps=1e-7, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.StepLR:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_every(config), gamma=config.gamma)


def evaluate_loss(
    model: nn.Module,
    data: Dataset | Any,
    device: torch.device,
    *,
    precision: Precision | None = None,
    batch_size: int = 256,
) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of ``model`` on ``data`` (a dataset, read whole in batches of
    ``batch_size``, or a loader of (images, labels) batches); eval mode, training flags restored."""
    batches = (
        data if not isinstance(data, Dataset) else batch_loader(data, batch_size=batch_size, device=device)
    )
    counted = tally(model, batches, device, precision=precision)
    counts = torch.tensor(
        [counted.loss_sum, float(counted.correct.sum()), counted.images], dtype=torch.float64
    )
    if dist.is_available() and dist.is_initialized():  # nccl reduces tensors on the GPU only
        reduced = counts.to(device)
        dist.all_reduce(reduced)
        counts = reduced.cpu()
    total = max(float(counts[2]), 1.0)
    return float(counts[0]) / total, float(counts[1]) / total


def evaluate(
    model: nn.Module, data: Dataset | Any, device: torch.device, *, precision: Precision | None = None
) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (a dataset or a loader; eval mode, flags restored)."""
    return evaluate_loss(model, data, device, precision=precision)[1]


def train(
    model: nn.Module,
    data: DataSource,
    config: TrainConfig | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device | None = "cpu",
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    forward: Forward | None = None,
    until_epoch: int | None = None,
    extend: bool = False,
) -> TrainResult:
    """Train ``model`` in place on ``data``; one checkpoint per epoch at ``checkpoint`` if given.

    With ``resume``, training continues from the checkpoint's epoch with its optimizer, scheduler and random
    state; a checkpoint written with another configuration or data is refused (the differing fields are
    named). Under torchrun the model is wrapped in DistributedDataParallel and the data sharded. ``forward``
    maps (model, batch, device) to (scores, targets) for batches that carry more than (images, labels).
    ``device`` None is cuda where there is one. ``until_epoch`` stops after that many epochs of the
    configured run (its schedule unchanged, so the result is a prefix of the full run; resume to go on).
    With ``extend`` (and ``resume``), the checkpoint may come from a run of fewer epochs: training goes on
    to ``config.epochs`` with the schedule of that count from the epoch reached (``checkpoints.restore``).
    """
    config = config or TrainConfig()
    device = resolve_device(device)
    precision = resolve_precision(config.precision, device)
    rank, world = distributed()
    torch.manual_seed(config.seed + rank)
    precision.prepare(model.to(device))
    frozen = _freeze_all_but(model, config.train_only)
    optimizer = make_optimizer(model, config)
    scheduler = _scheduler(optimizer, config)
    history: list[EpochRecord] = []
    path = Path(checkpoint) if checkpoint is not None else None
    if resume:
        history = restore(path, model, optimizer, scheduler, config, data.name, device, extend=extend)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=getattr(model, "partial_forward", False)
        )
    loader, generator, test_loader = _loaders(data, config, device, (rank, world))
    step = TrainStep(optimizer, precision, device, forward or plain_forward)
    try:
        last = config.epochs if until_epoch is None else min(config.epochs, until_epoch)
        for epoch in range(len(history), last):
            generator.manual_seed(config.seed + epoch)  # the same shuffle whether or not the run was resumed
            if isinstance(getattr(loader, "sampler", None), DistributedSampler):
                loader.sampler.set_epoch(epoch)
            show = progress and rank == 0
            record = _run_epoch(net, loader, step, epoch, config, show)
            if config.tests_after(epoch) or record.diverged:
                began = time.perf_counter()
                record.test_loss, record.test_accuracy = evaluate_loss(model, test_loader, device,
                                                                       precision=precision)  # fmt: skip
                record.test_images_per_s = round(len(data.test) / (time.perf_counter() - began), 1)
            record.lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            history.append(record)
            if rank == 0 and path is not None:
                save_checkpoint(path, model, optimizer, scheduler, epoch, history, config, data.name)
            if on_epoch is not None and rank == 0:
                on_epoch(record)
            if record.diverged:
                break
    finally:  # the caller's model keeps its own requires_grad flags
        for p in frozen:
            p.requires_grad_(True)
    return TrainResult(model, history, precision=precision.label)


def _loaders(data: DataSource, config: TrainConfig, device: torch.device, shard: tuple[int, int]):
    """The shuffled training loader, the generator that seeds its order and augmentation, and the test
    loader; each process of a distributed run reads its own share."""
    generator = torch.Generator().manual_seed(config.seed)
    loader = batch_loader(
        data.train, batch_size=config.batch_size, shuffle=True, generator=generator, device=device,
        workers=config.workers, drop_last=len(data.train) > config.batch_size, shard=shard, seed=config.seed,
    )  # fmt: skip
    test = batch_loader(data.test, batch_size=256, device=device, workers=config.workers, shard=shard)
    return loader, generator, test


class TrainStep:
    """One optimisation step in the run's precision: forward under autocast, fp16's loss scaling."""

    def __init__(self, optimizer, precision: Precision, device: torch.device, forward: Forward) -> None:
        self.optimizer, self.precision, self.device, self.forward = optimizer, precision, device, forward
        self.scaler = precision.scaler(device)

    def loss(self, net: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, *rest = batch
        with self.precision.autocast(self.device):
            out, y = self.forward(net, (self.precision.inputs(x.to(self.device)), *rest), self.device)
            return nn.functional.cross_entropy(out.float(), y), out, y

    def backward(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def _freeze_all_but(model: nn.Module, path: str | None) -> list[nn.Parameter]:
    """Stop gradients to every parameter outside ``path`` (none if ``path`` is None); return those frozen."""
    if path is None:
        return []
    keep = {id(p) for p in model.get_submodule(path).parameters()}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in keep]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def warmup_factor(epoch: int, batch: int, batches: int, config: TrainConfig) -> float:
    """The share of the scheduled rate used at ``batch`` of ``epoch``: rising linearly from 1/steps to 1
    over the ``warmup_epochs`` first epochs (``steps`` their batches), then 1."""
    if epoch >= config.warmup_epochs:
        return 1.0
    return (epoch * batches + batch + 1) / (config.warmup_epochs * batches)


def _run_epoch(net, loader, step: TrainStep, epoch: int, config: TrainConfig, show: bool) -> EpochRecord:
    from .._progress import progress_bar

    net.train()
    if config.train_only is not None:  # frozen layers keep their batch-norm statistics and dropout off
        model = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
        model.eval()
        model.get_submodule(config.train_only).train()
    optimizer = step.optimizer
    total_loss = correct = seen = 0.0
    batches = len(loader) if config.max_batches is None else min(len(loader), config.max_batches)
    scheduled = [group["lr"] for group in optimizer.param_groups]
    began = time.perf_counter()
    record = EpochRecord(epoch, float("nan"), float("nan"), float("nan"), 0.0)
    bar = progress_bar(total=batches, desc=f"epoch {epoch + 1}/{config.epochs}", show=show, leave=False)
    try:
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
                group["lr"] = lr * warmup_factor(epoch, i, batches, config)
            loss, out, y = step.loss(net, batch)
            if not torch.isfinite(loss):
                if config.on_divergence == "stop":
                    record.diverged = True
                    break
                raise TrainError(
                    f"the loss diverged ({loss.item()}) in epoch {epoch + 1}; lower the learning rate (`lr`)",
                    param="lr",
                )
            step.backward(loss)
            total_loss += loss.item() * len(y)
            correct += float((out.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
            bar.update()
    finally:  # the scheduler steps from the scheduled rate, not the warmed-up one
        for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
            group["lr"] = lr
        bar.close()
    if seen and not record.diverged:
        record.loss, record.accuracy = total_loss / seen, correct / seen
        record.train_images_per_s = round(seen / (time.perf_counter() - began), 1)
    return record


def history_json(history: list[EpochRecord]) -> list[dict[str, Any]]:
    return [asdict(h) for h in history]
