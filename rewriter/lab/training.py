"""Training: SGD with the schedule of paper 000 III-B by default, checkpoints every epoch, resumable, DDP-ready.

Paper 000 trains every model for 60 epochs with SGD (learning rate 0.1, momentum 0.9), dividing the rate by
10 every 20 epochs, batch size 64. ``TrainConfig`` defaults to that schedule scaled to the number of epochs
(a step every third of the run). Run under ``torchrun --nproc_per_node N`` and the same code trains with
DistributedDataParallel (gloo on the CPU, nccl on GPUs); only rank 0 writes checkpoints and shows progress.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .._errors import RewriterError
from .._files import atomic_path
from .._text import one_line
from .data import DataSource


class TrainError(RewriterError, RuntimeError):
    """Training cannot start or continue (a checkpoint that does not fit, a diverged loss)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; the defaults follow paper 000 III-B (SGD 0.1, momentum 0.9, /10 steps, batch 64)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    optimizer: Literal["sgd", "adam", "rmsprop"] = "sgd"
    step_every: int | None = None  # epochs between learning-rate steps; default a third of the run
    gamma: float = 0.1
    seed: int = 0
    workers: int = 0
    max_batches: int | None = None  # per epoch, for quick runs
    train_only: str | None = None  # a submodule path: only it is trained, the rest is frozen in eval mode
    evaluate_every_epoch: bool = True  # else only after the last epoch (the others record NaN)


Forward = Callable[[nn.Module, Any, torch.device], tuple[torch.Tensor, torch.Tensor]]


def plain_forward(net: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch
    return net(x.to(device)), y.to(device)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    accuracy: float
    test_accuracy: float
    lr: float


@dataclass
class TrainResult:
    model: nn.Module
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy if self.history else float("nan")


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


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":  # Keras' defaults (rho 0.9), as paper 004 trains
        return torch.optim.RMSprop(
            params, lr=config.lr, alpha=0.9, eps=1e-7, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.StepLR:
    step = config.step_every or max(1, math.ceil(config.epochs / 3))
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=config.gamma)


def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device, max_batches: int | None = None
) -> float:
    """Top-1 accuracy of ``model`` on ``loader`` (eval mode; training flags restored)."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    correct = total = 0
    try:
        with torch.no_grad():
            for i, (x, y) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                out = model(x.to(device))
                correct += int((out.argmax(1) == y.to(device)).sum())
                total += len(y)
    finally:
        for m, flag in flags.items():
            m.training = flag
    if dist.is_available() and dist.is_initialized():
        counts = torch.tensor([correct, total], dtype=torch.float64)
        dist.all_reduce(counts)
        correct, total = int(counts[0]), int(counts[1])
    return correct / max(total, 1)


def _save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, epoch: int, history, config) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": [asdict(h) for h in history],
        "config": asdict(config),
        "rng": torch.get_rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(
    model: nn.Module,
    data: DataSource,
    config: TrainConfig = TrainConfig(),
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    forward: Forward | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data``; one checkpoint per epoch at ``checkpoint`` if given.

    With ``resume``, training continues from the checkpoint's epoch with its optimizer, scheduler and random
    state. Under torchrun the model is wrapped in DistributedDataParallel and the data sharded. ``forward``
    maps (model, batch, device) to (scores, targets) for batches that carry more than (images, labels).
    """
    device = torch.device(device)
    rank, world = distributed()
    torch.manual_seed(config.seed + rank)
    model.to(device)
    frozen = _freeze_all_but(model, config.train_only)
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config)
    history: list[EpochRecord] = []
    start = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if resume:
        if path is None or not path.is_file():
            raise TrainError(f"cannot resume: no checkpoint at {path}")
        state = torch.load(path, map_location=device, weights_only=True)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise TrainError(f"checkpoint {path} does not fit the model: {one_line(err, limit=300)}") from err
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = [EpochRecord(**h) for h in state["history"]]
        start = state["epoch"] + 1
        torch.set_rng_state(state["rng"])
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=getattr(model, "partial_forward", False)
        )
    sampler = DistributedSampler(data.train, seed=config.seed) if world > 1 else None
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        data.train,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.workers,
        generator=generator,
        drop_last=len(data.train) > config.batch_size,
    )
    test_sampler = DistributedSampler(data.test, shuffle=False) if world > 1 else None
    test_loader = DataLoader(data.test, batch_size=256, sampler=test_sampler, num_workers=config.workers)
    loss_fn = nn.CrossEntropyLoss()
    try:
        for epoch in range(start, config.epochs):
            generator.manual_seed(config.seed + epoch)  # the same shuffle whether or not the run was resumed
            if sampler is not None:
                sampler.set_epoch(epoch)
            record = _run_epoch(
                net,
                loader,
                optimizer,
                loss_fn,
                device,
                epoch,
                config,
                progress and rank == 0,
                forward or plain_forward,
            )
            if config.evaluate_every_epoch or epoch == config.epochs - 1:
                record.test_accuracy = evaluate(model, test_loader, device)
            record.lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            history.append(record)
            if rank == 0 and path is not None:
                _save_checkpoint(path, model, optimizer, scheduler, epoch, history, config)
            if on_epoch is not None and rank == 0:
                on_epoch(record)
    finally:  # the caller's model keeps its own requires_grad flags
        for p in frozen:
            p.requires_grad_(True)
    return TrainResult(model, history)


def _freeze_all_but(model: nn.Module, path: str | None) -> list[nn.Parameter]:
    """Stop gradients to every parameter outside ``path`` (none if ``path`` is None); return those frozen."""
    if path is None:
        return []
    keep = {id(p) for p in model.get_submodule(path).parameters()}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in keep]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def _run_epoch(
    net, loader, optimizer, loss_fn, device, epoch: int, config: TrainConfig, show: bool, forward: Forward
) -> EpochRecord:
    from tqdm import tqdm

    net.train()
    if config.train_only is not None:  # frozen layers keep their batch-norm statistics and dropout off
        model = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
        model.eval()
        model.get_submodule(config.train_only).train()
    total_loss = correct = seen = 0.0
    batches = len(loader) if config.max_batches is None else min(len(loader), config.max_batches)
    bar = tqdm(total=batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show, leave=False)
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        out, y = forward(net, batch, device)
        loss = loss_fn(out, y)
        if not torch.isfinite(loss):
            raise TrainError(
                f"the loss diverged ({loss.item()}) in epoch {epoch + 1}; lower the learning rate (--lr)"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += float((out.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.update()
    bar.close()
    return EpochRecord(epoch, total_loss / max(seen, 1), correct / max(seen, 1), float("nan"), 0.0)


def history_json(history: list[EpochRecord]) -> list[dict[str, Any]]:
    return [asdict(h) for h in history]
