"""A learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017; the
``lr_find`` of fastai): train a copy of the model for a few steps while the rate grows exponentially from
``low`` to ``high``, smooth the loss, and take the rate where the smoothed loss is lowest divided by 10,
which sits on the falling part of the curve, below the rates where the loss turns up. A model whose loss
never falls beyond the noise of its first steps is refused rather than given a rate picked from noise.

The model is copied first (the caller's weights and the global random state are left as they were), and the
batches are drawn with the configuration's seed, so the same model, data and seed give the same rate.
"""

from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass

import torch
from torch import nn

from ._ranges import bounded, check_ranges
from .batches import loader as batch_loader
from .data import DataSource
from .precision import resolve_precision
from .training import TrainConfig, TrainError, TrainStep, make_optimizer, plain_forward, resolve_device


@dataclass(frozen=True)
class RangeTest:
    """How the range test is run: rates from ``low`` to ``high`` over ``steps`` batches, loss smoothed
    with an exponential moving average of factor ``smoothing``; it stops early once the smoothed loss
    exceeds ``stop_factor`` times its lowest value."""

    low: float = bounded(1e-6, low=0, open_low=True)
    high: float = bounded(10.0, low=0, open_low=True)
    steps: int = bounded(100, low=10)
    smoothing: float = bounded(0.9, low=0, high=1, open_high=True)
    stop_factor: float = bounded(4.0, low=1, open_low=True)
    divisor: float = bounded(10.0, low=1)

    def __post_init__(self) -> None:
        check_ranges(self, TrainError)
        if self.high <= self.low:
            raise TrainError(f"the range test needs low < high, got {self.low:g} and {self.high:g}")


@dataclass(frozen=True)
class LrFound:
    """The rate chosen, and the curve it was read from (rate and smoothed loss per step)."""

    lr: float
    rates: tuple[float, ...]
    losses: tuple[float, ...]

    def to_json(self) -> dict[str, object]:
        return {"lr": self.lr, "rates": list(self.rates), "losses": list(self.losses)}


def find_lr(
    model: nn.Module,
    data: DataSource,
    config: TrainConfig | None = None,
    *,
    test: RangeTest = RangeTest(),
    device: str | torch.device | None = "cpu",
) -> LrFound:
    """The learning rate for training ``model`` on ``data`` with ``config``'s optimizer, batch size and
    momentum (its ``lr`` is ignored), by a range test on a copy of the model.

    Raises:
        TrainError: the loss never fell (no rate in the range trains this model).
    """
    config = config or TrainConfig()
    device = resolve_device(device)
    precision = resolve_precision(config.precision, device)
    net = precision.prepare(copy.deepcopy(model).to(device).train())
    optimizer = make_optimizer(net, config)
    train_step = TrainStep(optimizer, precision, device, plain_forward)
    factor = (test.high / test.low) ** (1 / (test.steps - 1))
    generator = torch.Generator().manual_seed(config.seed)
    loader = batch_loader(data.train, batch_size=config.batch_size, shuffle=True, generator=generator,
                          device=device, drop_last=len(data.train) > config.batch_size)  # fmt: skip
    rates, losses = [], []
    average = best = math.inf
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for step, batch in enumerate(_cycle(loader, test.steps)):
            lr = test.low * factor**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, _, _ = train_step.loss(net, batch)
            if not torch.isfinite(loss):
                break
            train_step.backward(loss)
            value = float(loss.detach())
            average = value if step == 0 else test.smoothing * average + (1 - test.smoothing) * value
            rates.append(lr)
            losses.append(average)
            best = min(best, average)
            if average > test.stop_factor * best:
                break
    return _choose(rates, losses, test)


def _cycle(loader, steps: int):
    """``steps`` batches of ``loader``, starting it again as often as needed."""
    done = 0
    while done < steps:
        for batch in loader:
            if done == steps:
                return
            yield batch
            done += 1


def _choose(rates: list[float], losses: list[float], test: RangeTest) -> LrFound:
    """The rate of the lowest smoothed loss over ``divisor``, if the loss fell from where it started (the
    median over the first tenth of the steps, where the rates are too small to learn) by more than 1 % and
    more than three times the spread of those first steps (a fall that is not batch noise)."""
    first = losses[: max(3, test.steps // 10)]
    start = statistics.median(first) if first else math.nan
    noise = statistics.pstdev(first) if len(first) > 1 else 0.0
    if len(losses) < 2 or not min(losses) < start - max(0.01 * start, 3 * noise):
        raise TrainError(
            f"the learning-rate range test found no rate between {test.low:g} and {test.high:g} at which the "
            "loss falls; give `lr` by hand, or check the model and the data",
            param="lr",
        )
    lowest = min(range(len(losses)), key=losses.__getitem__)
    return LrFound(rates[lowest] / test.divisor, tuple(rates), tuple(losses))
