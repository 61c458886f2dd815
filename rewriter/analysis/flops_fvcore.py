"""FLOPs from fvcore, measured on the real module (the reference for ``flops_meta.py``), and parameters.

fvcore counts one fused multiply-add as one flop (so its "FLOPs" are MACs, the convention of the papers'
GFLOPs figures); ops it has no formula for are counted as zero and listed, never hidden. fvcore jit-traces
the model and runs a real forward pass at the size; ``rewriter analyze`` counts the same figures on the
meta device (``flops_meta.py``) unless ``--flops-backend fvcore`` is given.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from .._errors import InputSizeError
from .._text import one_line
from .flops_meta import FLOP_CONVENTION
from .modes import eval_mode

__all__ = ["FLOP_CONVENTION", "Cost", "count_flops", "count_params", "flops_by_module"]


@dataclass(frozen=True)
class Cost:
    """What a forward pass of one image costs."""

    flops: int
    params: int
    skipped_ops: tuple[tuple[str, int], ...] = ()  # ops fvcore counted as zero, with how often they ran
    by_operator: tuple[tuple[str, int], ...] = ()  # fvcore's ``by_operator()``
    by_module: tuple[tuple[str, int], ...] = ()  # fvcore's ``by_module()``: children included, "" the total

    @property
    def skipped_summary(self) -> str:
        return ", ".join(f"{op} x{count}" for op, count in self.skipped_ops)


def _fvcore():
    """Import fvcore.nn lazily: importing it makes torch warn that ``torch.jit.script`` is deprecated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import fvcore.nn

    return fvcore.nn


def count_params(model: nn.Module) -> int:
    """Number of parameters, shared ones counted once (what fvcore's ``parameter_count(model)[""]`` sums)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: tuple[int, int], *, in_channels: int = 3) -> Cost:
    """FLOPs of one forward pass at ``input_size`` (batch 1, eval mode) and the parameter count.

    Raises:
        InputSizeError: the model does not run at this size.
    """
    (flops, by_operator, by_module), skipped = _flop_count(
        model,
        input_size,
        in_channels,
        lambda analysis: (
            int(analysis.total()),
            {k: int(v) for k, v in analysis.by_operator().items()},
            {k: int(v) for k, v in analysis.by_module().items()},
        ),
    )
    return Cost(
        flops=flops,
        params=count_params(model),
        skipped_ops=skipped,
        by_operator=tuple(sorted(by_operator.items())),
        by_module=tuple(by_module.items()),
    )


def flops_by_module(model: nn.Module, input_size: tuple[int, int], *, in_channels: int = 3) -> dict[str, int]:
    """FLOPs of one forward pass at ``input_size`` per module path (fvcore's ``by_module``; a module's count
    includes its children's)."""
    by_module, _ = _flop_count(
        model, input_size, in_channels, lambda analysis: {k: int(v) for k, v in analysis.by_module().items()}
    )
    return by_module


def _flop_count(model: nn.Module, input_size: tuple[int, int], in_channels: int, read):
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    example = torch.zeros(1, in_channels, *input_size, device=device, dtype=dtype)
    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)  # its per-op warnings are collected below and reported once
    try:
        with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jit tracer warnings about Python values in the forward
            analysis = _fvcore().FlopCountAnalysis(model, example)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            result = read(analysis)
            skipped: Counter[str] = analysis.unsupported_ops()
    except RuntimeError as err:
        h, w = input_size
        raise InputSizeError(f"fvcore cannot run the model at {h}x{w}: {one_line(err)}") from err
    finally:
        fvcore_logger.setLevel(level)
    return result, tuple(sorted(skipped.items()))
