"""Rendering the records the layers below produce: plots (matplotlib, loaded lazily) and terminal tables."""

from __future__ import annotations

from .plots import plot_pareto, plot_probes, plot_receptive_fields, plot_relevance, plot_saturation
from .tables import format_analysis, format_information_field, format_summary

__all__ = [
    "format_analysis",
    "format_information_field",
    "format_summary",
    "plot_pareto",
    "plot_probes",
    "plot_receptive_fields",
    "plot_relevance",
    "plot_saturation",
]
