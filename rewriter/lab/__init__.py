"""Measuring models on data: data sources, training, saturation, probes, per-image relevance and routing,
and trade-off studies. Imports every layer below it (analysis, models, engine), never render or the CLI."""

from __future__ import annotations

from .data import DataError, DataSource, Relabelled, dataset_labels, load_data, parse_data_spec
from .probes import ProbeReport, run_probes
from .relevance import LabelUnit, Relevance, RelevanceError, compute_relevance, label_units
from .routing import RoutedModel, Router, RoutingStats, gate_units, routing_stats
from .saturation import SaturationReport, compute_saturation
from .setup import ModelRequest, Setup, load_data_and_model, model_for_data, pretrain, resolve_input_size
from .skipping import SkipTraining, fit_routed_model
from .training import TrainConfig, TrainError, TrainResult, evaluate, train

__all__ = [
    "DataError",
    "DataSource",
    "LabelUnit",
    "ModelRequest",
    "ProbeReport",
    "Relabelled",
    "Relevance",
    "RelevanceError",
    "RoutedModel",
    "Router",
    "RoutingStats",
    "SaturationReport",
    "Setup",
    "SkipTraining",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "compute_relevance",
    "compute_saturation",
    "dataset_labels",
    "evaluate",
    "fit_routed_model",
    "gate_units",
    "label_units",
    "load_data",
    "load_data_and_model",
    "model_for_data",
    "parse_data_spec",
    "pretrain",
    "resolve_input_size",
    "routing_stats",
    "run_probes",
    "train",
]
