"""Saturation against an independent numpy PCA, on constructed layers, and the tail rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from rewriter.lab.saturation import CovarianceAccumulator, compute_saturation, find_tails, saturation_of

from ..nets import conv


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = conv(3, 12), conv(12, 16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(nn.functional.max_pool2d(x, 2)))
        return self.fc(x.mean((2, 3)))


def batches(count: int, size: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 3, size, size, generator=generator), torch.zeros(6)) for _ in range(count)]


def numpy_saturation(samples: np.ndarray, delta: float) -> tuple[int, float, np.ndarray]:
    """PCA the textbook way: population covariance, eigenvalues sorted, fewest explaining delta."""
    cov = np.cov(samples, rowvar=False, bias=True)
    eig = np.sort(np.clip(np.linalg.eigvalsh(cov), 0, None))[::-1]
    ratio = np.cumsum(eig) / eig.sum()
    k = int(np.argmax(ratio >= delta)) + 1
    return k, k / samples.shape[1], cov


@pytest.mark.parametrize("delta", [0.9, 0.99, 0.999])
def test_streaming_saturation_matches_a_numpy_pca_of_all_activations(delta):
    torch.manual_seed(0)
    model = Small().eval()
    data = batches(7)
    outputs: dict[str, list[np.ndarray]] = {"c1": [], "c2": [], "fc": []}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: outputs[name].append(out.detach().double().numpy())
        )
        for name in outputs
    ]
    with torch.no_grad():
        for x, _ in data:
            model(x)
    for hook in hooks:
        hook.remove()
    report = compute_saturation(model, data, delta=delta)
    assert [layer.name for layer in report.layers] == ["c1", "c2", "fc"]
    for layer in report.layers:
        stacked = np.concatenate(outputs[layer.name])
        if stacked.ndim == 4:  # every feature-map position is a sample: [N, C, H, W] -> [N*H*W, C]
            stacked = stacked.transpose(0, 2, 3, 1).reshape(-1, stacked.shape[1])
        k, saturation, _ = numpy_saturation(stacked, delta)
        assert (layer.k, layer.saturation) == (k, saturation), layer.name
    assert report.samples == 42
    assert report.mean == pytest.approx(np.mean([layer.saturation for layer in report.layers]))


def test_the_running_covariance_equals_the_covariance_of_all_samples():
    generator = torch.Generator().manual_seed(1)
    chunks = [torch.randn(50, 6, generator=generator) * torch.arange(1, 7) + 3 for _ in range(4)]
    accumulator = CovarianceAccumulator(6)
    for chunk in chunks:
        accumulator.update(chunk)
    expected = np.cov(torch.cat(chunks).double().numpy(), rowvar=False, bias=True)
    np.testing.assert_allclose(accumulator.covariance().numpy(), expected, rtol=1e-10, atol=1e-10)
    # memory is constant: the state is a count, a vector and a matrix whatever the number of batches
    assert accumulator.total.shape == (6,) and accumulator.outer.shape == (6, 6)


@pytest.mark.parametrize("k, n", [(1, 8), (3, 8), (5, 16), (16, 16)])
def test_a_layer_whose_outputs_span_k_of_n_channels_has_saturation_k_over_n(k, n):
    """A 1x1 conv whose weight maps onto k orthonormal directions with equal variance: k eigenvalues ~ 1,
    the rest 0, so k are needed for 99 % (k - 1 explain at most 15/16)."""
    generator = torch.Generator().manual_seed(k * 100 + n)
    basis, _ = torch.linalg.qr(torch.randn(n, n, generator=generator))
    readout, _ = torch.linalg.qr(torch.randn(32, 32, generator=generator))
    layer = nn.Conv2d(32, n, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_((basis[:, :k] @ readout[:k]).view(n, 32, 1, 1))
    model = nn.Sequential(layer)
    data = [(torch.randn(16, 32, 6, 6, generator=generator), None) for _ in range(5)]
    report = compute_saturation(model, data)
    assert report.layers[0].k == k
    assert report.layers[0].saturation == k / n


def test_constant_outputs_have_zero_saturation():
    cov = torch.zeros(4, 4, dtype=torch.float64)
    assert saturation_of(cov) == (0, 0.0)


def test_hooks_are_removed_and_training_flags_restored():
    model = Small().train()
    compute_saturation(model, batches(1))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_a_tail_is_three_or_more_layers_at_least_half_below_the_rest():
    values = [0.6, 0.5, 0.55, 0.6, 0.1, 0.12, 0.08, 0.5]
    # layers 4-6 average 0.10 against 0.55 for the others: a tail. Windows reaching into the 0.6 before or
    # the 0.5 after qualify on their mean too (0.225 <= 0.27, 0.2 <= 0.28), but those ends are trimmed.
    assert find_tails(values) == [(4, 7)]
    # two layers at a third of the rest are no tail, three are: (0.6 + 0.2 + 0.2) / 3 = 0.33 > 0.5 * 0.6
    assert find_tails([0.6, 0.6, 0.2, 0.2, 0.6, 0.6]) == []
    assert find_tails([0.6, 0.6, 0.2, 0.2, 0.2, 0.6, 0.6]) == [(2, 5)]
    # 0.3 against a mean of 0.55 is only 45 % lower
    assert find_tails([0.6, 0.5, 0.3, 0.3, 0.3, 0.6]) == []


def test_every_reported_tail_qualifies_and_tails_do_not_overlap():
    import random

    rng = random.Random(0)
    for _ in range(3000):
        values = [rng.choice([0.02, 0.05, 0.1, 0.3, 0.6, 0.9]) for _ in range(rng.randint(4, 12))]
        tails = find_tails(values)
        for start, stop in tails:
            rest = values[:start] + values[stop:]
            assert stop - start >= 3 and rest
            assert sum(values[start:stop]) / (stop - start) <= 0.5 * sum(rest) / len(rest)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(tails))
    # a union of qualifying windows need not qualify: here it would cover the whole network
    assert find_tails([0.6, 0.9, 0.05, 0.3, 0.02, 0.9, 0.6]) == [(2, 5)]


def test_a_large_mean_costs_the_covariance_no_digits():
    # mean 1e6, spread 1: raw sums of squares (1e12 per sample) would cancel away every digit of a variance
    # of 1 in float32 and most in float64; the shift taken from the first batch keeps them
    generator = torch.Generator().manual_seed(2)
    chunks = [(torch.randn(40, 3, generator=generator, dtype=torch.float64) + 1e6).float() for _ in range(5)]
    accumulator = CovarianceAccumulator(3)
    for chunk in chunks:
        accumulator.update(chunk)
    expected = np.cov(torch.cat(chunks).double().numpy(), rowvar=False, bias=True)
    np.testing.assert_allclose(accumulator.covariance().numpy(), expected, rtol=1e-9, atol=1e-9)


def test_conv_outputs_add_every_position_as_a_sample():
    x = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(3))
    accumulator = CovarianceAccumulator(4)
    accumulator.update(x)
    samples = x.permute(0, 2, 3, 1).reshape(-1, 4).double().numpy()
    np.testing.assert_allclose(
        accumulator.covariance().numpy(), np.cov(samples, rowvar=False, bias=True), atol=1e-12
    )
    assert accumulator.count == 3 * 5 * 6
