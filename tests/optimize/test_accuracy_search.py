"""The accuracy-aware search: successive halving on a validation split, the test split read once at the end."""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

import rewriter
from rewriter.engine.saving import load_model_file
from rewriter.lab.data import dataset_labels, load_data
from rewriter.lab.model_request import ModelRequest
from rewriter.lab.training import EpochRecord, TrainConfig, TrainResult, train
from rewriter.optimize.accuracy import Schedule, search_accuracy
from rewriter.optimize.accuracy_result import Entry, kendall
from rewriter.optimize.halving import rungs
from rewriter.optimize.search import Candidate
from rewriter.optimize.trials import TrialSetup, build_candidate
from tests.cli_runner import run

# validation accuracy per candidate, whatever the epoch: c0 the baseline (153 M FLOPs), c1 truncate at the
# input border (96 M), c3 truncate at the output border (78 M), c2 truncate one block later (134 M)
ACCURACY = {"c0": 0.90, "c1": 0.89, "c2": 0.895, "c3": 0.80}
EVENTS: list[tuple] = []


def fake_train(model, data, config, *, checkpoint, resume, device, progress, on_epoch, until_epoch):
    """``train``'s signature; reads one training and one validation image per epoch, reports the known
    accuracy, and keeps the epochs done in its checkpoint."""
    key = Path(checkpoint).name.split("-seed")[0]
    done = torch.load(checkpoint, weights_only=True)["epochs"] if resume else 0
    history = [EpochRecord(e, 1.0, 0.5, ACCURACY[key], 0.1) for e in range(until_epoch)]
    for record in history[done:]:
        data.train[0], data.test[0]
        on_epoch(record)
    EVENTS.append(("train", key, until_epoch))
    torch.save({"model": model.state_dict(), "epochs": max(done, until_epoch)}, checkpoint)
    return TrainResult(model, history)


class Recording(Dataset):
    """A dataset that notes every index read."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        EVENTS.append(("test", index))
        return self.base[index]


@pytest.fixture(scope="module")
def vgg_result():
    return rewriter.optimize_model(
        "cifar_vgg11", input_size=32, exclude=["remove-stem-downsampling", "reposition-downsampling"],
        dry_run=True,
    )  # fmt: skip


def test_the_search_picks_the_cheapest_within_the_drop_stops_losers_at_the_first_rung_and_tests_last(
    vgg_result, tmp_path
):
    EVENTS.clear()
    data = load_data("synthetic:64", 32)
    data = dataclasses.replace(data, test=Recording(data.test))
    config = TrainConfig(epochs=3, batch_size=16)
    setup = TrialSetup(ModelRequest("cifar_vgg11"), "synthetic:64", (32, 32), config, tmp_path / "out",
                       train_fn=fake_train)  # fmt: skip
    schedule = Schedule(max_drop=2.0, min_epochs=1, factor=3, top=3)
    search = search_accuracy(vgg_result, setup, schedule, data=data)
    # rung 1 (epoch 1): the baseline 0.90 sets the floor 0.88 and is heard first with score 1 (within, no
    # saving); c1 within (1 + 1 - 96/153 = 1.37), c2 within (1 + 1 - 134/153 = 1.12), c3 below (0.80 - 0.88).
    # Heard after the baseline cheapest first: c3 is below the baseline's 1 (stopped), c1 is the best so far
    # (goes on), c2 is not in the best third of 4 scores, i.e. not the best (stopped)
    assert sorted(e.key for e in search.entries) == ["c0", "c1", "c2", "c3"]
    stopped = {e.key: e.stopped for e in search.entries}
    assert stopped == {"c0": 3, "c1": 3, "c3": 1, "c2": 1}
    assert search.chosen == "c1"
    assert (search.epochs_spent, search.epochs_full) == (3 + 3 + 1 + 1, 4 * 3)
    last_training = max(i for i, event in enumerate(EVENTS) if event[0] == "train")
    test_reads = [i for i, event in enumerate(EVENTS) if event[0] == "test"]
    assert len(test_reads) == 2 * len(data.test)  # the two finalists, once each
    assert min(test_reads) > last_training
    # 10% of 64 is raised to the 10 classes; synthetic:64 holds 11 3 4 5 4 7 11 5 8 6 images of classes 0-9:
    # shares 10 * n / 64 = 1.72 .47 .63 .78 .63 1.09 1.72 .78 1.25 .94, whole parts 1 0 0 0 0 1 1 0 1 0, and
    # the six largest remainders (classes 9, 3, 7, 0, 6, then 2 or 4 tied) one more each
    held = search.holdout.indices
    counts = collections.Counter(dataset_labels(data.train)[i] for i in held)
    tied = 2 if counts[2] else 4
    assert counts == {0: 2, 3: 1, 5: 1, 6: 2, 7: 1, 8: 1, 9: 1, tied: 1}
    assert {p.name for p in (tmp_path / "out" / "finalists").iterdir()} == {"c0.pt", "c1.pt"}


def _entry(key: str, rank: int, accuracy: float, stopped: int = 3) -> Entry:
    candidate = Candidate(int(key[1:]), (), "ok")
    entry = Entry(key, candidate, 1.0, rank, {stopped: accuracy}, stopped, finalist=stopped == 3)
    entry.validation = [accuracy] if entry.finalist else []
    return entry


def test_kendalls_tau_of_a_known_pair_of_rankings():
    # training-free order A B C D; trained order B A D C: pairs AB and CD disagree, the other four agree,
    # so tau = (4 - 2) / 6 = 1/3
    entries = [_entry("c0", 0, 0.8), _entry("c1", 1, 0.9), _entry("c2", 2, 0.6), _entry("c3", 3, 0.7)]
    tau, _ = kendall(entries)
    assert tau == pytest.approx(1 / 3)
    # a candidate stopped at the first rung ranks below every finalist, whatever its accuracy there
    entries[0] = _entry("c0", 0, 0.99, stopped=1)  # trained order B D C A: AB, AC, AD, CD disagree
    assert kendall(entries)[0] == pytest.approx((2 - 4) / 6)


def test_rungs_grow_by_the_factor_and_end_at_the_full_run():
    assert rungs(30, min_epochs=3, factor=3) == (3, 9, 27, 30)
    assert rungs(9, min_epochs=1, factor=3) == (1, 3, 9)


def test_a_run_stopped_at_a_rung_and_resumed_is_the_full_run(tmp_path):
    data = load_data("synthetic:32", 32)
    config = TrainConfig(epochs=2, batch_size=16, max_batches=1, lr=0.01)
    torch.manual_seed(0)
    full = train(rewriter.load_model("cifar_vgg11", num_classes=10)[0], data, config, progress=False)
    torch.manual_seed(0)
    model = rewriter.load_model("cifar_vgg11", num_classes=10)[0]
    path = tmp_path / "ck.pt"
    first = train(model, data, config, checkpoint=path, progress=False, until_epoch=1)
    assert len(first.history) == 1
    torch.manual_seed(0)
    model = rewriter.load_model("cifar_vgg11", num_classes=10)[0]
    rest = train(model, data, config, checkpoint=path, resume=True, progress=False)
    assert [h.lr for h in rest.history] == [h.lr for h in full.history]
    for a, b in zip(full.model.state_dict().values(), rest.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_cli_search_writes_the_chosen_model_with_its_trained_weights(tmp_path, capsys):
    out, chosen, report = tmp_path / "out", tmp_path / "chosen.pt", tmp_path / "report.json"
    code, stdout, stderr = run(
        capsys, "optimize", "cifar_vgg11", "--input-size", "32", "--exclude", "remove-stem-downsampling",
        "--exclude", "reposition-downsampling", "--data", "synthetic:64", "--by-accuracy", "--top", "1",
        "--epochs", "1", "--max-batches", "1", "--out", str(out), "-o", str(chosen), "--report", str(report),
    )  # fmt: skip
    assert code == 0, stderr
    assert (
        "Kendall's tau" in stdout
        and "rung 1/1 (to epoch 1 of 1), candidate 1/3 c0, seed 0: epoch 1," in stderr
    )
    key = next(line.split()[1] for line in stdout.splitlines() if line.startswith("chosen: "))
    written = load_model_file(chosen).model.state_dict()
    trained = torch.load(out / "checkpoints" / f"{key}-seed0.pt", weights_only=True)["model"]
    assert written.keys() == trained.keys()
    assert all(torch.equal(written[k], trained[k]) for k in written)
    search = json.loads(report.read_text())["accuracy_search"]
    assert search["chosen"] == key
    assert search["validation_split"]["count"] == 10  # 10% of 64, raised to the 10 classes
    assert (
        search["epochs_full"] == len(search["candidates"]) and search["epochs_spent"] == search["epochs_full"]
    )
    assert all(c["test_accuracy"] and "1" in c["validation_per_rung"] for c in search["candidates"])


def test_every_model_the_search_rebuilds_carries_the_model_arguments(tmp_path):
    import torchvision

    data = load_data("synthetic:32", 32)
    request = ModelRequest("mobilenet_v2", model_args={"width_mult": 0.5})
    setup = TrialSetup(request, "synthetic:32", (32, 32), TrainConfig(epochs=1), tmp_path)
    model, _ = build_candidate(setup, (), 0, data)
    expected = torchvision.models.mobilenet_v2(width_mult=0.5, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in expected.parameters())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "need --data SPEC"),
        (("--data", "synthetic:64", "--out", "o", "--dry-run"), "leave out --validate and --dry-run"),
        (("--data", "synthetic:64", "--out", "o", "--min-epochs", "5", "--epochs", "2"), "above --epochs 2"),
    ],
)
def test_the_search_options_are_checked_before_anything_runs(capsys, extra, message):
    code, _, stderr = run(
        capsys, "optimize", "cifar_vgg11", "--input-size", "32", "--max-accuracy-drop", "1", *extra
    )
    assert code == 2 and message in stderr


def test_a_search_resumes_from_its_checkpoints_and_refuses_a_folder_of_another_search(vgg_result, tmp_path):
    data = load_data("synthetic:64", 32)
    setup = TrialSetup(ModelRequest("cifar_vgg11"), "synthetic:64", (32, 32), TrainConfig(epochs=3),
                       tmp_path / "out", train_fn=fake_train)  # fmt: skip
    schedule = Schedule(max_drop=2.0, min_epochs=1, factor=3, top=3)
    first = search_accuracy(vgg_result, setup, schedule, data=data)
    again = search_accuracy(vgg_result, setup, schedule, data=data)
    assert again.chosen == first.chosen == "c1" and (first.epochs_spent, again.epochs_spent) == (8, 0)
    longer = dataclasses.replace(setup, config=TrainConfig(epochs=4))
    with pytest.raises(rewriter.RewriterError, match="holds the checkpoints of another search"):
        search_accuracy(vgg_result, longer, schedule, data=data)


@pytest.mark.slow  # two spawned worker processes import torch, then train three small models for two batches
def test_a_pool_of_processes_trains_the_candidates_as_this_process_does(vgg_result, tmp_path):
    from rewriter.lab.study import Executor

    config = TrainConfig(epochs=2, batch_size=16, max_batches=1, lr=0.01)
    schedule = Schedule(max_drop=50.0, min_epochs=1, factor=2, top=1)
    found = {}
    for kind, workers in (("serial", 1), ("processes", 2)):
        setup = TrialSetup(ModelRequest("cifar_vgg11"), "synthetic:64", (32, 32), config, tmp_path / kind)
        search = search_accuracy(vgg_result, setup, schedule, executor=Executor(kind, workers=workers))
        found[kind] = [(e.key, e.rungs, e.test) for e in search.entries]
    assert found["processes"] == found["serial"]
