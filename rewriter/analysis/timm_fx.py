"""timm's own torch.fx support, used for models built from timm classes where plain tracing fails.

timm registers the modules fx cannot trace through (``timm.layers.register_notrace_module``: MobileViT's
blocks, VGG's ConvMlp, TinyViT's blocks, ...) and the functions to keep as single calls
(``register_notrace_function``: window partitions, position-embedding resampling). ``remedy`` turns a
failed trace into the next attempt: the registered class that the failure happened in becomes a leaf,
or, where no registered class contains it, timm's functions are kept whole. It is applied only where a
trace fails, not up front: a leaf hides the ops inside it (its effect on positions is then its rule's, or
is inferred from its shapes with a warning), and timm's list holds blocks that trace well too (NFNet's).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from torch import nn


def from_timm(model: nn.Module) -> bool:
    """Whether ``model`` holds modules of timm's classes (timm is then imported already)."""
    return "timm" in sys.modules and any(type(m).__module__.startswith("timm.") for m in model.modules())


def _registered() -> tuple[set[type], list[Callable]]:
    try:
        from timm.layers import get_notrace_functions, get_notrace_modules
    except ImportError:  # pragma: no cover - an old timm
        return set(), []
    return set(get_notrace_modules()), list(get_notrace_functions())


def remedy(
    model: nn.Module, failed_in: str | None, leaves: Sequence[type], functions: Sequence[Callable]
) -> tuple[tuple[type, ...], tuple[Callable, ...]] | None:
    """The leaf classes and autowrapped functions of the next attempt after a trace failed in module
    ``failed_in`` (a dotted path; '' or None: in the model's own forward), or None when timm offers no more."""
    if not from_timm(model):
        return None
    modules, wrapped = _registered()
    path = failed_in or ""
    while True:  # the innermost registered class the failure happened in becomes a leaf
        module = model.get_submodule(path) if path else model
        if type(module) in modules and type(module) not in leaves:
            return (*leaves, type(module)), tuple(functions)
        if not path:
            break
        path = path.rpartition(".")[0]
    if wrapped and not functions:
        return tuple(leaves), tuple(wrapped)
    return None
