"""Cost per module in fvcore's convention (``FlopCountAnalysis.by_module``, ``parameter_count``): a module's
FLOPs and parameters include its children's, ``""`` is the whole model. An op that is no module (an
addition, ``F.adaptive_avg_pool2d``) counts towards the module it runs in, as in fvcore's trace scopes;
a module called twice counts both calls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from torch import nn

from .graph import LayerGraph


def params_by_module(model: nn.Module) -> dict[str, int]:
    """Parameters of every module with its children's (shared ones once), ``""`` the total."""
    counts: Counter[str] = Counter()
    for name, param in model.named_parameters():  # named_parameters yields a shared parameter once
        for scope in _scopes(name.rpartition(".")[0]):
            counts[scope] += param.numel()
    return dict(counts)


def flops_by_module(
    graph: LayerGraph, by_node: Iterable[tuple[str, int]], modules: set[str]
) -> dict[str, int]:
    """The FLOPs of each node (``FlopCount.by_node``) summed into the module that runs it (a module node:
    the module; a function: the innermost module its name is scoped in) and every module above it."""
    counts: Counter[str] = Counter()
    for name, flops in by_node:
        node = graph[name]
        owner = node.target if node.is_module else _innermost(name, modules)
        for scope in _scopes(owner):
            counts[scope] += flops
    return dict(counts)


def _innermost(name: str, modules: set[str]) -> str:
    """The longest module path ``name`` (``layer1.0.add``) is scoped in (``layer1.0``; ``""`` at the top)."""
    parts = name.split(".")[:-1]
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def _scopes(path: str) -> list[str]:
    """``a.b.c`` -> ``["", "a", "a.b", "a.b.c"]``."""
    parts = path.split(".") if path else []
    return ["", *(".".join(parts[: i + 1]) for i in range(len(parts)))]
