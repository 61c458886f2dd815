"""Static analysis of a network at an input size: the traced graph, receptive fields and border layers,
stages and their Information Field, and cost. Nothing here changes a model; it observes and returns values.

The layer at the bottom of ``rewriter``: it imports nothing from the packages above it.
"""

from __future__ import annotations

from .._text import axes_text
from .analyzer import Analysis, Layer, as_size, resolve_leaf_classes
from .channels import ChannelCoupling, ChannelError, ChannelOp, channel_coupling, channel_op, conv_kind
from .custom_layers import FlopFormula, register_layer, sliding_window_rule
from .cuts import block_name, cut_points
from .flops_fvcore import Cost, count_flops, count_params, flops_by_module
from .flops_meta import FLOP_BACKENDS, FLOP_CONVENTION, FlopCount
from .fx_tracer import ModuleUse, is_traced, is_traced_module, live_nodes, module_use, trace, traced_code
from .graph import LayerGraph, LayerNode, build_layer_graph, dominators
from .heads import fixed_size_head
from .information_field import (
    ALPHA,
    StageField,
    UnitField,
    decomposed_channel_fields,
    information_fields,
    pointwise_reads,
    stage_field,
)
from .modes import eval_mode, observing
from .organizer import Iteration, StageState, organize, stage_states, unit_count
from .receptive import BorderRule, FieldPass, LayerField, ReceptiveField, field_pass, receptive_fields
from .rules import OpContext, OpEffect, register_function_rule, register_module_rule
from .rules import elementwise as elementwise_rule
from .sites import Site, downsampling_sites, module_ending_at
from .sizes import MAX_CHANNELS, MAX_SIDE, Limits, check_channels, limits, parse_size, unbounded
from .stages import Block, Stage, Unit, find_blocks, find_stages, find_units, is_downsampling, stem
from .traced_model import TracedModel, analyze, trace_model
from .width_plan import Width, flat_index, new_width, resized_nodes, scaled, selection, width_cost

__all__ = [
    "ALPHA",
    "FLOP_BACKENDS",
    "FLOP_CONVENTION",
    "MAX_CHANNELS",
    "MAX_SIDE",
    "Analysis",
    "Block",
    "BorderRule",
    "ChannelCoupling",
    "ChannelError",
    "ChannelOp",
    "Cost",
    "FieldPass",
    "FlopCount",
    "FlopFormula",
    "Iteration",
    "Layer",
    "LayerField",
    "LayerGraph",
    "LayerNode",
    "Limits",
    "ModuleUse",
    "OpContext",
    "OpEffect",
    "ReceptiveField",
    "Site",
    "Stage",
    "StageField",
    "StageState",
    "TracedModel",
    "Unit",
    "UnitField",
    "Width",
    "analyze",
    "as_size",
    "axes_text",
    "block_name",
    "build_layer_graph",
    "channel_coupling",
    "channel_op",
    "check_channels",
    "conv_kind",
    "count_flops",
    "count_params",
    "cut_points",
    "decomposed_channel_fields",
    "dominators",
    "downsampling_sites",
    "elementwise_rule",
    "eval_mode",
    "field_pass",
    "find_blocks",
    "find_stages",
    "find_units",
    "fixed_size_head",
    "flat_index",
    "flops_by_module",
    "information_fields",
    "is_downsampling",
    "is_traced",
    "is_traced_module",
    "limits",
    "live_nodes",
    "module_ending_at",
    "module_use",
    "new_width",
    "observing",
    "organize",
    "parse_size",
    "pointwise_reads",
    "receptive_fields",
    "register_function_rule",
    "register_layer",
    "register_module_rule",
    "resized_nodes",
    "resolve_leaf_classes",
    "scaled",
    "selection",
    "sliding_window_rule",
    "stage_field",
    "stage_states",
    "stem",
    "trace",
    "trace_model",
    "traced_code",
    "unbounded",
    "unit_count",
    "width_cost",
]
