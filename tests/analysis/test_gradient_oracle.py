"""r_max checked by a second, independent method: the extent of a nonzero input gradient.

With every weight a positive constant, biases zero, max-pools swapped for average pools of the same
geometry and the model in eval mode, every path from an input pixel to an output unit carries a positive
contribution, so the input pixels with a nonzero gradient of the centre unit are exactly the union of all
paths' windows. Its extent along each axis is r_max, provided the input is large enough that the window
does not run into the padding.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import rewriter

from .. import nets


class _Stop(Exception):
    pass


def _positive_constant(model: nn.Module) -> nn.Module:
    """A copy with positive constant weights (1 / fan-in), zero biases, and avg-pools for max-pools."""
    model = copy.deepcopy(model).double().eval()
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                pool = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode)
                setattr(parent, child_name, pool)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
            elif isinstance(module, nn.Linear):
                module.weight.fill_(1.0 / module.in_features)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
    return model


def measured_receptive_field(model: nn.Module, layer: str, input_size: int) -> tuple[int, int]:
    """Extent (height, width) of the input pixels whose gradient of ``layer``'s centre unit is nonzero."""
    model = _positive_constant(model)
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        captured["out"] = output
        raise _Stop  # the rest of the model (a fixed-size head, say) is not needed

    model.get_submodule(layer).register_forward_hook(hook)
    x = torch.ones(1, 3, input_size, input_size, dtype=torch.float64, requires_grad=True)
    with pytest.raises(_Stop):
        model(x)
    out = captured["out"]
    h, w = out.shape[-2:]
    out[0, :, h // 2, w // 2].sum().backward()
    grad = x.grad[0].abs().sum(0)
    rows = torch.nonzero(grad.sum(1)).flatten()
    cols = torch.nonzero(grad.sum(0)).flatten()
    assert rows.min() > 0 and rows.max() < input_size - 1, "the window reached the border: use a larger input"
    assert cols.min() > 0 and cols.max() < input_size - 1, "the window reached the border: use a larger input"
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


CASES = [
    # (model factory, layer, input size for the gradient, analysis size)
    ("cifar_vgg11", "features.11", 96, 32),  # conv 4 after two pools: r 26
    ("cifar_vgg11", "features.25", 192, 32),  # last conv: r 134
    ("resnet18", "layer2.1.conv2", 224, 32),  # residual blocks with a projection: r_max 99
    ("resnet18", "layer3.0.conv2", 320, 32),  # r_max 147
    ("cifar_resnet18", "layer3.1.conv2", 160, 32),  # r_max 53
    ("mpnet18", "stage2.1.paths.1.1.conv", 224, 32),  # two parallel paths of 3x3 and 7x7 convs
]


@pytest.mark.parametrize(("model_name", "layer", "grad_size", "size"), CASES)
def test_r_max_equals_the_extent_of_the_input_gradient(model_name, layer, grad_size, size):
    model, _ = rewriter.load_model(model_name)
    analysis = rewriter.analyze(model, size, flops=False)
    assert measured_receptive_field(model, layer, grad_size) == analysis.layer(layer).r_out_max


@pytest.mark.parametrize(
    ("net", "layer"),
    [
        (nets.DenseBlock, "layers.2"),  # concatenation of every earlier layer
        (nets.Dilated, "c2"),  # dilation 3: 13
        (nets.Asymmetric, "c3"),  # 1x3 stride (1, 2), 3x1, 1x3: (3, 7)
        (nets.Residual, "b2c2"),
        (nets.Concat, "out"),
        (nets.SplitBack, "tall"),  # positions flattened and viewed back: (9, 9)
        (nets.Patchify, "mix"),  # a Linear over 4x4 patches, then a 3x3 conv: 12
        (nets.WindowAttention, ""),  # attention inside 4x4 windows after a 3x3 conv: 6
    ],
)
def test_r_max_of_hazard_nets_equals_the_gradient_extent(net, layer):
    model = net()
    analysis = rewriter.analyze(model, 32, flops=False)
    expected = analysis.layer(layer).r_out_max if layer else analysis.fields["output"].input.max
    assert measured_receptive_field(model, layer, 48) == expected
