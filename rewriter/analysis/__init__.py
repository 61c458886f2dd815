"""Static analysis of a network at an input size: the traced graph, receptive fields and border layers,
stages and their Information Field, and cost. Nothing here changes a model; it observes and returns values.

The layer at the bottom of ``rewriter``: it imports nothing from the packages above it.
"""

from __future__ import annotations

from .._text import axes_text
from .analyzer import Analysis, Layer, analyze, as_size, resolve_leaf_classes
from .cost import FLOP_CONVENTION, Cost, count_flops, count_params, flops_by_module
from .graph import LayerGraph, LayerNode, build_layer_graph, dominators
from .information_field import ALPHA, StageField, UnitField, information_fields, stage_field
from .modes import eval_mode, observing
from .receptive import BorderRule, LayerField, ReceptiveField, receptive_fields
from .rules import OpContext, OpEffect, register_function_rule, register_module_rule
from .rules import elementwise as elementwise_rule
from .stages import Block, Stage, Unit, find_blocks, find_stages, find_units, is_downsampling, stem
from .tracing import trace

__all__ = [
    "ALPHA",
    "FLOP_CONVENTION",
    "Analysis",
    "Block",
    "BorderRule",
    "Cost",
    "Layer",
    "LayerField",
    "LayerGraph",
    "LayerNode",
    "OpContext",
    "OpEffect",
    "ReceptiveField",
    "Stage",
    "StageField",
    "Unit",
    "UnitField",
    "analyze",
    "as_size",
    "axes_text",
    "build_layer_graph",
    "count_flops",
    "count_params",
    "dominators",
    "elementwise_rule",
    "eval_mode",
    "find_blocks",
    "find_stages",
    "find_units",
    "flops_by_module",
    "information_fields",
    "is_downsampling",
    "observing",
    "receptive_fields",
    "register_function_rule",
    "register_module_rule",
    "resolve_leaf_classes",
    "stage_field",
    "stem",
    "trace",
]
