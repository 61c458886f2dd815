"""Plain-text tables for the terminal: the per-layer analysis table and its summary."""

from __future__ import annotations

from .._text import axes_text, human, render_table
from ..analysis.analyzer import Analysis, Layer
from ..analysis.cost import FLOP_CONVENTION


def _productive_text(layer: Layer) -> str:
    if layer.productive is None:
        return "-"
    return "yes" if layer.productive else "NO"


def format_analysis(analysis: Analysis) -> str:
    """The per-layer table followed by the border layers, sizes and cost."""
    headers = [
        "#",
        "layer",
        "type",
        "kernel",
        "stride",
        "dil",
        "out size",
        "r_in min",
        "r_in max",
        "r_out min",
        "r_out max",
        "productive",
        "border",
    ]
    rows = []
    for i, layer in enumerate(analysis.layers, start=1):
        marks = []
        if layer.name == analysis.border_layer_min:
            marks.append("<- b_min")
        if layer.name == analysis.border_layer_max:
            marks.append("<- b_max")
        rows.append(
            [
                str(i),
                layer.name,
                layer.type,
                axes_text(layer.kernel_size),
                axes_text(layer.stride),
                axes_text(layer.dilation),
                axes_text(layer.output_size),
                axes_text(layer.r_in_min),
                axes_text(layer.r_in_max),
                axes_text(layer.r_out_min),
                axes_text(layer.r_out_max),
                _productive_text(layer),
                " ".join(marks),
            ]
        )
    table = render_table(headers, rows, align="><<>>>>>>>><<")
    return table + "\n\n" + format_summary(analysis)


def format_information_field(analysis: Analysis) -> str:
    """Per stage (paper 003): its input volume, and each unit's IF^w, IF^c, IF and IF gain."""
    blocks = []
    for field in analysis.stages:
        stage = field.stage
        h, w = stage.size
        rows = [
            [unit.name, unit.kind, "x".join(map(str, f.width)), str(f.channels), str(f.value),
             "-" if i == 0 else f"{f.gain:.2f}", "yes" if unit.repeatable else ""]
            for i, (unit, f) in enumerate(zip(stage.units, field.units, strict=True))
        ]  # fmt: skip
        title = f"stage {stage.index}: {h}x{w}x{stage.in_channels} input (V0 = {field.volume})"
        headers = ["unit", "kind", "IF^w", "IF^c", "IF", "IF gain", "repeatable"]
        blocks.append(title + "\n" + render_table(headers, rows, align="<<>>>><"))
    return "\n\n".join(blocks) + "\n\nIF and IF gain: paper 003 eq. 1-4, alpha = 3"


def format_summary(analysis: Analysis) -> str:
    h, w = analysis.input_size
    limit = "x".join(map(str, analysis.limit))
    tested = "its input" if analysis.border_rule == "input" else "its output"
    lines = [
        f"model {analysis.model} at {h}x{w}; border rule '{analysis.border_rule}': a conv/pool layer is "
        f"unproductive when the r_min of {tested} exceeds {limit} on every axis"
        + (" (the feature size)" if analysis.feature_size else ""),
        f"border layer b_min: {analysis.border_layer_min or 'none (every layer is productive)'}",
        f"border layer b_max: {analysis.border_layer_max or 'none'}",
        f"unproductive layers: {len(analysis.unproductive_layers)} of "
        f"{sum(1 for layer in analysis.layers if layer.productive is not None)} conv/pool layers",
    ]
    if analysis.min_productive_input_size is not None:
        size = analysis.min_productive_input_size
        lines.append(
            f"smallest input at which every layer is productive: {axes_text(size)} px"
            " (train near the receptive field of the last layer, dissertation 9.4.2)"
        )
    flops = (
        f"FLOPs {human(analysis.flops)} ({FLOP_CONVENTION})"
        if analysis.flops is not None
        else "FLOPs not counted"
    )
    lines.append(f"{flops}; parameters {human(analysis.params)}")
    if analysis.flops_skipped_ops:
        skipped = ", ".join(f"{op} x{n}" for op, n in analysis.flops_skipped_ops)
        lines.append(f"fvcore counted these ops as zero FLOPs: {skipped}")
    lines.extend(f"warning: {line}" for line in analysis.warnings)
    return "\n".join(lines)
