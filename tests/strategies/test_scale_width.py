"""scale-width: one factor for every width, coupled channels kept consistent, weights a warm start."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

import rewriter
from rewriter.analysis import scaled

from ..nets import conv


def scale(model: nn.Module, size: int = 32, **params) -> rewriter.Result:
    return rewriter.rewrite(model, {"steps": [{"scale-width": params}]}, input_size=size, latency=False)


def convs(model: nn.Module) -> dict[str, tuple[int, int]]:
    return {
        name: (m.in_channels, m.out_channels) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)
    }


@pytest.fixture(scope="module")
def resnet18_half():
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    return model, scale(model, factor=0.5)


def test_resnet18_at_half_width_has_the_hand_checked_channels(resnet18_half):
    _, result = resnet18_half
    new = result.model
    # stage widths 64, 128, 256, 512 halve to 32, 64, 128, 256 (all multiples of 8); the RGB input stays 3
    assert (new.conv1.in_channels, new.conv1.out_channels) == (3, 32)
    assert new.bn1.num_features == 32
    for stage, width in zip(
        (new.layer1, new.layer2, new.layer3, new.layer4), (32, 64, 128, 256), strict=True
    ):
        for block in stage:
            assert block.conv1.out_channels == block.conv2.out_channels == width
            assert block.conv2.in_channels == width
            assert block.bn2.num_features == width
    assert new.layer2[0].conv1.in_channels == 32 and new.layer2[0].downsample[0].in_channels == 32
    assert new.layer2[0].downsample[0].out_channels == 64
    assert (new.fc.in_features, new.fc.out_features) == (256, 10)  # the class scores keep their number


def test_resnet18_at_half_width_has_a_quarter_of_the_conv_weights(resnet18_half):
    model, result = resnet18_half
    # every conv weight has in x out channels, both halved (except conv1's 3 inputs and fc's 10 outputs)
    old = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d) and m is not model.conv1)
    new_model = result.model
    new = sum(
        m.weight.numel() for m in new_model.modules() if isinstance(m, nn.Conv2d) and m is not new_model.conv1
    )
    assert new * 4 == old
    assert new_model.conv1.weight.numel() * 2 == model.conv1.weight.numel()


def test_residual_additions_see_matching_channels(resnet18_half):
    _, result = resnet18_half
    seen = []

    def check(block, inputs, output):
        identity = inputs[0] if block.downsample is None else block.downsample(inputs[0])
        seen.append(
            (
                identity.shape[1],
                block.bn2(block.conv2(block.relu(block.bn1(block.conv1(inputs[0]))))).shape[1],
            )
        )

    model = result.model.eval()
    handles = [
        b.register_forward_hook(check)
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4)
        for b in stage
    ]
    model(torch.randn(2, 3, 32, 32))
    for handle in handles:
        handle.remove()
    assert len(seen) == 8 and all(a == b for a, b in seen)


def test_mobilenet_v2_at_half_width_matches_torchvision_width_mult():
    model, _ = rewriter.load_model("mobilenet_v2", num_classes=10)
    new = scale(model, factor=0.5).model
    reference = torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5)
    # block outputs and the stem agree with torchvision's own width_mult=0.5 (same rounding to 8)
    ours, theirs = convs(new), convs(reference)
    assert ours["features.0.0"] == theirs["features.0.0"] == (3, 16)
    for i in range(1, 18):
        project = f"features.{i}.conv.{1 if i == 1 else 2}"
        assert ours[project][1] == theirs[project][1], project
    # expansions: hand-checked t * c_in of the original, halved and rounded to 8 (torchvision instead
    # expands its already rounded input, e.g. 16 * 6 = 96 where 144 / 2 = 72 here)
    hidden = {2: 48, 3: 72, 4: 72, 5: 96, 6: 96, 7: 96, 8: 192, 11: 192, 12: 288, 14: 288, 15: 480, 17: 480}
    for i, width in hidden.items():
        assert ours[f"features.{i}.conv.0.0"][1] == width
        assert ours[f"features.{i}.conv.1.0"] == (width, width)  # the depthwise conv follows its input
        assert new.get_submodule(f"features.{i}.conv.1.0").groups == width
    assert ours["features.18.0"] == (
        160,
        640,
    )  # torchvision keeps 1280 below width_mult 1; we scale uniformly
    assert new.classifier[1].in_features == 640 and new.classifier[1].out_features == 10
    assert new(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_growing_keeps_the_function_exactly():
    """New channels are read with zero weights, so the grown model computes what the original did."""
    torch.manual_seed(0)
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    model.eval()
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    grown = scale(model, factor=1.5).model.eval()
    assert grown.layer1[0].conv1.out_channels == 96 and grown.fc.in_features == 768
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), model(x), rtol=1e-4, atol=1e-4)


def _set_l1_norms(conv_layer: nn.Conv2d, norms: list[float]) -> None:
    """Give filter i of ``conv_layer`` the L1 norm ``norms[i]`` (equal positive weights)."""
    with torch.no_grad():
        per_filter = conv_layer.weight[0].numel()
        conv_layer.weight.copy_(
            torch.tensor(norms).view(-1, 1, 1, 1).expand_as(conv_layer.weight) / per_filter
        )


def test_shrinking_keeps_the_channels_with_the_largest_l1_norm():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = conv(3, 16), conv(16, 16)
            self.head = nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.b(self.a(x)).mean((2, 3)))

    model = Net()
    _set_l1_norms(model.a, [3, 14, 1, 9, 16, 2, 11, 5, 8, 13, 4, 15, 6, 10, 7, 12])
    _set_l1_norms(model.b, [5, 5, 9, 1, 9, 2, 5, 7, 3, 9, 1, 8, 5, 6, 9, 4])
    new = scale(model, factor=0.5).model
    # a keeps its 8 largest norms (16, 15, 14, 13, 12, 11, 10, 9), in channel order
    kept_a = [1, 3, 4, 6, 9, 11, 13, 15]
    # b: four filters of norm 9, then 8, 7, 6 (channels 11, 7, 13), then one of the four 5s: the lowest, 0
    kept_b = [0, 2, 4, 7, 9, 11, 13, 14]
    assert new.a.weight.shape == (8, 3, 3, 3)
    assert torch.equal(new.a.weight, model.a.weight[kept_a])
    assert torch.equal(new.b.weight, model.b.weight[kept_b][:, kept_a])  # b reads exactly a's kept channels
    assert torch.equal(new.head.weight, model.head.weight[:, kept_b])  # the head keeps its 2 outputs


def test_grouped_convolutions_keep_their_groups_and_split_evenly():
    class Grouped(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.g = conv(3, 32), nn.Conv2d(32, 64, 3, padding=1, groups=4, bias=False)
            self.norm = nn.GroupNorm(4, 64)
            self.head = nn.Linear(64, 3)

        def forward(self, x):
            return self.head(self.norm(self.g(self.stem(x))).mean((2, 3)))

    torch.manual_seed(0)
    model = Grouped()
    # the stem's 32 channels form g's 4 groups of 8: half of each group is kept, by norm within the group
    blocks = [
        [1, 8, 2, 7, 3, 6, 4, 5],
        [8, 7, 6, 5, 4, 3, 2, 1],
        [1, 2, 3, 4, 5, 6, 7, 8],
        [5, 5, 1, 1, 5, 5, 1, 1],
    ]
    _set_l1_norms(model.stem, [norm for block in blocks for norm in block])
    kept_stem = [1, 3, 5, 7, 8, 9, 10, 11, 20, 21, 22, 23, 24, 25, 28, 29]  # ties (block 3): lower index
    _set_l1_norms(model.g, list(range(1, 65)))  # rising: each group of 16 keeps its last 8
    kept_g = [b * 16 + i for b in range(4) for i in range(8, 16)]
    new = scale(model, factor=0.5).model
    assert (new.g.in_channels, new.g.out_channels, new.g.groups) == (16, 32, 4)
    assert new.norm.num_channels == 32 and new.norm.num_groups == 4
    assert torch.equal(new.stem.weight, model.stem.weight[kept_stem])
    for block in range(4):
        rows = kept_g[block * 8 : block * 8 + 8]
        columns = [c - block * 8 for c in kept_stem[block * 4 : block * 4 + 4]]  # within-group input index
        assert torch.equal(new.g.weight[block * 8 : block * 8 + 8], model.g.weight[rows][:, columns])
    assert torch.equal(new.norm.weight, model.norm.weight[kept_g])
    assert new(torch.randn(2, 3, 16, 16)).shape == (2, 3)


def test_the_factor_comes_from_a_saturation_json(tmp_path):
    model, _ = rewriter.load_model("cifar_vgg11", num_classes=10)
    path = tmp_path / "sat.json"
    path.write_text(json.dumps({"s_mu": 0.125}))
    result = scale(model, saturation=str(path))
    # s_mu 12.5 % with saturation ~ 1/width: widths x 0.125 / 0.25 = 0.5 bring it to 25 %
    assert result.plans[0].params["factor"] == 0.5
    assert result.model.features[0].out_channels == 32
    # the resolved recipe records the factor, so a model file replays without the JSON or the data
    assert result.recipe.steps[0].params["factor"] == 0.5


def test_a_saturation_inside_the_band_changes_nothing(tmp_path):
    model, _ = rewriter.load_model("cifar_vgg11", num_classes=10)
    path = tmp_path / "sat.json"
    path.write_text(json.dumps({"s_mu": 0.27}))
    result = scale(model, saturation=str(path))
    assert result.plans[0].is_noop
    assert "already in 20%-30%" in result.plans[0].notes[0]


def test_without_data_or_a_factor_the_strategy_says_what_it_needs():
    model, _ = rewriter.load_model("cifar_vgg11", num_classes=10)
    with pytest.raises(rewriter.RewriteError, match="give --data"):
        scale(model)


def test_the_plan_predicts_the_measured_parameter_count(resnet18_half):
    _, result = resnet18_half
    note = result.plans[0].notes[1]
    after = result.report.rows[-1].params
    assert f"-> {after / 1e6:.2f} M" in note


def test_unsupported_channel_ops_are_refused_by_name():
    model, _ = rewriter.load_model("shufflenet_v2_x0_5", num_classes=10)
    with pytest.raises(rewriter.RewriteError, match=r"stage2\.0\.view"):
        scale(model, size=64, factor=0.5)


def test_layers_outside_the_evaluation_forward_are_refused():
    model, _ = rewriter.load_model("googlenet", num_classes=10)
    with pytest.raises(rewriter.RewriteError, match="aux1"):
        scale(model, size=64, factor=0.5)


@pytest.mark.parametrize(
    "channels, factor, expected",
    [(24, 0.5, 16), (40, 0.5, 24), (12, 0.5, 8), (1280, 0.5, 640), (100, 0.5, 48)],
)
def test_widths_round_like_torchvision_make_divisible(channels, factor, expected):
    from torchvision.models._utils import _make_divisible

    assert scaled(channels, factor, 8) == _make_divisible(channels * factor, 8) == expected


def _data(num_classes: int, images: torch.Tensor, labels: torch.Tensor):
    from torch.utils.data import TensorDataset

    from rewriter.lab import DataSource

    dataset = TensorDataset(images, labels)
    return DataSource("hand-made", dataset, dataset, num_classes, dataset)


class _BrightestChannel(nn.Module):
    """Predicts the image's brightest colour channel (3 classes), or always class 0 when ``constant``."""

    def __init__(self, constant: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.head = nn.Linear(8, 3)
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(3):
                self.conv.weight[c, c, 1, 1] = 1.0  # channel c copies colour c
            self.head.weight.zero_()
            self.head.bias.zero_()
            if constant:
                self.head.bias[0] = 1.0
            else:
                self.head.weight[:, :3] = torch.eye(3)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def _brightest_channel_data(count: int = 90):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(count) % 3
    images = torch.rand(count, 3, 8, 8, generator=generator) * 0.1
    images[torch.arange(count), labels] += 1.0
    return _data(3, images, labels)


def test_a_model_at_chance_is_refused_with_its_accuracy():
    data = _brightest_channel_data()  # balanced: always answering class 0 scores 1/3
    model = _BrightestChannel(constant=True)
    with pytest.raises(rewriter.RewriteError, match=r"test accuracy 33\.3% on 90 images .* is at chance"):
        rewriter.rewrite(model, ["scale-width"], input_size=8, data=data, latency=False)


def test_a_model_at_chance_proceeds_with_a_warning_when_asked():
    data = _brightest_channel_data()
    model = _BrightestChannel(constant=True)
    steps = [{"scale-width": {"untrained": True}}]
    result = rewriter.rewrite(model, steps, input_size=8, data=data, latency=False)
    assert any(n.startswith("warning: test accuracy 33.3%") for n in result.report.notes)


def test_a_model_above_chance_is_measured():
    data = _brightest_channel_data()
    model = _BrightestChannel()  # reads the brightest channel: every image right
    result = rewriter.rewrite(model, ["scale-width"], input_size=8, data=data, latency=False)
    assert "s_mu measured on 90 training images of hand-made" in result.plans[0].notes[0]
    assert not any("chance" in n for n in result.report.notes)


@pytest.mark.parametrize("factor", [1 / 16, 0.3, 0.5, 1.5])
def test_the_rounding_a_plan_names_is_the_one_it_applied(factor):
    """``64 -> 5 outputs (rounded to a multiple of 8)`` claimed a multiple that 5 is not."""
    model = nn.Sequential(
        conv(3, 64), nn.ReLU(), conv(64, 40), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 3)
    )
    plan = scale(model, factor=factor).plans[0]
    for edit in plan.edits:
        _, new = (int(v) for v in edit.detail.split(": ")[1].split(" outputs")[0].split(" -> "))
        if "rounded to a multiple of" in edit.reason:
            multiple = int(edit.reason.split("rounded to a multiple of ")[1].split()[0])
            assert new % multiple == 0, edit.format()
        if edit.target == "5":  # the head keeps its 3 classes
            assert new == 3 and edit.reason.startswith("fixed")
    first = plan.edits[0]
    if factor == 1 / 16:  # 64 / 16 = 4 channels: 8 would be twice the factor, so 4, and the reason says so
        assert first.detail == "Conv2d: 64 -> 4 outputs"
        assert (
            first.reason == "x 0.062 = 4, rounded to 4 (the divisor 8 would be more than the factor allows)"
        )


def test_prelu_passes_channels_on_and_a_per_channel_one_is_refused_by_name():
    """The channel analysis reads the op table the receptive-field rules use, so ops the old second table of
    scale-width lacked (PReLU, LayerNorm) are known; a PReLU with one slope per channel cannot be resized."""

    def net(prelu: nn.Module) -> nn.Module:
        return nn.Sequential(
            conv(3, 16), prelu, conv(16, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2)
        )

    new = scale(net(nn.PReLU()), factor=0.5).model
    assert (new[0].out_channels, new[2].in_channels, new[2].out_channels) == (8, 8, 8)
    with pytest.raises(rewriter.RewriteError, match=r"'1' \(PReLU\) holds per-channel parameters"):
        scale(net(nn.PReLU(16)), factor=0.5)


def test_the_accuracy_check_reads_every_class_of_a_class_sorted_split():
    """Image folders and CIFAR's files are sorted by class: the first 1024 of these 1500 test images hold no
    image of class 2, and a model that always answers class 0 scores 500/1024 = 48.8 % on them, seemingly
    above chance. The check reads a stratified sample of 1024 instead (341 or 342 per class): 1/3, chance."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(1500) // 500
    images = torch.rand(1500, 3, 8, 8, generator=generator) * 0.1
    images[torch.arange(1500), labels] += 1.0
    with pytest.raises(
        rewriter.RewriteError, match=r"test accuracy 33\.[34]% on 1024 images .* is at chance"
    ):
        rewriter.rewrite(_BrightestChannel(constant=True), ["scale-width"], input_size=8,
                         data=_data(3, images, labels), latency=False)  # fmt: skip
