"""Logistic regression probes: high accuracy where the labels are linearly readable, chance on noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from rewriter.lab.probes import _groups, compact, fit_probe, pooled, run_probes
from rewriter.lab.saturation import compute_saturation

CLASSES = 4


class SignalAndNoise(nn.Module):
    """``signal`` sees the input (a label code plus noise); ``noise`` sees fresh random numbers only."""

    def __init__(self) -> None:
        super().__init__()
        self.signal = nn.Conv2d(3, 8, 1)
        self.noise = nn.Conv2d(3, 8, 1)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.signal(x)
        b = self.noise(torch.randn_like(x))
        return self.head(torch.cat([a, b], 1).mean((2, 3)))


def dataset(count: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randn(CLASSES, 3, 4, 4, generator=torch.Generator().manual_seed(99))
    labels = torch.randint(0, CLASSES, (count,), generator=generator)
    images = codes[labels] + 0.3 * torch.randn(count, 3, 4, 4, generator=generator)
    return TensorDataset(images, labels)


def test_probes_read_a_linear_function_of_the_labels_and_not_noise():
    torch.manual_seed(0)
    report = run_probes(SignalAndNoise(), dataset(400, 1), dataset(400, 2), CLASSES, max_samples=None)
    accuracy = {layer.name: layer.test_accuracy for layer in report.layers}
    assert accuracy["signal"] > 0.95
    # chance is 1/4; with 400 test images its standard deviation is about 0.022
    assert abs(accuracy["noise"] - 1 / CLASSES) < 0.1
    assert [layer.features for layer in report.layers] == [8 * 16, 8 * 16, CLASSES]
    assert report.train_images == report.test_images == 400


def test_the_probe_of_separable_features_is_exact():
    x = torch.cat([torch.randn(50, 2) + 6, torch.randn(50, 2) - 6])
    y = torch.cat([torch.zeros(50), torch.ones(50)]).long()
    train, test = fit_probe(x, y, x, y, 2)
    assert train == test == 1.0


def test_feature_maps_are_pooled_to_at_most_4x4():
    assert pooled(torch.randn(2, 5, 16, 16)).shape == (2, 5 * 16)
    assert pooled(torch.randn(2, 5, 3, 7)).shape == (2, 5 * 3 * 4)  # smaller maps are not upsampled
    x = torch.randn(2, 5, 8, 8)
    torch.testing.assert_close(pooled(x), F.avg_pool2d(x, 2).flatten(1))
    assert pooled(torch.randn(2, 9)).shape == (2, 9)


class Deterministic(nn.Module):
    """Two convolutions and a head, no randomness: a probe of any layer is the same in any pass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(torch.relu(self.a(x))).mean((2, 3)))


def test_layers_probed_in_groups_when_memory_is_tight_give_the_probes_of_one_pass():
    # the second method is the roomy run: every layer's features in one pass
    model, train, test = Deterministic(), dataset(100, 1), dataset(100, 2)
    tight = run_probes(model, train, test, CLASSES, memory_mb=0)
    roomy = run_probes(model, train, test, CLASSES)
    assert [layer.name for layer in tight.layers] == ["a", "b", "head"]
    assert tight == roomy
    assert tight.layers[0].features == 8 * 16  # a 4x4 map of 8 channels, not pooled below 4x4


def test_consecutive_layers_share_a_pass_while_their_features_fit():
    # 256 images x 1024 features x 4 bytes = 1 MiB for a and for b, 4 KiB for c (4 features): in 1 MiB each
    # needs its own pass; in 2 MiB a and b fill one and c starts the next; with no layer over the limit, one
    sizes = {"a": 1024, "b": 1024, "c": 4}
    assert _groups(["a", "b", "c"], sizes, 256, 1) == [["a"], ["b"], ["c"]]
    assert _groups(["a", "b", "c"], sizes, 256, 2) == [["a", "b"], ["c"]]
    assert _groups(["a", "b", "c"], sizes, 256, 3) == [["a", "b", "c"]]


def test_a_wide_layer_fitted_on_its_compact_representation_gives_the_same_probe():
    # 200 training rows of 1000 features (more than twice as many): the fit in the span of the rows against
    # the fit on all features
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(CLASSES, 1000, generator=generator)
    train_y, test_y = (
        torch.randint(0, CLASSES, (200,), generator=generator),
        torch.randint(0, CLASSES, (300,), generator=generator),
    )
    train_x = directions[train_y] * 0.05 + torch.randn(200, 1000, generator=generator)
    test_x = directions[test_y] * 0.05 + torch.randn(300, 1000, generator=generator)
    reduced = fit_probe(train_x, train_y, test_x, test_y, CLASSES, reduce=True)
    direct = fit_probe(train_x, train_y, test_x, test_y, CLASSES, reduce=False)
    assert reduced[0] == direct[0] == 1.0  # more features than rows: the training rows are separable
    assert abs(reduced[1] - direct[1]) <= 2 / 300 and 0.3 < direct[1] < 1.0  # a layer that generalises partly


def test_the_compact_coordinates_keep_every_inner_product():
    generator = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(30, 80, generator=generator), torch.randn(7, 80, generator=generator)
    z, z_test = compact(train_x, test_x)
    assert z.shape[1] <= 30
    torch.testing.assert_close(z @ z.T, (train_x @ train_x.T).double(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(z_test @ z.T, (test_x @ train_x.T).double(), rtol=1e-5, atol=1e-4)


def test_saturation_from_the_probe_passes_equals_a_separate_measurement():
    torch.manual_seed(0)
    model, train = SignalAndNoise(), dataset(200, 1)
    report = run_probes(model, train, dataset(100, 2), CLASSES, max_samples=None, saturation=True)
    torch.manual_seed(0)  # the noise branch draws random numbers: the same ones as in the probes' first pass
    separate = compute_saturation(model, torch.utils.data.DataLoader(train, batch_size=128))
    assert report.saturation.layers[0] == separate.layers[0]  # the signal layer reads only the images
    assert report.saturation.samples == 200 and [layer.name for layer in report.saturation.layers] == [
        "signal",
        "noise",
        "head",
    ]
