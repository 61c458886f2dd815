"""How each op acts on the receptive field: one small rule per op kind, looked up in a table.

A rule looks at one traced node (its module or function, arguments, and the layouts and shapes of its
inputs) and returns an ``OpEffect``: per spatial axis, the effective kernel and stride it applies, or that
it mixes all positions (unbounded receptive field), plus the layout of its output. Ops known to leave
positions alone (activations, norms, additions, reshapes) have rules too, so that an op missing from the
table is *reported* with the assumption made, never silently treated as harmless (fvcore's approach to
FLOP handlers, applied to receptive fields).

Third parties teach the analyzer a layer of their own with ``rewriter.analysis.register_layer`` (its rule,
channel action and FLOP formula together); ``register_module_rule`` and ``register_function_rule`` fill
this table alone.
"""

from __future__ import annotations

from . import layout_ops, mixing, positionwise, spatial, timm_leaves  # noqa: F401  (importing registers the rules)
from ._base import (
    BORDER_CATEGORIES,
    CHANNEL_ACTIONS,
    IDENTITY,
    LISTED_CATEGORIES,
    UNBOUNDED,
    AxisEffect,
    Category,
    ChannelAction,
    OpContext,
    OpEffect,
    Recorded,
    Rule,
    RuleRefusal,
    Several,
    TensorShape,
    channel_action,
    elementwise,
    has_module_rule,
    is_layout,
    module_rule,
    register_function_rule,
    register_module_rule,
    target_name,
    windowed,
)
from ._fallback import effect_of
from .positionwise import SHAPE_PRESERVING_MODULES

__all__ = [
    "BORDER_CATEGORIES",
    "CHANNEL_ACTIONS",
    "IDENTITY",
    "LISTED_CATEGORIES",
    "SHAPE_PRESERVING_MODULES",
    "UNBOUNDED",
    "AxisEffect",
    "Category",
    "ChannelAction",
    "OpContext",
    "OpEffect",
    "Recorded",
    "Rule",
    "RuleRefusal",
    "Several",
    "TensorShape",
    "channel_action",
    "effect_of",
    "elementwise",
    "has_module_rule",
    "is_layout",
    "module_rule",
    "register_function_rule",
    "register_module_rule",
    "target_name",
    "windowed",
]
