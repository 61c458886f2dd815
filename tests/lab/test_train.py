"""Training: the loss falls, a resumed run is the uninterrupted run, and DDP runs on two CPU processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import rewriter
from rewriter.lab.data import load_data
from rewriter.lab.training import TrainConfig, TrainError, train

from ..nets import conv, tiny_cnn

ROOT = Path(__file__).resolve().parents[2]


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv(3, 16), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            conv(16, 32), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            conv(32, 32), nn.BatchNorm2d(32), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def data():
    return load_data("synthetic:512", 32)


CONFIG = TrainConfig(epochs=2, lr=0.05, batch_size=32)


def fresh() -> nn.Module:
    torch.manual_seed(0)
    return Tiny()


def test_two_epochs_on_synthetic_reduce_the_loss(data):
    result = train(fresh(), data, CONFIG, progress=False)
    first, second = result.history
    assert second.loss < first.loss
    assert (first.lr, second.lr) == (0.05, 0.05 * 0.1)  # stepped after each third of the run: every epoch
    assert 0 <= second.test_accuracy <= 1


def test_a_resumed_run_continues_from_the_checkpoint_epoch_and_matches_an_uninterrupted_one(data, tmp_path):
    reference = train(fresh(), data, CONFIG, progress=False)

    checkpoint = tmp_path / "run.ckpt"

    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fresh(), data, CONFIG, checkpoint=checkpoint, progress=False, on_epoch=stop)
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 0
    epochs_run = []
    resumed = train(
        fresh(), data, CONFIG, checkpoint=checkpoint, resume=True, progress=False,
        on_epoch=lambda record: epochs_run.append(record.epoch),
    )  # fmt: skip
    assert epochs_run == [1]  # only the second epoch ran
    assert [h.epoch for h in resumed.history] == [0, 1]
    assert resumed.history[0] == reference.history[0]
    assert resumed.history[1].loss == pytest.approx(reference.history[1].loss, rel=1e-6)
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_another_model_is_refused(data, tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    train(fresh(), data, TrainConfig(epochs=1, max_batches=1), checkpoint=checkpoint, progress=False)
    other = nn.Sequential(conv(3, 4), nn.Flatten(), nn.LazyLinear(10))
    with pytest.raises(TrainError, match="does not fit the model"):
        train(other, data, TrainConfig(epochs=2), checkpoint=checkpoint, resume=True, progress=False)


def test_resuming_without_a_checkpoint_says_so(data, tmp_path):
    with pytest.raises(TrainError, match="no checkpoint"):
        train(fresh(), data, CONFIG, checkpoint=tmp_path / "none.ckpt", resume=True, progress=False)


def test_a_diverging_loss_stops_with_advice(data):
    with pytest.raises(TrainError, match="lower the learning rate"):
        train(fresh(), data, TrainConfig(epochs=1, lr=1e30), progress=False)


def test_torchrun_trains_with_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "rewriter", "train", "cifar_vgg11", "--data", "synthetic:128", "--epochs", "1",
        "--max-batches", "2", "--batch-size", "16", "--lr", "0.01", "-o", str(out), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["processes"] == 2
    assert len(summary["history"]) == 1
    model = rewriter.load(str(out))
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_training_only_the_head_leaves_the_rest_untouched(data):
    model = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(epochs=1, lr=0.05, batch_size=32, max_batches=3, train_only="head")
    train(model, data, config, progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}  # batch-norm statistics of the frozen layers included
    assert all(p.requires_grad for p in model.parameters())  # the model is trainable again afterwards


def train_command(tmp_path: Path, *extra: str, name: str = "m.pt") -> list[str]:
    return ["train", "tests.nets:tiny_cnn", "--data", "synthetic:64", "--epochs", "1", "--max-batches", "2",
            "--batch-size", "16", "--lr", "0.05", "--precision", "fp32", "-o", str(tmp_path / name),
            *extra]  # fmt: skip


def test_the_same_seed_gives_the_same_weights(tmp_path, capsys):
    from rewriter.cli import main

    assert main(train_command(tmp_path, "--seed", "0", name="a.pt")) == 0
    assert main(train_command(tmp_path, "--seed", "0", name="b.pt")) == 0
    assert main(train_command(tmp_path, "--seed", "1", name="c.pt")) == 0
    a, b, c = (
        rewriter.load(str(tmp_path / n), trust_pickle=True).state_dict() for n in ("a.pt", "b.pt", "c.pt")
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_resume_with_another_configuration_is_refused_naming_the_fields(data, tmp_path, capsys):
    from rewriter.cli import main

    assert main(train_command(tmp_path)) == 0
    assert main(train_command(tmp_path, "--resume", "--force", "--optimizer", "adam")) == 1
    err = capsys.readouterr().err
    assert "differing in optimizer ('sgd' in the checkpoint, 'adam' now)" in err and "Traceback" not in err
    other = tmp_path / "m.pt.ckpt"
    with pytest.raises(
        TrainError, match=r"differing in lr \(0\.05 in the checkpoint, 0\.1 now\); seed \(0 .*, 3 now\)"
    ):
        train(tiny_cnn(), data, TrainConfig(epochs=1, max_batches=2, batch_size=16, lr=0.1, seed=3, warmup_epochs=1),
              checkpoint=other, resume=True, progress=False)  # fmt: skip
    with pytest.raises(
        TrainError, match=r"differing in data \('synthetic:64' in the checkpoint, 'synthetic:512' now\)"
    ):
        train(tiny_cnn(), data, TrainConfig(epochs=1, max_batches=2, batch_size=16, lr=0.05, warmup_epochs=1),
              checkpoint=other, resume=True, progress=False)  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("epochs", -1, "epochs must be 1 or more, got -1"), ("epochs", 0, "epochs must be 1 or more, got 0"),
     ("max_batches", 0, "max_batches must be 1 or more, got 0"), ("lr", -1.0, "lr must be above 0, got -1"),
     ("lr", float("nan"), "lr must be a finite number above 0, got nan"),
     ("momentum", 1.0, "momentum must be in [0, 1), got 1"), ("batch_size", 0, "batch_size must be 1 or more"),
     ("epochs", 2.5, "epochs must be a whole number 1 or more, got 2.5")],
)  # fmt: skip
def test_a_setting_outside_its_declared_range_is_refused(field, value, message):
    with pytest.raises(TrainError, match=re.escape(message)):
        TrainConfig(**{field: value})


def test_the_command_refuses_bad_epochs_before_any_work(tmp_path, capsys):
    from rewriter.cli import main

    for flags in (["--epochs", "-1"], ["--max-batches", "0"]):
        command = [a for a in train_command(tmp_path) if a not in ("--epochs", "1", "--max-batches", "2")]
        with pytest.raises(SystemExit) as stop:  # a usage error, exit code 2
            main([*command, *flags])
        assert stop.value.code == 2
        assert f"argument {flags[0]}: expected an integer" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
