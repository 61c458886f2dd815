"""A model at chance is told from one that learned (issue 24.7: ``saturation`` warns about the first)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import torch
from torch import nn
from torch.utils.data import TensorDataset

from rewriter.lab.convergence import at_chance

from ..cli_runner import run


class ReadsTheClass(nn.Module):
    """Scores class k where the image's first pixel is k: right on every image of ``toy``."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0, 0, 0].long(), 4).float()


class AnswersZero(nn.Module):
    """Always class 0: 25 % on four balanced classes, the chance level."""

    def forward(self, x):
        return torch.zeros(len(x), 4).index_fill_(1, torch.tensor([0]), 1.0)


def toy() -> SimpleNamespace:
    labels = torch.arange(400) % 4  # balanced: chance 25 %
    images = labels.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    return SimpleNamespace(test=TensorDataset(images, labels), name="toy")


def test_a_model_at_chance_is_named_and_one_that_learned_is_not():
    assert at_chance(ReadsTheClass(), toy(), torch.device("cpu")) is None
    said = at_chance(AnswersZero(), toy(), torch.device("cpu"), images=200)  # 50 of each class, stratified
    assert said.startswith("test accuracy 25.0% on 200 images of toy is at chance (25.0%)")


def test_saturation_warns_on_an_untrained_model_even_with_quiet(capsys):
    # cifar_vgg11 untrained on synthetic:64 scores about 1 in 10 of the 200 test images; chance is 15 % there
    # (the share of the largest class), within three standard errors (7.6 pp) of it
    code, _, err = run(
        capsys, "saturation", "cifar_vgg11", "--data", "synthetic:64", "--batches", "1", "--quiet"
    )
    said = r"warning: test accuracy [\d.]+% on 200 images of synthetic:64 is at chance \(15.0%\)"
    assert code == 0 and re.match(said, err)
