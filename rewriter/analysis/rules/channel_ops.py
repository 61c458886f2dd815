"""Channel facts of single modules, beside the op table: a layer's channels and groups, and the kind of a
convolution (standard, pointwise, depthwise, grouped). ``rewriter.analysis.channels`` builds on them."""

from __future__ import annotations

from typing import Literal, NamedTuple

from torch import nn

ConvKind = Literal["standard", "pointwise", "depthwise", "group"]


class ChannelOp(NamedTuple):
    """The kind of a convolution and how many input channels one of its filters reads."""

    kind: ConvKind
    per_group: int


def module_channels(module: nn.Module) -> dict[str, int]:
    """``in_channels``, ``out_channels`` (and ``groups``) of a conv, linear or batch-norm module; {} else."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return {
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "groups": module.groups,
        }
    if isinstance(module, nn.Linear):
        return {"in_channels": module.in_features, "out_channels": module.out_features}
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return {"in_channels": module.num_features, "out_channels": module.num_features}
    return {}


def conv_kind(in_channels: int, groups: int, kernel_size: tuple[int, ...]) -> ChannelOp:
    """Standard or pointwise (one group), depthwise (one channel per group) or grouped."""
    per_group = in_channels // groups
    if groups == 1:
        return ChannelOp("pointwise" if all(k == 1 for k in kernel_size) else "standard", per_group)
    return ChannelOp("depthwise", 1) if per_group == 1 else ChannelOp("group", per_group)
