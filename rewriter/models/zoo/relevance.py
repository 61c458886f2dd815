"""The network of paper 004 (Gadepally et al.): three same-size convolutions and one dense layer."""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model


class RelevanceCNN(nn.Module):
    """Three 3x3 convolutions without pooling (every one keeps the image size), flatten, one dense layer.

    Paper 004 calls it CNN 1 (trained normally) and CNN 3 (the same architecture, trained so that an image
    skips the convolutions after its relevant one). Its convolutions after the first keep their width, so
    that skipping one leaves every shape unchanged.
    """

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, width: int = 32, input_size: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.classifier = nn.Linear(width * input_size * input_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model
def relevance_cnn(
    *, num_classes: int = 10, in_channels: int = 3, width: int = 32, input_size: int = 32
) -> RelevanceCNN:
    """Paper 004's CNN 1 / CNN 3: three same-size 3x3 convs (``width`` filters) and a dense layer over the
    flattened ``input_size`` x ``input_size`` maps (the input size is fixed by that layer)."""
    return RelevanceCNN(num_classes=num_classes, in_channels=in_channels, width=width, input_size=input_size)
