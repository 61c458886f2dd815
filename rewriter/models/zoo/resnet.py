"""ResNet variants of the papers, built from torchvision's ResNet so that layer names match it.

- ``cifar_resnet18/34/50``: the CIFAR stem (paper 000 section V, paper 003 Table 3): the 7x7/2 convolution
  and the 3x3/2 max-pool are replaced by one 3x3 stride-1 convolution with 64 filters.
- ``resnet18_noskip``: the ImageNet-style ResNet18 with every skip connection disabled (paper 000 Fig. 6a),
  a purely sequential network.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ._registry import register_model


def _with_cifar_stem(model: ResNet, in_channels: int) -> ResNet:
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@register_model
def cifar_resnet18(*, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool); last receptive field 109."""
    return _with_cifar_stem(ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes), in_channels)


@register_model
def cifar_resnet34(*, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet34 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."""
    return _with_cifar_stem(ResNet(BasicBlock, [3, 4, 6, 3], num_classes=num_classes), in_channels)


@register_model
def cifar_resnet50(*, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet50 with the CIFAR stem (paper 003 Table 3: 23.52 M params)."""
    return _with_cifar_stem(ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes), in_channels)


class PlainBasicBlock(BasicBlock):
    """A BasicBlock without its skip connection: conv-BN-ReLU-conv-BN-ReLU, no identity, no projection."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.downsample = None  # the projection only served the skip connection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))


@register_model
def resnet18_noskip(*, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ImageNet-style ResNet18 with all skip connections disabled (paper 000 Fig. 6a, border 5 at 32 px)."""
    model = ResNet(PlainBasicBlock, [2, 2, 2, 2], num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
