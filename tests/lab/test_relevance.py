"""Per-image relevance and input-adaptive skipping (paper 004)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import rewriter
from rewriter.cli import main
from rewriter.lab.data import load_data
from rewriter.lab.relevance import RelevanceError, compute_relevance, label_units, relevance_from_strengths
from rewriter.lab.routing import Gate, RoutedModel, Router, gate_units, routing_stats

from .. import nets
from ..nets import conv


class Res(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv(width, width), conv(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class Toy(nn.Module):
    """A stem and three residual blocks; ``dead=True`` zeroes the third block's weights (identity)."""

    def __init__(self, dead: bool = False) -> None:
        super().__init__()
        self.stem = conv(3, 8)
        self.b1, self.b2, self.b3 = Res(8), Res(8), Res(8)
        self.head = nn.Linear(8, 4)
        if dead:
            with torch.no_grad():
                self.b3.conv1.weight.zero_()
                self.b3.conv2.weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b3(self.b2(self.b1(torch.relu(self.stem(x)))))
        return self.head(x.mean((2, 3)))


def images(count: int = 60, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    data = TensorDataset(
        torch.randn(count, 3, 8, 8, generator=generator), torch.zeros(count, dtype=torch.long)
    )
    return DataLoader(data, batch_size=16)


def test_a_block_that_only_passes_its_input_through_labels_no_image():
    torch.manual_seed(0)
    model = Toy(dead=True)
    analysis = rewriter.analyze(model, 8, flops=False)
    relevance = compute_relevance(model, analysis, images(), maps=4, top=5)
    assert [u.name for u in relevance.units] == ["stem", "b1", "b2", "b3"]
    assert [u.skippable for u in relevance.units] == [False, True, True, True]
    assert [u.residual for u in relevance.units] == [False, True, True, True]
    assert int(relevance.relevant[3].sum()) == 0 and relevance.counts[3] == 0
    assert relevance.counts[2] > 0  # the live blocks before it do label images
    assert "b3" in relevance.candidates()


def test_labels_are_the_deepest_unit_and_ties_go_deeper():
    # 4 images, 3 units, 1 map; top 1: unit 0 -> image 2, unit 1 -> image 2, unit 2 -> image 0
    strengths = torch.tensor([[1.0, 0.0, 9.0], [2.0, 1.0, 1.0], [5.0, 8.0, 2.0], [0.5, 0.5, 0.5]]).unsqueeze(
        2
    )
    units = [None, None, None]
    relevance = relevance_from_strengths(strengths, units, maps=1, top=1)  # type: ignore[arg-type]
    assert relevance.labels.tolist() == [2, -1, 1, -1]
    assert relevance.counts == [0, 1, 1] and relevance.labelled == 2


def gated_toy(model: nn.Module):
    analysis = rewriter.analyze(model, 8, flops=False)
    units = label_units(model, analysis)
    backbone, routes = gate_units(model, units)
    return RoutedModel(Router(len(units), width=4), backbone, routes, [u.name for u in units])


def test_the_skipping_forward_runs_exactly_the_chosen_units_per_image():
    torch.manual_seed(0)
    reference = Toy().eval()
    routed = gated_toy(Toy()).eval()
    # the reference's weights (a gate adds '.body' to its unit's path)
    weights = reference.state_dict()
    routed.backbone.load_state_dict(
        {k: weights[k.replace(".body", "")] for k in routed.backbone.state_dict()}
    )
    calls = {name: 0 for name in ("b1", "b2", "b3")}
    for name in calls:
        getattr(routed.backbone, name).body.register_forward_hook(
            lambda _m, inputs, _o, name=name: calls.__setitem__(name, calls[name] + inputs[0].shape[0])
        )
    x = torch.randn(6, 3, 8, 8)
    route = torch.tensor([0, 1, 2, 3, 3, 1])
    with torch.no_grad():
        out = routed(x, route)
    assert calls == {"b1": 5, "b2": 3, "b3": 2}  # images with label >= 1, >= 2, >= 3
    for i, label in enumerate(route.tolist()):
        h = torch.relu(reference.stem(x[i : i + 1]))
        for k, block in enumerate((reference.b1, reference.b2, reference.b3), start=1):
            h = block(h) if k <= label else h
        torch.testing.assert_close(out[i : i + 1], reference.head(h.mean((2, 3))))
    with torch.no_grad():  # every image labelled with the deepest unit: the full model
        torch.testing.assert_close(routed(x, torch.full((6,), 3)), reference(x))


def test_a_plain_nets_same_width_convs_are_gated_with_their_activation():
    model, _ = rewriter.load_model("relevance_cnn", model_args={"input_size": 8})
    routed = gated_toy(model)
    assert [type(m).__name__ for m in routed.backbone.features] == ["Conv2d", "ReLU", "Gate", "Gate"]
    assert isinstance(routed.backbone.features[2], Gate) and len(routed.backbone.features[2].body) == 2
    assert routed(torch.randn(3, 3, 8, 8)).shape == (3, 10)


def test_a_model_without_skippable_units_is_refused():
    model = nets.widening(2)
    with pytest.raises(rewriter.RewriteError, match="no unit of this model keeps its input's shape"):
        rewriter.rewrite(model, {"steps": [{"skip-irrelevant-layers": {}}]}, input_size=8, latency=False,
                         data=load_data("synthetic:32", 8))  # fmt: skip


@pytest.fixture(scope="module")
def skipping():
    data = load_data("digits:400", 12)
    model, spec = rewriter.load_model("relevance_cnn", model_args={"width": 8, "input_size": 12})
    params = {"epochs": 2, "maps": 4, "top": 5, "lr": 0.003}
    result = rewriter.rewrite(model, {"steps": [{"skip-irrelevant-layers": params}]}, input_size=12, data=data,
                              latency=False)  # fmt: skip
    return result, spec, data


def test_the_strategy_trains_a_router_and_a_skipping_backbone(skipping):
    result, _, _ = skipping
    assert isinstance(result.model, RoutedModel) and result.model.units == [
        "features.0",
        "features.2",
        "features.4",
    ]
    notes = "\n".join(result.report.notes)
    assert (
        "router (CNN 2) test accuracy" in notes
        and "CNN 3 test accuracy" in notes
        and "FLOPs per image" in notes
    )


def test_a_skipping_model_saves_and_reloads_without_data(skipping, tmp_path):
    result, spec, data = skipping
    path = tmp_path / "dyn.pt"
    rewriter.save(result.model, path, spec=spec, recipe=result.recipe, input_size=(12, 12))
    reloaded = rewriter.load(str(path))
    x = torch.stack([data.test[i][0] for i in range(8)])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(x), result.model.eval()(x))


def test_the_command_prints_json_and_plots(capsys, tmp_path):
    plot = tmp_path / "relevance.png"
    code = main(["relevance", "relevance_cnn", "--model-arg", "width=8", "--model-arg", "input_size=12",
                 "--data", "digits:200", "--input-size", "12", "--maps", "4", "--top", "5", "--json",
                 "--plot", str(plot)])  # fmt: skip
    out, _ = capsys.readouterr()
    result = json.loads(out)
    assert code == 0 and plot.stat().st_size > 0
    assert [u["name"] for u in result["units"]] == ["features.0", "features.2", "features.4"]
    # every labelled image has exactly one label; at most 4 maps x 5 images are relevant to a unit
    assert sum(u["labelled_images"] for u in result["units"]) == result["labelled"]
    assert all(u["relevant_images"] <= 20 for u in result["units"])
    assert len(result["labels"]) == result["images"] == 200


def test_the_command_explains_a_model_without_skippable_units(capsys):
    code = main(["relevance", "tests.nets:widening", "--data", "synthetic:32", "--input-size", "16"])
    _, err = capsys.readouterr()
    assert code != 0 and "no unit of this model keeps its input's shape" in err and "Traceback" not in err


class FixedRouter(nn.Module):
    """Labels 0, 1, 2, 3, 0, 1, ... by position in the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.arange(len(x)) % 4, 4).float() + 0 * x.mean()


def test_flops_per_image_are_the_router_and_the_units_each_image_ran():
    routed = gated_toy(Toy()).eval()
    routed.router = FixedRouter()
    stats = routing_stats(routed, images(8), (8, 8))
    # multiply-adds by hand: stem 3 -> 8 channels, 3x3, on 8x8; each block two 3x3 convs 8 -> 8; head 8 -> 4
    stem, block, head = 8 * 3 * 9 * 64, 2 * 8 * 8 * 9 * 64, 8 * 4
    assert stats.flops_static == stem + 3 * block + head
    assert stats.label_counts == [2, 2, 2, 2]
    ran = [f - stats.flops_router for f in stats.flops_per_image]
    assert ran == [stem + head + k * block for k in (0, 1, 2, 3)] * 2


class SharedReLU(nn.Module):
    """Tutorial style: conv/bn attributes called by name, one ReLU module used after every conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean((2, 3)))


class TwiceCalled(Toy):
    """Block b1 runs twice: it cannot be skipped for one of its calls."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b3(self.b2(self.b1(self.b1(torch.relu(self.stem(x))))))
        return self.head(x.mean((2, 3)))


def test_units_of_shared_modules_are_not_skippable():
    model = TwiceCalled()
    units = label_units(model, rewriter.analyze(model, 8, flops=False))
    assert [(u.name, u.skippable) for u in units] == [("stem", False), ("b2", True), ("b3", True)]
    # conv2 + bn2 + the shared ReLU: not in a Sequential and the ReLU runs twice: nothing to skip, said so
    with pytest.raises(RelevanceError, match="runs its modules once"):
        label_units(SharedReLU(), rewriter.analyze(SharedReLU(), 8, flops=False))


def test_flops_per_image_of_a_grayscale_model():
    model = Toy()
    model.stem = conv(1, 8)  # one input channel, as paper 004's MNIST
    analysis = rewriter.analyze(model, 8, in_channels=1, flops=False)
    units = label_units(model, analysis)
    backbone, routes = gate_units(model, units)
    routed = RoutedModel(FixedRouter(), backbone, routes, [u.name for u in units]).eval()
    batches = [(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))]
    stats = routing_stats(routed, batches, (8, 8), in_channels=1)
    assert stats.flops_static == 8 * 1 * 9 * 64 + 3 * (2 * 8 * 8 * 9 * 64) + 8 * 4
