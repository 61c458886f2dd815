"""Running a model for observation: eval mode with every submodule's own flag restored afterwards, and
hooked forward passes without gradients."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the duration, then restore every submodule's own ``training`` flag."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags.items():
            m.training = flag


@contextlib.contextmanager
def observing(
    model: nn.Module,
    hooks: Iterable[tuple[nn.Module, Callable]] = (),
    pre_hooks: Iterable[tuple[nn.Module, Callable]] = (),
) -> Iterator[None]:
    """Forward passes of ``model`` in eval mode, without gradients, with ``hooks`` (forward hooks) and
    ``pre_hooks`` (forward pre-hooks) attached to their modules; afterwards every hook is removed and every
    submodule's mode restored."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    handles += [module.register_forward_pre_hook(hook) for module, hook in pre_hooks]
    try:
        with eval_mode(model), torch.no_grad():
            yield
    finally:
        for handle in handles:
            handle.remove()
