"""Precision: what auto chooses on which hardware, and bf16 training learning as well as fp32."""

from __future__ import annotations

import statistics

import pytest
import torch

from rewriter.lab import precision as precision_module
from rewriter.lab.precision import resolve_precision
from rewriter.lab.train_records import TrainError


@pytest.fixture
def bf16_native(monkeypatch):
    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision_module, "native_bf16", lambda device_type="cpu": value)

    return set_native


def test_auto_takes_bf16_and_channels_last_where_the_cpu_computes_bf16(bf16_native):
    bf16_native(True)
    chosen = resolve_precision("auto", "cpu")
    assert (chosen.name, chosen.channels_last) == ("bf16", True)
    assert "natively" in chosen.reason


def test_auto_falls_back_to_fp32_where_bf16_is_not_native(bf16_native):
    bf16_native(False)
    chosen = resolve_precision("auto", "cpu")
    assert (chosen.name, chosen.channels_last, chosen.label) == ("fp32", False, "fp32")
    assert "no native bf16" in chosen.reason


@pytest.mark.parametrize(("flag", "native"), [("amx_bf16", True), ("avx512_bf16", True), ("avx512f", False)])
def test_native_bf16_reads_the_cpu_flags(tmp_path, flag, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flag}\n")
    assert precision_module.native_bf16("cpu", str(cpuinfo)) is native
    assert precision_module.native_bf16("cpu", str(tmp_path / "none")) is False  # no cpuinfo: not native


def test_fp16_on_a_cpu_is_refused_and_an_unknown_name_too():
    with pytest.raises(TrainError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(TrainError, match="precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", "cpu")


def test_a_bf16_step_computes_in_bf16_and_keeps_fp32_weights():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    chosen = resolve_precision("bf16", "cpu")
    chosen.prepare(model(torch.zeros(1, 3, 6, 6)) is not None and model)
    with chosen.autocast(torch.device("cpu")):
        out = model(chosen.inputs(torch.randn(2, 3, 6, 6)))
    assert out.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_bf16_training_reaches_the_accuracy_of_fp32_within_noise():
    """The digits (1437 training scans, 360 test), a small CNN, 4 epochs, seeds 0-2, each seed in fp32 and in
    bf16: the mean test accuracies differ by less than 3 standard errors of their difference plus 1 pp."""
    from rewriter.lab.data import load_data
    from rewriter.lab.training import TrainConfig, train
    from tests.nets import tiny_cnn

    data = load_data("digits", 32)
    scores = {"fp32": [], "bf16": []}
    for seed in range(3):
        for name in scores:
            torch.manual_seed(seed)
            config = TrainConfig(epochs=4, batch_size=32, lr=0.05, seed=seed, precision=name, test_every=0)
            result = train(tiny_cnn(10, width=16), data, config, progress=False)
            assert result.precision.startswith(name)
            scores[name].append(result.test_accuracy)
    assert min(scores["fp32"]) > 0.5  # learned: chance is 10 %
    difference = statistics.mean(scores["bf16"]) - statistics.mean(scores["fp32"])
    noise = (statistics.variance(scores["bf16"]) / 3 + statistics.variance(scores["fp32"]) / 3) ** 0.5
    assert abs(difference) < 3 * noise + 0.01, scores
