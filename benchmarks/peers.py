"""The peer of the CIFAR-10 study: structured channel pruning by Torch-Pruning (DepGraph, Fang et al. 2023).

``resnet18_pruned`` is an import spec a study trains like any model (``--model benchmarks.peers:resnet18_pruned``):
torchvision's resnet18 whose channels Torch-Pruning's magnitude pruner (L2 norm of each channel group's
weights, every layer pruned by the same ratio, the classifier's outputs kept) removed step by step until the
multiply-accumulates at the input size fall to ``target_flops`` (fvcore counts one multiply-accumulate as one
FLOP, the convention of every figure of this project, so a MAC budget is a FLOP budget).

The architecture is what is compared, not the pruned weights: the pruning runs on a network initialised
with seed 0 (so every seed of a study gets the same widths), and the pruned network is then initialised
again from the caller's random state, so a study seeds it like any other cell and trains it from scratch
with the same setup. Pruning a trained network and fine-tuning it is Torch-Pruning's usual workflow; from
scratch is the fair comparison of two architectures of the same cost.

Torch-Pruning is a benchmark dependency (``pip install torch-pruning``), never imported by ``rewriter``.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

#: FLOPs of `rewriter optimize resnet18 --input-size 32 --num-classes 10` (cost-first): truncate, output rule
COST_FIRST_FLOPS = 11_917_312
#: the share of every layer's channels pruned: 29 of 64 (64 -> 35 channels, 512 -> 280): the widths Torch-Pruning's
#: iterative schedule (200 steps of 0.99 / 200) reached when it first fell under COST_FIRST_FLOPS, taken in one
#: step (the iteration takes minutes): 11.72 M FLOPs and 3.35 M params at 32 px (98 % of the target)
PRUNING_RATIO = 29 / 64


def resnet18_pruned(
    num_classes: int = 10,
    *,
    input_size: int = 32,
    target_flops: float = COST_FIRST_FLOPS,
    ratio: float = PRUNING_RATIO,
) -> nn.Module:
    """torchvision's resnet18 with ``ratio`` of every layer's channels pruned by magnitude in one step
    (the classifier's outputs kept), refused unless that brings it to at most ``target_flops`` at
    ``input_size`` px; weights freshly initialised from the caller's random state."""
    import torch_pruning as tp

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=num_classes)
        example = torch.randn(1, 3, input_size, input_size)
        tp.pruner.MetaPruner(
            model, example, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
            ignored_layers=[model.fc],
        ).step()  # fmt: skip
        macs, _ = tp.utils.count_ops_and_params(model, example)
    if macs > target_flops:
        raise ValueError(
            f"pruning {ratio:.4f} of the channels leaves {macs:.0f} FLOPs, above {target_flops:.0f}"
        )
    for module in model.modules():  # the architecture is kept; the weights start again from the caller's seed
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    return model
