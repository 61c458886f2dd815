"""Rendering the records the layers below produce: plots (matplotlib, loaded lazily) and terminal tables."""

from __future__ import annotations

from .curves import plot_curves
from .fronts import format_front, format_sweep, plot_front, plot_sweep
from .plots import plot_pareto, plot_probes, plot_receptive_fields, plot_relevance, plot_saturation
from .tables import format_analysis, format_information_field, format_summary

__all__ = [
    "format_analysis",
    "format_front",
    "format_information_field",
    "format_summary",
    "format_sweep",
    "plot_curves",
    "plot_front",
    "plot_pareto",
    "plot_probes",
    "plot_receptive_fields",
    "plot_relevance",
    "plot_saturation",
    "plot_sweep",
]
