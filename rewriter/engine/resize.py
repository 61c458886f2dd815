"""Rebuild a conv, linear or norm module at a new width, carrying its weights over channel by channel
(``scale-width``'s surgery; the channels kept come from ``rewriter.analysis.width_plan.selection``)."""

from __future__ import annotations

import torch
from torch import nn

#: the module kinds ``resize_module`` rebuilds
RESIZABLE = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.GroupNorm)


def _resize(
    old: torch.Tensor, rows: list[int], columns: list[int] | None, init: torch.Tensor
) -> torch.Tensor:
    """A parameter of a new shape from an old one: ``rows`` (and ``columns``, dim 1) name the old slice each
    new one copies (-1: a new one). New rows keep ``init``; old rows read new columns with zero weight."""
    row_index = torch.tensor([max(r, 0) for r in rows])
    row_kept = torch.tensor([r >= 0 for r in rows])
    taken = old.detach().index_select(0, row_index)
    if columns is not None:
        column_index = torch.tensor([max(c, 0) for c in columns])
        column_kept = torch.tensor([c >= 0 for c in columns]).view(1, -1, *([1] * (old.dim() - 2)))
        taken = taken.index_select(1, column_index) * column_kept
    mask = row_kept.view(-1, *([1] * (old.dim() - 1)))
    return torch.where(mask, taken.to(init), init)


def _conv(module: nn.Conv2d, out_index: list[int], in_index: list[int]) -> nn.Conv2d:
    depthwise = module.groups == module.in_channels == module.out_channels > 1
    groups = len(in_index) if depthwise else module.groups
    fresh = nn.Conv2d(
        len(in_index), len(out_index), module.kernel_size, module.stride, module.padding, module.dilation,
        groups=groups, bias=module.bias is not None, padding_mode=module.padding_mode,
    ).to(module.weight)  # fmt: skip
    if depthwise:
        fresh.weight.data = _resize(module.weight, out_index, None, fresh.weight.detach())
        return fresh
    # group g's outputs read group g's inputs, numbered from 0 within the group
    old_in, new_in, new_out = module.in_channels // groups, len(in_index) // groups, len(out_index) // groups
    parts = []
    for g in range(groups):
        rows = out_index[g * new_out : (g + 1) * new_out]
        columns = [c - g * old_in if c >= 0 else -1 for c in in_index[g * new_in : (g + 1) * new_in]]
        parts.append(
            _resize(module.weight, rows, columns, fresh.weight.detach()[g * new_out : (g + 1) * new_out])
        )
    fresh.weight.data = torch.cat(parts)
    return fresh


def _norm(module: nn.Module, out_index: list[int]) -> nn.Module:
    if isinstance(module, nn.GroupNorm):
        fresh = nn.GroupNorm(module.num_groups, len(out_index), module.eps, module.affine)
    else:
        fresh = nn.BatchNorm2d(
            len(out_index), module.eps, module.momentum, module.affine, module.track_running_stats
        )
    fresh = fresh.to(next(module.parameters(), next(module.buffers(), torch.empty(0))))
    for name in ("weight", "running_mean", "running_var"):
        if getattr(module, name, None) is not None:
            getattr(fresh, name).data = _resize(
                getattr(module, name), out_index, None, getattr(fresh, name).detach()
            )
    return fresh


def resize_module(module: nn.Module, out_index: list[int], in_index: list[int]) -> nn.Module:
    """``module`` (one of ``RESIZABLE``) at its new width: output channel i copies old channel
    ``out_index[i]`` and reads old input ``in_index[j]`` as input j (-1: new, initialised afresh; an old
    filter reads a new input with zero weight, so a grown model computes what the original did)."""
    if isinstance(module, nn.Conv2d):
        fresh = _conv(module, out_index, in_index)
    elif isinstance(module, nn.Linear):
        fresh = nn.Linear(len(in_index), len(out_index), bias=module.bias is not None).to(module.weight)
        fresh.weight.data = _resize(module.weight, out_index, in_index, fresh.weight.detach())
    elif isinstance(module, RESIZABLE):
        fresh = _norm(module, out_index)
    else:
        raise TypeError(
            f"cannot resize a {type(module).__name__}; only {', '.join(c.__name__ for c in RESIZABLE)}"
        )
    if getattr(module, "bias", None) is not None:
        fresh.bias.data = _resize(module.bias, out_index, None, fresh.bias.detach())
    return fresh
