"""MPNet18 and MPNet36, the multi-path "model organisms" of paper 000 (Fig. 7) and the dissertation (10.2).

Four stages of blocks with 64, 128, 256 and 512 filters; the first layer of every stage has stride 2
(paper 000 Fig. 7 caption). A block runs two parallel paths of same-padded conv-BN-ReLU layers and adds
them, with no skip connection and no 1x1 convolutions:

- MPNet18 (Module A): two blocks per stage; a path of two 3x3 and a path of two 7x7 convolutions. Each path
  through the network is 18 layers deep (stem, 16 convolutions, classifier) and the network has 34 layers,
  as the dissertation counts them.
- MPNet36 (Module B): four blocks per stage; a path of one 3x3 and a path of two 7x7 convolutions, so
  r_min and r_max drift apart faster.

The stem is one 3x3 stride-1 conv with 64 filters, the head global average pooling and one Linear. The
papers show the blocks only in a figure; the per-path layer counts follow the author's public code
(``mpnet18_2_2_3_7``, ``mpnet36_1_2_3_7``), which however puts each stage's stride on its *last* layer;
we follow the paper's text and put it on the first.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._registry import register_model

STAGE_WIDTHS = (64, 128, 256, 512)


class ConvBNReLU(nn.Sequential):
    """A same-padded convolution followed by batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(
                    in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False
                ),
                bn=nn.BatchNorm2d(out_channels),
                relu=nn.ReLU(inplace=True),
            )
        )


class MultiPathBlock(nn.Module):
    """Parallel paths of ``ConvBNReLU`` layers merged by element-wise addition."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        path_depths: tuple[int, ...],
        path_kernels: tuple[int, ...],
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.paths = nn.ModuleList(
            nn.Sequential(
                *(
                    ConvBNReLU(
                        in_channels if i == 0 else out_channels, out_channels, kernel, stride if i == 0 else 1
                    )
                    for i in range(depth)
                )
            )
            for depth, kernel in zip(path_depths, path_kernels, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.paths[0](x)
        for path in self.paths[1:]:
            out = out + path(x)
        return out


class MPNet(nn.Module):
    """Stem, four stages of ``MultiPathBlock``, global average pooling and a linear classifier."""

    def __init__(
        self,
        *,
        blocks_per_stage: int,
        path_depths: tuple[int, ...],
        path_kernels: tuple[int, ...],
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.stem = ConvBNReLU(in_channels, STAGE_WIDTHS[0], kernel_size=3)
        channels = STAGE_WIDTHS[0]
        for index, width in enumerate(STAGE_WIDTHS, start=1):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(
                    MultiPathBlock(
                        channels,
                        width,
                        path_depths=path_depths,
                        path_kernels=path_kernels,
                        stride=2 if b == 0 else 1,
                    )
                )
                channels = width
            self.add_module(f"stage{index}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model
def mpnet18(*, num_classes: int = 10, in_channels: int = 3) -> MPNet:
    """MPNet18 (paper 000 Fig. 7b): 2 blocks per stage, paths of two 3x3 and two 7x7 convolutions."""
    return MPNet(
        blocks_per_stage=2,
        path_depths=(2, 2),
        path_kernels=(3, 7),
        num_classes=num_classes,
        in_channels=in_channels,
    )


@register_model
def mpnet36(*, num_classes: int = 10, in_channels: int = 3) -> MPNet:
    """MPNet36 (paper 000 Fig. 7c): 4 blocks per stage, paths of one 3x3 and two 7x7 convolutions."""
    return MPNet(
        blocks_per_stage=4,
        path_depths=(1, 2),
        path_kernels=(3, 7),
        num_classes=num_classes,
        in_channels=in_channels,
    )
