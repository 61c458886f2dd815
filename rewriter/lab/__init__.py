"""Measuring models on data: data sources, training, saturation, probes, per-image relevance and routing,
and trade-off studies. Imports every layer below it (analysis, models, engine), never render or the CLI."""

from __future__ import annotations

from .batches import TensorImages, loader
from .convergence import ChanceCheck, check_chance
from .data import DataError, DataSource, Relabelled, dataset_labels, load_data, parse_data_spec
from .model_request import ModelRequest, model_for_data
from .precision import Precision, resolve_precision
from .probes import ProbeReport, run_probes
from .relevance import LabelUnit, Relevance, RelevanceError, compute_relevance, label_units
from .routing import RoutedModel, Router, RoutingStats, gate_units, routing_stats
from .sampling import holdout, sample, stratified_indices
from .saturation import SaturationReport, compute_saturation
from .skipping import SkipTraining, fit_routed_model
from .training import TrainConfig, TrainError, TrainResult, evaluate, train

__all__ = [
    "ChanceCheck",
    "DataError",
    "DataSource",
    "LabelUnit",
    "ModelRequest",
    "Precision",
    "ProbeReport",
    "Relabelled",
    "Relevance",
    "RelevanceError",
    "RoutedModel",
    "Router",
    "RoutingStats",
    "SaturationReport",
    "SkipTraining",
    "TensorImages",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "check_chance",
    "compute_relevance",
    "compute_saturation",
    "dataset_labels",
    "evaluate",
    "fit_routed_model",
    "gate_units",
    "holdout",
    "label_units",
    "load_data",
    "loader",
    "model_for_data",
    "parse_data_spec",
    "resolve_precision",
    "routing_stats",
    "run_probes",
    "sample",
    "stratified_indices",
    "train",
]
