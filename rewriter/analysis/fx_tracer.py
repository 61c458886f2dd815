"""Symbolic tracing with torch.fx, naming every node by its dotted module path.

Functional ops inside a module get the module path plus the op (``layer1.0.add``; a second call gets
``_1``); modules that have a receptive-field rule, or that the caller names, are traced as leaves.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.fx as fx
from torch import nn

from .._errors import TraceError
from .._text import one_line
from . import rules, timm_fx

try:  # generates the Python code of forward() when it is first needed, not at construction (~2 ms a model)
    from torch.fx._lazy_graph_module import _LazyGraphModule as _GraphModule
except ImportError:  # pragma: no cover - torch without it
    _GraphModule = fx.GraphModule


class _NamingTracer(fx.Tracer):
    """An fx tracer that names nodes by module path and treats ops with receptive-field rules as leaves.

    torchvision's ``NodePathTracer`` does the naming too, but it rescans all names for every node
    (quadratic: about 9 s for the 80 torchvision classifiers); a counter per name does it in linear time.
    """

    def __init__(self, leaf_classes: tuple[type, ...] = (), autowrap_functions: tuple = ()) -> None:
        super().__init__(autowrap_modules=(math,), autowrap_functions=autowrap_functions)
        self.leaf_classes = leaf_classes
        self._qualname = ""
        self.names: dict[fx.Node, str] = {}
        self._counts: dict[str, int] = {}
        self.failed_in: tuple[str, type] | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self.leaf_classes) or rules.has_module_rule(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        outer = self._qualname
        self._qualname = self.path_of_module(m)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = (self._qualname, type(m))
            raise
        finally:
            self._qualname = outer

    def create_proxy(
        self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **more: Any
    ) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **more)
        node = proxy.node
        if kind in ("call_module", "get_attr"):
            base = str(target)
        else:
            op_name = node.name if kind == "placeholder" else rules.target_name(node)
            base = f"{self._qualname}.{op_name}" if self._qualname else op_name
        count = self._counts.get(base, 0)
        self._counts[base] = count + 1
        self.names[node] = base if count == 0 else f"{base}_{count}"
        return proxy


def trace(
    model: nn.Module, *, leaf_classes: Sequence[type] = ()
) -> tuple[fx.GraphModule, dict[fx.Node, str]]:
    """Symbolically trace ``model`` (in its current mode) and return the GraphModule and node names.

    A model made of timm's classes that fails to trace is traced again with timm's own fx support
    (``timm_fx.remedy``: the registered module the failure is in as a leaf, then timm's wrapped functions).

    Raises:
        TraceError: fx cannot trace the model; the message names the module that broke and the remedy.
    """
    leaves, functions = tuple(leaf_classes), ()
    concrete = _optional_arguments(model)
    while True:
        tracer = _NamingTracer(leaves, functions)
        try:
            graph = tracer.trace(model, concrete_args=concrete or None)
            break
        except Exception as err:
            retry = timm_fx.remedy(
                model, tracer.failed_in[0] if tracer.failed_in else None, leaves, functions
            )
            if retry is None:
                raise TraceError(_trace_failure_message(model, tracer, err), param="leaf_modules") from err
            leaves, functions = retry
    return _GraphModule(tracer.root, graph, class_name=type(model).__name__), tracer.names


def _optional_arguments(model: nn.Module) -> dict[str, Any]:
    """``forward``'s optional arguments after the image, at their defaults: traced as symbols, ``if mask is
    not None`` would take the branch the model never takes when called with the image alone (Hiera)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return {}
    plain = (type(None), bool, int, float, str)
    return {
        p.name: p.default
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and isinstance(p.default, plain)
    }


def _trace_failure_message(model: nn.Module, tracer: _NamingTracer, err: Exception) -> str:
    reason = one_line(err, limit=300)
    where = tracer.failed_in
    if where is None or where[0] == "":
        return (
            f"torch.fx cannot trace {type(model).__name__}: {reason}. The failure is in the model's own "
            "forward(); make it traceable (no Python control flow on tensor values), or analyze a submodule"
        )
    path, cls = where
    return (
        f"torch.fx cannot trace module '{path}' ({cls.__name__}): {reason}. Remedy: add {cls.__name__} to "
        "leaf_modules to treat it as opaque (its receptive-field effect is then inferred from its shapes "
        "and reported as an assumption)"
    )


def is_traced(value: Any) -> bool:
    """Whether ``value`` is a placeholder of a trace in progress (the analysis tracing a model), not data: a
    module whose forward branches on data (a router) takes its static path then. Uses fx's public ``Proxy``."""
    return isinstance(value, fx.Proxy)


def is_traced_module(module: nn.Module) -> bool:
    """Whether ``module`` is a traced one (a GraphModule: its forward is a graph a rewrite may edit)."""
    return isinstance(module, fx.GraphModule)


def traced_code(model: nn.Module) -> list[str]:
    """The generated forward code of every traced part of ``model`` (the GraphModules a rewrite left in it),
    in module order: part of a model's identity that ``repr`` does not show."""
    return [m.code for m in model.modules() if is_traced_module(m)]


def live_nodes(output: fx.Node) -> set[fx.Node]:
    """The nodes ``output`` depends on, itself included."""
    live, stack = set(), [output]
    while stack:
        node = stack.pop()
        if node not in live:
            live.add(node)
            stack.extend(node.all_input_nodes)
    return live


@dataclass(frozen=True)
class ModuleUse:
    """Which submodules a traced forward calls (``called``), and of those the ones its output depends on
    (``live_calls``); the attributes it reads directly that the output depends on (``live_reads``). Dotted
    module paths, as ``named_modules`` gives them."""

    called: frozenset[str]
    live_calls: frozenset[str]
    live_reads: frozenset[str]


def module_use(traced: fx.GraphModule) -> ModuleUse:
    """What ``traced`` (a trace made by ``trace``) calls and reads, and what of it reaches the output."""
    live = live_nodes(next(n for n in traced.graph.nodes if n.op == "output"))
    return ModuleUse(
        called=frozenset(str(n.target) for n in traced.graph.nodes if n.op == "call_module"),
        live_calls=frozenset(str(n.target) for n in live if n.op == "call_module"),
        live_reads=frozenset(str(n.target) for n in live if n.op == "get_attr"),
    )
