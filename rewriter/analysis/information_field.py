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

from .stages import ChannelOp, Stage, Unit

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
