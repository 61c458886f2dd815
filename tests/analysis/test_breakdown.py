"""Cost per layer and per module (issue 24.4), in fvcore's by_module convention, against a hand count and
against fvcore itself."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

import rewriter
from rewriter.analysis.flops_fvcore import _fvcore
from rewriter.render.tables import format_analysis

from ..cli_runner import run


class Small(nn.Module):
    """conv-bn-relu-pool in a Sequential, a second conv, a functional global pool (no module), a head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.conv2(self.body(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# By hand at 10x10 (one multiply-add = one flop): conv 8 x 10 x 10 outputs x 27 = 21600; eval batch norm with
# affine 2 per element, 2 x 800 = 1600; max pool 0; conv2 16 x 5 x 5 x 72 = 28800; the global pool 1 per
# input element, 400 (no module: it counts towards the model, ""); fc 16 x 4 = 64.
FLOPS = {"body.0": 21600, "body.1": 1600, "body": 23200, "conv2": 28800, "fc": 64, "": 52464}
PARAMS = {"body.0": 8 * 27 + 8, "body.1": 16, "body": 240, "conv2": 8 * 9 * 16, "fc": 16 * 4 + 4, "": 1460}


def test_flops_and_params_by_module_are_the_hand_count_and_fvcores():
    model = Small().eval()
    analysis = rewriter.analyze(model, 10)
    by_module, params = dict(analysis.flops_by_module), dict(analysis.params_by_module)
    assert {k: by_module.get(k, 0) for k in FLOPS} == FLOPS
    assert {k: params.get(k, 0) for k in PARAMS} == PARAMS
    fvcore = _fvcore()
    counted = fvcore.FlopCountAnalysis(model, torch.zeros(1, 3, 10, 10)).unsupported_ops_warnings(False)
    theirs = counted.by_module()
    assert {k: v for k, v in theirs.items() if v} == {k: v for k, v in by_module.items() if v}
    per_module = {
        k: v for k, v in fvcore.parameter_count(model).items() if k in set(params)
    }  # not per tensor
    assert per_module == params


def test_each_layer_has_its_params_flops_and_share_in_the_json_and_the_table(capsys):
    analysis = rewriter.analyze(Small().eval(), 10)
    assert analysis.layer_cost("conv2") == (1152, 28800)
    layers = {layer["name"]: layer for layer in analysis.to_json()["layers"]}
    assert layers["body.0"]["flops"] == 21600 and layers["body.0"]["params"] == 224
    assert layers["conv2"]["flops_share"] == 28800 / 52464 and layers["conv2"]["params_share"] == 1152 / 1460
    assert layers["adaptive_avg_pool2d"]["flops"] == 400 and layers["adaptive_avg_pool2d"]["params"] is None
    row = next(line for line in format_analysis(analysis).splitlines() if " conv2 " in line)
    assert "1.15 k  28.80 k     54.9" in row  # params, FLOPs, share: 28800 / 52464


def test_the_fvcore_backend_gives_the_same_layer_figures():
    meta = rewriter.analyze(Small().eval(), 10)
    fv = rewriter.analyze(Small().eval(), 10, flops_backend="fvcore")
    for name in ("body.0", "conv2", "fc"):
        assert fv.layer_cost(name)[1] == meta.layer_cost(name)[1] == FLOPS[name]


def test_analyze_json_carries_the_figures_of_a_named_model(capsys):
    code, out, _ = run(capsys, "analyze", "cifar_vgg11", "--input-size", "32", "--json")
    data = json.loads(out)
    # features.0: Conv2d(3, 64, 3, padding 1) at 32x32: 64 x 32 x 32 x 27 multiply-adds, 64 x 27 + 64 params
    first = data["layers"][0]
    assert code == 0 and (first["flops"], first["params"]) == (64 * 1024 * 27, 64 * 28)
    assert data["flops_by_module"][""] == data["flops"] and data["params_by_module"][""] == data["params"]
