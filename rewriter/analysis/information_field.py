"""Information Field (paper 003): how many neurons of a stage's input tensor each unit of the stage sees.

Eq. (1)-(3), per stage with input ``w0 x w0 x c0``: IF = (IF^w)^2 * IF^c, where IF^w grows by (kernel - 1)
per convolution capped at w0, and IF^c follows the property function of the convolution type, capped at c0
(standard and pointwise: c0; depthwise: unchanged; grouped: the channels a group sees). Eq. (4), the gain of
unit k: (IF_k - IF_{k-1}) / IF_{k-1} * exp(-alpha * IF_{k-1} / V0), V0 = w0 * w0 * c0, alpha = 3.

Where the paper leaves choices open, this module makes them as follows, and they reproduce its VGG16-opt
and ResNet50-opt: IF starts at 1 (one position, one channel) on the stage's input tensor; a stage starts
at a unit that downsamples (a pool, a strided block), and only kernels running at the stage's resolution
grow IF^w (the strided kernel itself does not: it works on the previous resolution); a stem that runs
before any downsampling belongs to the first stage; a unit (a block) counts as one kernel in the gain.
Non-square stages use IF^w per axis: IF = IF^h * IF^w * IF^c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import AnalysisError
from .channels import ChannelOp
from .stages import Stage, Unit

ALPHA = 3.0


def gain(before: float, after: float, volume: float, *, alpha: float = ALPHA) -> float:
    """Eq. (4): the IF gain of a kernel that takes the field from ``before`` to ``after``."""
    return (after - before) / before * math.exp(-alpha * before / volume)


def channel_field(channels: int, ops: Sequence[ChannelOp], c0: int) -> int:
    """Eq. (3) along a unit's conv types: the stage-input channels one neuron sees, capped at ``c0``."""
    for kind, per_group in ops:
        if kind in ("standard", "pointwise"):
            channels = c0
        elif kind == "group":
            channels = channels * per_group
        channels = min(channels, c0)
    return channels


@dataclass(frozen=True)
class UnitField:
    """IF of one unit of a stage, and its gain over the unit before it."""

    name: str
    width: tuple[int, int]  # IF^w per axis (height, width)
    channels: int  # IF^c
    value: int  # IF
    gain: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "if_width": list(self.width),
            "if_channels": self.channels,
            "if": self.value,
            "if_gain": round(self.gain, 6),
        }


@dataclass(frozen=True)
class StageField:
    """The IF of every unit of one stage."""

    stage: Stage
    units: tuple[UnitField, ...]

    @property
    def volume(self) -> int:
        h, w = self.stage.size
        return h * w * self.stage.in_channels

    def to_json(self) -> dict[str, Any]:
        stage = self.stage
        return {
            "index": stage.index,
            "size": list(stage.size),
            "in_channels": stage.in_channels,
            "volume": self.volume,
            "units": [
                {**field.to_json(), "kind": unit.kind, "repeatable": unit.repeatable}
                for field, unit in zip(self.units, stage.units, strict=True)
            ],
        }


def _step(
    state: tuple[int, int, int], unit_growth: int, ops: Sequence[ChannelOp], stage: Stage
) -> tuple[int, int, int]:
    h, w, c = state
    h0, w0 = stage.size
    return min(h + unit_growth, h0), min(w + unit_growth, w0), channel_field(c, ops, stage.in_channels)


def stage_field(stage: Stage, units: Sequence[Unit] | None = None, *, alpha: float = ALPHA) -> StageField:
    """IF and IF gain of each unit of ``stage`` (or of ``units`` placed in it instead)."""
    state, value, fields = (1, 1, 1), 1, []
    volume = stage.size[0] * stage.size[1] * stage.in_channels
    for unit in stage.units if units is None else units:
        state = _step(state, unit.growth, unit.channel_ops, stage)
        new = state[0] * state[1] * state[2]
        fields.append(
            UnitField(unit.name, (state[0], state[1]), state[2], new, gain(value, new, volume, alpha=alpha))
        )
        value = new
    return StageField(stage, tuple(fields))


def information_fields(stages: Sequence[Stage], *, alpha: float = ALPHA) -> list[StageField]:
    return [stage_field(stage, alpha=alpha) for stage in stages]


# --------------------------------------------------------------------------------------------------
# the channel field of decomposed kernels (paper 003 Fig. 4: DW + PW, GPW or RPW)

PointwiseKind = str  # "dw-pw", "dw-gpw" or "dw-rpw"


def rolling_windows(
    in_channels: int, out_channels: int, *, groups: int, overlap: float
) -> tuple[int, int, int]:
    """(window, step, windows) of a rolling pointwise conv: each filter reads ``window = in / groups``
    consecutive channels, windows start every ``step = window * (1 - overlap)`` channels and roll around.

    Raises:
        AnalysisError: (a ValueError) the channels do not divide into such windows.
    """
    if groups < 1 or in_channels % groups:
        raise AnalysisError(f"in_channels {in_channels} is not divisible into {groups} groups")
    if not 0 <= overlap < 1:
        raise AnalysisError(f"overlap must be in [0, 1), got {overlap}")
    window = in_channels // groups
    step = round(window * (1 - overlap))
    if step < 1 or in_channels % step:
        raise AnalysisError(f"a step of {step} channels does not tile {in_channels} channels")
    windows = in_channels // step
    if out_channels % windows:
        raise AnalysisError(f"out_channels {out_channels} is not a multiple of the {windows} windows")
    return window, step, windows


def pointwise_reads(
    kind: PointwiseKind, cin: int, cout: int, *, groups: int, overlap: float
) -> list[list[int]]:
    """For each output channel of the pointwise part of a decomposed kernel, the input channels it reads."""
    if kind == "dw-pw":
        return [list(range(cin))] * cout
    if kind == "dw-gpw":
        if cin % groups or cout % groups:
            raise AnalysisError(f"{cin} -> {cout} channels are not divisible into {groups} groups")
        per_in, per_out = cin // groups, cout // groups
        return [list(range((f // per_out) * per_in, (f // per_out + 1) * per_in)) for f in range(cout)]
    window, step, windows = rolling_windows(cin, cout, groups=groups, overlap=overlap)
    per_window = cout // windows
    return [[((f // per_window) * step + i) % cin for i in range(window)] for f in range(cout)]


def decomposed_channel_fields(
    kind: PointwiseKind, widths: Sequence[tuple[int, int]], *, groups: int, overlap: float
) -> list[int]:
    """The fewest stage-input channels any neuron sees after each of a chain of decomposed kernels with
    ``(in, out)`` channels ``widths``."""
    seen = [1 << c for c in range(widths[0][0])]  # each input channel sees itself (a bitmask per channel)
    fields = []
    for cin, cout in widths:
        reads = pointwise_reads(kind, cin, cout, groups=groups, overlap=overlap)
        seen = [_union(seen, channels) for channels in reads]
        fields.append(min(bin(mask).count("1") for mask in seen))
    return fields


def _union(seen: list[int], channels: list[int]) -> int:
    mask = 0
    for c in channels:
        mask |= seen[c]
    return mask
