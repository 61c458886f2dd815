"""VGG for 32x32 inputs, as trained in paper 003 (Table 3) and paper 000 (Fig. 4, Fig. 6b).

The layout follows the CIFAR VGGs that both papers use: 3x3 convolutions with bias, batch norm and ReLU,
2x2 max-pool stages, and a single ``Linear(512, num_classes)`` on the flattened 1x1 feature map. The head
therefore needs a 1x1 feature map: these models run at 32x32 only, exactly like the originals.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model

# Numbers are conv widths, "M" a 2x2/2 max-pool (Simonyan & Zisserman, configurations A, B, D, E).
CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ],
}  # fmt: skip


class CifarVGG(nn.Module):
    """A plain VGG: ``features`` (conv-BN-ReLU and max-pool layers) then ``classifier`` (one Linear)."""

    def __init__(
        self, cfg: list[int | str], *, num_classes: int = 10, in_channels: int = 3, dilation: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            width = int(item)
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=dilation, dilation=dilation),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


@register_model
def cifar_vgg11(*, num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    """VGG11 with BN for 32x32 inputs (paper 000 Fig. 4a, border layer conv 6)."""
    return CifarVGG(CFGS["vgg11"], num_classes=num_classes, in_channels=in_channels)


@register_model
def cifar_vgg13(*, num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    """VGG13 with BN for 32x32 inputs (paper 000 Fig. 4b, border layer conv 7)."""
    return CifarVGG(CFGS["vgg13"], num_classes=num_classes, in_channels=in_channels)


@register_model
def cifar_vgg16(*, num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    """VGG16 with BN for 32x32 inputs (paper 000 Fig. 2/4c, paper 003 Table 3: 14.73 M params)."""
    return CifarVGG(CFGS["vgg16"], num_classes=num_classes, in_channels=in_channels)


@register_model
def cifar_vgg19(*, num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    """VGG19 with BN for 32x32 inputs (paper 000 Fig. 4d, paper 003 Table 3)."""
    return CifarVGG(CFGS["vgg19"], num_classes=num_classes, in_channels=in_channels)


@register_model
def vgg19_dilated(*, num_classes: int = 10, in_channels: int = 3) -> CifarVGG:
    """VGG19 whose 3x3 convolutions have dilation 3, effective kernel 7 (paper 000 Fig. 6b, border 5)."""
    return CifarVGG(CFGS["vgg19"], num_classes=num_classes, in_channels=in_channels, dilation=3)
