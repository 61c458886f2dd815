"""The rewrite engine: strategies and their registry, recipes, the pipeline that plans, applies and
verifies each step on a copy, model surgery, before/after reports (latency with its spread), saving and
loading rewritten models, and exports for deployment (ONNX, torch.export) checked against the model.
Imports ``rewriter.analysis``, ``rewriter.models`` and the foundation, never the layers above."""

from __future__ import annotations

from .downsampling import (
    DownsamplingEdits,
    Insertion,
    PoolSpec,
    StrideChange,
    apply_downsampling_edits,
    check_replaceable,
    head_pooling,
    stride_text,
)
from .exporting import ExportCheck, ExportReport, check_exportable, check_format, export
from .pipeline import Result, as_recipe, rewrite
from .plan import Cut, Edit, Moved, Plan
from .recipe import Recipe, Step
from .registry import get_strategy, list_strategies, register_strategy
from .report import Latency, Measurement, Report, measure, measure_latency, time_call, time_model
from .resize import RESIZABLE, resize_module
from .saving import LoadedModel, load, load_model_file, save
from .strategy import Applied, Context, Parameter, Strategy, TailCut, WidthScaling, param, parameters
from .surgery import (
    adapt_input_width,
    extract_prefix,
    fresh_copy,
    resequence,
    sequence_changes,
    set_submodule,
    training_dependent_classes,
)

__all__ = [
    "RESIZABLE",
    "Applied",
    "Context",
    "Cut",
    "DownsamplingEdits",
    "Edit",
    "ExportCheck",
    "ExportReport",
    "Insertion",
    "Latency",
    "LoadedModel",
    "Measurement",
    "Moved",
    "Parameter",
    "Plan",
    "PoolSpec",
    "Recipe",
    "Report",
    "Result",
    "Step",
    "Strategy",
    "StrideChange",
    "TailCut",
    "WidthScaling",
    "adapt_input_width",
    "apply_downsampling_edits",
    "as_recipe",
    "check_exportable",
    "check_format",
    "check_replaceable",
    "export",
    "extract_prefix",
    "fresh_copy",
    "get_strategy",
    "head_pooling",
    "list_strategies",
    "load",
    "load_model_file",
    "measure",
    "measure_latency",
    "param",
    "parameters",
    "register_strategy",
    "resequence",
    "resize_module",
    "rewrite",
    "save",
    "sequence_changes",
    "set_submodule",
    "stride_text",
    "time_call",
    "time_model",
    "training_dependent_classes",
]
