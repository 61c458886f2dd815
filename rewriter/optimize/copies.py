"""Copies of a model for candidates, and what a candidate keeps of its parent.

A candidate is built from its parent by the strategy's own ``plan`` and ``apply`` on a copy of the parent
whose tensors live on the meta device (shapes only, no storage, no arithmetic), so hundreds of candidates
cost no more memory than one. ``check_structure`` is invariant 2 of ``rewriter.rewrite`` as far as shapes
can tell it: every tensor of the new model is one the plan declares new, or an input tensor of the same
shape and dtype; the values are compared when the chosen candidate is rewritten for real.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn

from .._errors import RewriteError
from ..analysis.fx_tracer import is_traced_module
from ..engine.plan import Plan

TensorInfo = tuple[tuple[int, ...], torch.dtype, "str | None"]  # shape, dtype, the baseline's key (None: new)


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are on the meta device (no data is copied)."""
    memo: dict[int, Any] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        meta = tensor.detach().to("meta")
        memo[id(tensor)] = (
            nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
        )
    return copy.deepcopy(model, memo)


def clone_structure(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s module tree that shares its tensors: every module object (and every dict, list
    or set it holds) is new, so setting a stride or replacing a submodule in the copy leaves ``model`` as it
    was; parameters and buffers are shared, which costs nothing on the meta device, where they hold no
    data. Traced modules (GraphModules, whose graph a strategy may rewrite) are deep-copied."""
    if is_traced_module(model):
        return copy.deepcopy(model)
    clone = model.__class__.__new__(model.__class__)
    state = {}
    for key, value in model.__dict__.items():
        if key == "_modules":
            value = {name: None if m is None else clone_structure(m) for name, m in value.items()}
        elif isinstance(value, (dict, list, set)):
            value = copy.copy(value)
        state[key] = value
    clone.__dict__.update(state)
    return clone


def zeros_copy(model: nn.Module) -> nn.Module:
    """A copy of a meta ``model`` on the CPU with every tensor zero: for counting and timing, not for use."""
    real = copy.deepcopy(model).to_empty(device="cpu")
    with torch.no_grad():
        for tensor in itertools.chain(real.parameters(), real.buffers()):
            tensor.zero_()
    return real


def is_meta(model: nn.Module) -> bool:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor is not None and tensor.is_meta


def tensor_infos(model: nn.Module) -> dict[str, TensorInfo]:
    """Every tensor of the baseline, recorded as its own origin."""
    return {key: (tuple(t.shape), t.dtype, key) for key, t in model.state_dict().items()}


def check_structure(parent: dict[str, TensorInfo], new: nn.Module, plan: Plan) -> dict[str, TensorInfo]:
    """Invariant 2 on shapes: each tensor of ``new`` is declared new by ``plan`` or is a tensor of the parent
    with the same shape and dtype. Returns the new model's tensors with their origin in the baseline.

    Raises:
        RewriteError: a tensor that is neither (the strategy changed a kept layer without saying so).
    """
    infos = {}
    for key, tensor in new.state_dict().items():
        shape, dtype = tuple(tensor.shape), tensor.dtype
        if plan.is_new(key):
            infos[key] = (shape, dtype, None)
            continue
        old = parent.get(plan.old_key(key))
        if old is None:
            raise RewriteError(
                f"invariant 2 broken: '{key}' is neither a kept tensor nor declared new by the plan"
            )
        if old[:2] != (shape, dtype):
            raise RewriteError(f"invariant 2 broken: kept tensor '{key}' changed shape {old[0]} -> {shape}")
        infos[key] = (shape, dtype, old[2])
    return infos
