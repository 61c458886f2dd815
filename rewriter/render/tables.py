"""Plain-text tables for the terminal: the per-layer analysis table and its summary."""

from __future__ import annotations

from .._text import axes_text, human, render_table
from ..analysis.analyzer import Analysis
from ..analysis.flops_meta import FLOP_CONVENTION


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def _test_header(analysis: Analysis) -> str:
    """The own-test column, named for the test: ``r_in min > 32`` (the feature size with --feature-size)."""
    tested = "r_in min" if analysis.border_rule == "input" else "r_out min"
    h, w = analysis.limit
    return f"{tested} > {h if h == w else f'{h}x{w}'}"


def format_analysis(analysis: Analysis) -> str:
    """The per-layer table followed by the border layers, sizes and cost.

    Each layer's parameters and FLOPs are its module's (fvcore's by_module convention), or a function's
    own FLOPs; FLOPs % is its share of the model's.

    Two verdict columns: the layer's own test (its tested r_min exceeds the input on every axis) and
    whether it is in the tail, the final run of exceeding layers that b_min starts (its unproductive
    layers). A layer can exceed and still be productive, before b_min (the zig-zag of skip connections).
    """
    headers = ["#", "layer", "type", "kernel", "stride", "dil", "out size", "params", "FLOPs", "FLOPs %",
               "r_in min", "r_in max", "r_out min", "r_out max", _test_header(analysis), "in tail",
               "border"]  # fmt: skip
    rows = []
    for i, layer in enumerate(analysis.layers, start=1):
        params, flops = analysis.layer_cost(layer.name)
        marks = []
        if layer.name == analysis.border_layer_min:
            marks.append("<- b_min")
        if layer.name == analysis.border_layer_max:
            marks.append("<- b_max")
        if layer.role == "attention":
            marks.append("attention (gate branch)")
        rows.append(
            [
                str(i),
                layer.name,
                layer.type,
                axes_text(layer.kernel_size),
                axes_text(layer.stride),
                axes_text(layer.dilation),
                axes_text(layer.output_size),
                "-" if params is None else human(params),
                "-" if flops is None else human(flops),
                "-" if flops is None or not analysis.flops else f"{100 * flops / analysis.flops:.1f}",
                axes_text(layer.r_in_min),
                axes_text(layer.r_in_max),
                axes_text(layer.r_out_min),
                axes_text(layer.r_out_max),
                _yes_no(layer.exceeds),
                "YES" if layer.in_tail else _yes_no(layer.in_tail),
                " ".join(marks),
            ]
        )
    table = render_table(headers, rows, align="><<>>>>>>>>>>>>><")
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
    participants = [layer for layer in analysis.layers if layer.exceeds is not None]
    dips = [layer for layer in analysis.exceeding_layers if not layer.in_tail]
    lines = [
        f"model {analysis.model} at {h}x{w}; border rule '{analysis.border_rule}': a conv/pool layer exceeds "
        f"when the r_min of {tested} exceeds {limit} on every axis"
        + (" (the feature size)" if analysis.feature_size else "")
        + "; the tail is the final run of exceeding layers, from b_min to the output (dissertation 10.2)",
        f"border layer b_min: {analysis.border_layer_min or 'none (every layer is productive)'}",
        f"border layer b_max: {analysis.border_layer_max or 'none'}",
        f"unproductive layers (the tail): {len(analysis.unproductive_layers)} of {len(participants)} conv/pool "
        "layers",
    ]
    if dips:
        lines.append(
            f"exceeding but before the tail, so still productive (later layers integrate through skip paths, "
            f"paper 000 IV-C): {', '.join(layer.name for layer in dips)}"
        )
    attention = [layer for layer in analysis.layers if layer.role == "attention"]
    if attention:
        lines.append(
            f"attention: {len(attention)} layers in gate branches (squeeze-and-excitation, CBAM, ...) are left "
            "out of the border test and leave the feature path's receptive fields unchanged (paper 000 IV-D)"
        )
    if analysis.min_productive_input_size is not None:
        size = analysis.min_productive_input_size
        lines.append(
            f"smallest input at which every layer is productive: {axes_text(size)} px"
            " (train near the receptive field of the last layer, dissertation 9.4.2)"
        )
    lines.append(_cost_line(analysis))
    if analysis.flops_skipped_ops:
        skipped = ", ".join(f"{op} x{n}" for op, n in analysis.flops_skipped_ops)
        lines.append(f"counted as zero FLOPs by the convention: {skipped}")
    lines.extend(f"warning: {line}" for line in analysis.all_warnings)
    return "\n".join(lines)


def _cost_line(analysis: Analysis) -> str:
    if analysis.flops is None:
        return f"FLOPs not counted; parameters {human(analysis.params)}"
    backend = "counted on the meta device" if analysis.flops_backend == "meta" else "counted by fvcore"
    return (
        f"FLOPs {human(analysis.flops)} ({FLOP_CONVENTION}; {backend}); parameters {human(analysis.params)}"
    )
