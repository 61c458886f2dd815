"""Extending a study (issue 24 item 5): finished cells continue from their checkpoints to more epochs, with
the longer schedule from the epoch reached; the extension is recorded per cell, in study.json and in the
summary; what cannot be extended is refused with what to do."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from rewriter._errors import UsageError
from rewriter._files import write_json
from rewriter.lab.batches import loader
from rewriter.lab.data import load_data
from rewriter.lab.study import (
    CellRow,
    EpochPoint,
    Executor,
    Extension,
    Study,
    StudyError,
    StudySetup,
    executors,
    parse_variant,
    run_study,
)
from rewriter.lab.study.cells import CellJob
from rewriter.lab.study.extension import outcome
from rewriter.lab.study.markdown import summary_markdown
from rewriter.lab.study.record import stopped
from rewriter.lab.study.summary import summarize
from rewriter.lab.training import TrainConfig, TrainError, train
from tests.cli_runner import run
from tests.nets import tiny_cnn

TINY = "tests.nets:tiny_cnn"
LR = 0.05
SETUP = StudySetup(data="synthetic:64", input_size=(32, 32), epochs=2, lr=LR, batch_size=16, max_batches=2,
                   latency_repeats=2)  # fmt: skip
VARIANTS = [parse_variant("baseline"), parse_variant("truncate")]


def study(out: Path, epochs: int, **options) -> Study:
    return Study([TINY], VARIANTS, [0], replace(SETUP, epochs=epochs), out, **options)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory) -> Path:
    """A study of two epochs that kept its checkpoints."""
    out = tmp_path_factory.mktemp("two") / "s"
    run_study(study(out, 2, keep_checkpoints=True), progress=False)
    return out


def copied(two_epochs: Path, tmp_path: Path) -> Path:
    shutil.copytree(two_epochs, tmp_path / "s")
    return tmp_path / "s"


def test_an_extended_cell_is_the_fresh_longer_run_where_both_schedules_agree(two_epochs, tmp_path):
    # StepLR steps every ceil(epochs / 3) epochs: 1 for both 2 and 3 epochs, so the rule promises the
    # extended cells are the fresh 3-epoch runs; the fresh runs are a second study, never extended
    out = copied(two_epochs, tmp_path)
    before = {r.recipe: r for r in study(out, 2).rows()}
    extended = {r.recipe: r for r in run_study(study(out, 3, extend=True), progress=False)}
    fresh = {r.recipe: r for r in run_study(study(tmp_path / "fresh", 3), progress=False)}
    for recipe in ("baseline", "truncate"):
        cell, direct = extended[recipe], fresh[recipe]
        assert cell.epochs == 3 and [p.epoch for p in cell.curve] == [0, 1, 2]
        assert cell.curve[:2] == before[recipe].curve  # the earlier records are kept as they were
        assert [(p.loss, p.lr) for p in cell.curve] == [(p.loss, p.lr) for p in direct.curve]
        assert cell.test_accuracy == direct.test_accuracy and direct.extensions == ()
        # rates by hand: LR, LR / 10, LR / 100 over epochs 0, 1, 2
        (record,) = cell.extensions
        assert (record.from_epochs, record.to_epochs, record.epochs_off_fresh) == (2, 3, 0)
        assert record.lr_last == pytest.approx(LR / 10) and record.lr_next == pytest.approx(LR / 100)
    recorded = json.loads((out / "study.json").read_text())
    assert recorded["setup"]["epochs"] == 3 and recorded["checkpoints"] is True
    (entry,) = recorded["extensions"]
    assert (entry["from_epochs"], entry["to_epochs"]) == (2, 3) and len(entry["cells"]) == 2
    assert all(c["continued"] and c["from_epochs"] == 2 for c in entry["cells"].values())
    summary = (out / "summary.md").read_text()
    assert "baseline (extended 2>3)" in summary and "so they are such runs" in summary
    assert "2>3" in (out / "results.csv").read_text()


def test_where_the_schedules_differ_the_longer_one_runs_from_the_epoch_reached(tmp_path):
    out = tmp_path / "s"
    three = Study(
        [TINY], VARIANTS[:1], [0], replace(SETUP, epochs=3, max_batches=1), out, keep_checkpoints=True
    )
    run_study(three, progress=False)
    six = Study([TINY], VARIANTS[:1], [0], replace(SETUP, epochs=6, max_batches=1), out, extend=True)
    (row,) = run_study(six, progress=False)
    # 3 epochs step every epoch, 6 every 2: LR, LR/10, LR/100, then a 6-epoch run's rates from epoch 3 on
    expected = [LR, LR / 10, LR / 100, LR / 10, LR / 100, LR / 100]
    assert [p.lr for p in row.curve] == pytest.approx(expected)
    # a fresh 6-epoch run: LR, LR, LR/10, LR/10, ...: epochs 1 and 2 of the first three ran at another rate
    assert row.extensions == (Extension(3, 6, pytest.approx(LR / 100), pytest.approx(LR / 10), 2),)
    summary = (out / "summary.md").read_text()
    assert "2 of their first 3 epochs ran at another rate than a fresh 6-epoch run's" in summary


def test_the_checkpoint_continues_the_run_it_was_written_by(tmp_path):
    """The same continuation written by hand: the 2-epoch model's weights and momentum loaded into a fresh
    optimizer, one more epoch at the rate a 3-epoch run gives epoch 2, against ``train``'s extension."""
    data = load_data("synthetic:64", (32, 32))
    config = TrainConfig(epochs=2, batch_size=16, lr=LR, max_batches=2)
    torch.manual_seed(0)
    train(tiny_cnn(), data, config, checkpoint=tmp_path / "c.pt", progress=False)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    torch.manual_seed(0)
    extended = train(tiny_cnn(), data, replace(config, epochs=3), checkpoint=tmp_path / "c.pt", resume=True,
                     extend=True, progress=False)  # fmt: skip
    model = tiny_cnn()
    model.load_state_dict(state["model"])
    optimizer = torch.optim.SGD(model.parameters(), lr=LR / 100, momentum=0.9)
    optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:
        group["lr"] = LR * 0.1 ** (2 // math.ceil(3 / 3))
    torch.set_rng_state(state["rng"])
    generator = torch.Generator().manual_seed(0 + 2)  # train reseeds the shuffle with seed + epoch
    batches = loader(data.train, batch_size=16, shuffle=True, generator=generator, drop_last=True)
    model.train()
    for (x, y), _ in zip(batches, range(2), strict=False):  # max_batches 2
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    for name, value in model.state_dict().items():
        assert torch.allclose(value.float(), extended.model.state_dict()[name].float(), atol=1e-6), name


def test_extend_needs_more_epochs_and_another_difference_is_still_refused(tmp_path, capsys):
    out = tmp_path / "s"
    quick = ["study", "--model", TINY, "--recipe", "baseline", "--data", "synthetic:64", "--batch-size", "16",
             "--max-batches", "1", "--seeds", "1", "--quiet", "--out", str(out)]  # fmt: skip
    code, _, err = run(capsys, *quick, "--epochs", "2", "--keep-checkpoints")
    assert code == 0, err
    code, _, err = run(capsys, *quick, "--epochs", "2", "--extend")
    assert code == 2 and "--extend needs --epochs above the 2 the study" in err
    code, _, err = run(capsys, *quick, "--epochs", "1", "--extend")
    assert code == 2 and "got --epochs 1" in err
    code, _, err = run(capsys, *quick, "--epochs", "3")  # without --extend, as before, with the way out
    assert code == 1 and "differs in epochs); add --extend" in err
    code, _, err = run(capsys, *quick, "--epochs", "3", "--extend", "--momentum", "0.5")
    assert code == 1 and "differs in momentum)" in err and "add --extend" not in err
    code, _, err = run(capsys, *quick[:-1], str(tmp_path / "new"), "--epochs", "3", "--extend")
    assert code == 2 and "holds no study to extend" in err
    assert json.loads((out / "study.json").read_text())["setup"]["epochs"] == 2  # nothing was changed


def test_cells_without_a_checkpoint_are_refused_with_how_to_get_one(tmp_path):
    out = tmp_path / "s"
    run_study(study(out, 1), progress=False)  # no --keep-checkpoints
    assert not (out / "checkpoints").exists()
    with pytest.raises(StudyError, match=r"2 of 2 cells .* no checkpoint .* epochs=2 keep_checkpoints=True"):
        run_study(study(out, 2, extend=True), progress=False)
    assert json.loads((out / "study.json").read_text())["setup"]["epochs"] == 1


def test_failed_diverged_and_new_cells_run_as_they_would(two_epochs, tmp_path):
    out = copied(two_epochs, tmp_path)
    grid = study(out, 2)
    baseline, truncate = grid.cells
    row = grid.read_cell(truncate)  # as if its loss had become NaN in its last epoch (training stops there)
    curve = (*row.curve[:-1], replace(row.curve[-1], loss=math.nan))
    write_json(grid.cell_path(truncate), row.replace(curve=curve, convergence="diverged").to_json())
    wider = Study([TINY], VARIANTS, [0, 1], replace(SETUP, epochs=3), out, extend=True)
    assert wider.to_continue(truncate) is None and wider.to_continue(baseline) is not None
    assert [c.id for c in wider.pending()] == [baseline.id, wider.cells[1].id, wider.cells[3].id]
    rows = {(r.recipe, r.seed): r for r in run_study(wider, progress=False)}
    assert rows[("truncate", 0)].epochs == 2 and rows[("truncate", 0)].extensions == ()  # kept as it was
    assert rows[("baseline", 1)].epochs == 3 and rows[("baseline", 1)].extensions == ()  # a new cell: fresh
    assert len(rows[("baseline", 1)].curve) == 3
    cells = json.loads((out / "study.json").read_text())["extensions"][-1]["cells"]
    assert cells[truncate.id].startswith("not continued: its training stopped at a non-finite loss")
    assert cells[wider.cells[1].id] == "trained fresh for 3 epochs"


def test_an_infinite_last_loss_is_a_stopped_cell_for_the_outcome_as_for_the_continuation(two_epochs):
    grid = study(two_epochs, 3, extend=True)
    row = grid.read_cell(grid.cells[0])
    blown = row.replace(curve=(*row.curve[:-1], replace(row.curve[-1], loss=math.inf)))
    assert stopped(blown) and not stopped(row)
    assert outcome(blown, 3) == "not continued: its training stopped at a non-finite loss (kept at 2 epochs)"
    assert outcome(row, 3) == "not continued (kept at 2 epochs)"


def test_a_failed_continuation_keeps_the_cells_result_and_checkpoint_and_may_be_tried_again(
    two_epochs, tmp_path
):
    out = copied(two_epochs, tmp_path)
    grid = study(out, 2)
    baseline, truncate = grid.cells
    before = grid.read_cell(baseline)
    good = grid.checkpoint_path(baseline).read_bytes()
    grid.checkpoint_path(baseline).write_bytes(b"not a checkpoint")
    rows = {r.recipe: r for r in run_study(study(out, 3, extend=True), progress=False)}
    kept = rows["baseline"]
    assert kept.ok and kept.epochs == 2 and kept.curve == before.curve and kept.extensions == ()
    assert kept.test_accuracy == before.test_accuracy and "not a readable checkpoint" in kept.not_extended
    assert grid.checkpoint_path(baseline).read_bytes() == b"not a checkpoint"  # left as it was found
    assert rows["truncate"].epochs == 3 and len(rows["truncate"].curve) == 3  # trained on, not a 2-epoch copy
    cells = json.loads((out / "study.json").read_text())["extensions"][-1]["cells"]
    assert cells[baseline.id].startswith("failed: ") and cells[baseline.id].endswith("; kept at 2 epochs")
    assert "not a readable checkpoint" in cells[baseline.id] and cells[truncate.id]["continued"]
    assert "| baseline (not extended: kept at 2 epochs) |" in (out / "summary.md").read_text()
    again = study(out, 3, extend=True)
    assert [c.id for c in again.pending()] == [baseline.id]  # a later --extend tries it again
    grid.checkpoint_path(baseline).write_bytes(good)
    (row,) = [r for r in run_study(again, progress=False) if r.recipe == "baseline"]
    assert row.epochs == 3 and row.not_extended is None and row.extensions[0].from_epochs == 2


class _DyingPool:
    """A process pool whose worker dies at once (as a killed one does): every cell's future holds
    ``BrokenProcessPool``."""

    _processes: ClassVar[dict] = {}  # none to end

    def submit(self, *args) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        future.set_exception(concurrent.futures.process.BrokenProcessPool("a child process terminated"))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def test_a_lost_worker_keeps_the_result_of_the_cell_it_was_continuing(two_epochs, tmp_path, monkeypatch):
    out = copied(two_epochs, tmp_path)
    grid = study(out, 2)
    before = {r.recipe: r for r in grid.rows()}
    saved = {cell.id: grid.checkpoint_path(cell).read_bytes() for cell in grid.cells}
    monkeypatch.setattr(executors, "_pool", lambda workers, threads: _DyingPool())
    wider = Study([TINY], VARIANTS, [0, 1], replace(SETUP, epochs=3), out, extend=True)
    rows = {(r.recipe, r.seed): r for r in run_study(wider, executor=Executor("processes", workers=2),
                                                    progress=False)}  # fmt: skip
    for recipe in ("baseline", "truncate"):
        kept = rows[(recipe, 0)]
        assert kept.ok and kept.epochs == 2 and kept.curve == before[recipe].curve
        assert kept.test_accuracy == before[recipe].test_accuracy and kept.not_extended == executors._LOST
    assert not rows[("baseline", 1)].ok  # a new cell's lost worker fails it, as before
    assert {c.id: grid.checkpoint_path(c).read_bytes() for c in grid.cells} == saved
    cells = json.loads((out / "study.json").read_text())["extensions"][-1]["cells"]
    assert cells[grid.cells[0].id] == f"failed: {executors._LOST}; kept at 2 epochs"
    assert [c.id for c in study(out, 3, extend=True).pending()] == [c.id for c in grid.cells]  # tried again


def test_a_lost_ray_worker_keeps_the_result_of_the_cell_it_was_continuing(two_epochs):
    class Ray:  # what _ray_result uses of ray: get, which raises as for a lost node
        class exceptions:
            class RayError(Exception):
                pass

        def get(self, ref):
            raise self.exceptions.RayError("the node died")

    grid = study(two_epochs, 3, extend=True)
    cell = grid.cells[0]
    earlier = grid.read_cell(cell)
    row = executors._ray_result(Ray(), None, cell, CellJob(grid.setup, LR), earlier)
    assert row == earlier.replace(
        not_extended="the Ray worker running this cell was lost (RayError: the node died)"
    )
    fresh = executors._ray_result(Ray(), None, cell, CellJob(grid.setup, LR), None)
    assert not fresh.ok and fresh.curve == () and "--retry-failed" in fresh.error


def three_then_six(out: Path) -> tuple[Study, Study]:
    """A 3-epoch study of one cell that kept its checkpoint, and its extension to 6 epochs (the setup of
    ``rewriter study`` with ``EXTEND``)."""
    setup = replace(SETUP, epochs=3, max_batches=1, latency_repeats=StudySetup.latency_repeats)
    three = Study([TINY], VARIANTS[:1], [0], setup, out, keep_checkpoints=True)
    run_study(three, progress=False)
    return three, Study([TINY], VARIANTS[:1], [0], replace(setup, epochs=6), out, extend=True)


EXTEND = ["study", "--model", TINY, "--recipe", "baseline", "--data", "synthetic:64", "--batch-size", "16",
          "--max-batches", "1", "--seeds", "1", "--lr", str(LR), "--precision", "fp32", "--quiet",
          "--extend"]  # fmt: skip


def interrupted_after(monkeypatch, epochs_done: int) -> None:
    """Kill the next training once it has written the checkpoint of ``epochs_done`` epochs (as Ctrl-C or a
    killed study would, after that epoch's checkpoint and before the cell's record)."""
    import rewriter.lab.training as training

    original = training.save_checkpoint

    def save_then_stop(path, model, optimizer, scheduler, epoch, *rest) -> None:
        original(path, model, optimizer, scheduler, epoch, *rest)
        if epoch + 1 == epochs_done:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", save_then_stop)


def test_an_extension_interrupted_past_its_first_epochs_resumes_as_if_never_stopped(tmp_path, monkeypatch):
    _, six = three_then_six(tmp_path / "whole")
    (whole,) = run_study(six, progress=False)  # the same extension, never interrupted: the oracle
    _, six = three_then_six(tmp_path / "s")
    with monkeypatch.context() as patch:
        interrupted_after(patch, 5)
        with pytest.raises(KeyboardInterrupt):
            run_study(six, progress=False)
    assert six.read_cell(six.cells[0]).epochs == 3  # the record as it was; the checkpoint went on to epoch 5
    assert torch.load(six.checkpoint_path(six.cells[0]), weights_only=True)["epoch"] == 4
    (row,) = run_study(six, progress=False)
    assert [(p.loss, p.lr) for p in row.curve] == [(p.loss, p.lr) for p in whole.curve]
    assert [p.lr for p in row.curve] == pytest.approx([LR, LR / 10, LR / 100, LR / 10, LR / 100, LR / 100])
    assert (
        row.extensions
        == whole.extensions
        == (Extension(3, 6, pytest.approx(LR / 100), pytest.approx(LR / 10), 2),)
    )


def test_another_count_is_refused_until_an_interrupted_extension_is_finished(tmp_path, monkeypatch, capsys):
    out = tmp_path / "s"
    _, six = three_then_six(out)
    with monkeypatch.context() as patch:
        interrupted_after(patch, 5)
        with pytest.raises(KeyboardInterrupt):
            run_study(six, progress=False)
    twelve = Study(six.models, six.variants, [0], replace(six.setup, epochs=12), out, extend=True)
    refused = r"an extension to 6 epochs \(such as .*: 5 epochs in its checkpoint, 3 in its record\)"
    with pytest.raises(UsageError, match=refused + ".* first with epochs=6 extend=True, then extend to 12"):
        run_study(twelve, progress=False)
    code, _, err = run(capsys, *EXTEND, "--out", str(out), "--epochs", "12")
    assert code == 2 and "first with --epochs 6 --extend, then extend to 12" in err, err
    assert json.loads((out / "study.json").read_text())["setup"]["epochs"] == 6  # nothing was changed
    run_study(six, progress=False)  # finished with the same count, the longer one is taken
    (row,) = run_study(twelve, progress=False)
    assert row.epochs == 12 and [(e.from_epochs, e.to_epochs) for e in row.extensions] == [(3, 6), (6, 12)]


def test_an_interrupted_extension_resumes_with_or_without_extend(two_epochs, tmp_path):
    out = copied(two_epochs, tmp_path)
    study(out, 3, extend=True).prepare()  # recorded, then stopped before any cell ran
    assert len(study(out, 3).pending()) == 2  # a plain run at the recorded epochs goes on
    assert len(study(out, 3, extend=True).pending()) == 2  # and so does the same --extend again
    with pytest.raises(UsageError, match="above the 3"):
        study(out, 2, extend=True).recorded()


def test_a_variant_trained_otherwise_than_its_baseline_says_so():
    grown = (Extension(2, 4, 0.001, 0.01, 1),)
    rows = [
        CellRow(model="m", recipe="baseline", seed=0, status="ok", test_accuracy=0.9, flops=100, params=10,
                is_baseline=True, convergence="converged", chance=0.1, extensions=grown),
        CellRow(model="m", recipe="truncate", seed=0, status="ok", test_accuracy=0.8, flops=50, params=10,
                convergence="converged", chance=0.1),
    ]  # fmt: skip
    text = summary_markdown(summarize(rows), replace(SETUP, epochs=4))
    assert "trained otherwise than its baseline (fresh epochs against 2>4)" in text
    assert "| m | baseline (extended 2>4) |" in text
    assert "the rate went from 0.001 (epoch 2) to 0.01 (epoch 3" in text


def test_a_row_with_extensions_round_trips_and_a_bad_one_is_named(tmp_path):
    row = CellRow(model="m", recipe="r", seed=0, status="ok", extensions=(Extension(2, 4, 0.001, 0.01, 1),))
    assert CellRow.from_json(json.loads(json.dumps(row.to_json()))) == row
    broken = {**row.to_json(), "extensions": [{"from_epochs": 2}]}
    with pytest.raises(StudyError, match="an entry of 'extensions' must have the fields from_epochs"):
        CellRow.from_json(broken, where="x.json")


def test_a_checkpoint_is_not_continued_into_a_shorter_run(tmp_path):
    data = load_data("synthetic:64", (32, 32))
    config = TrainConfig(epochs=2, batch_size=16, lr=LR, max_batches=1)
    train(tiny_cnn(), data, config, checkpoint=tmp_path / "c.pt", progress=False)
    with pytest.raises(TrainError, match=r"differing in epochs \(2 in the checkpoint, 1 now\)"):
        train(tiny_cnn(), data, replace(config, epochs=1), checkpoint=tmp_path / "c.pt", resume=True, extend=True,
              progress=False)  # fmt: skip


def test_the_curves_plot_marks_where_a_cell_was_continued(monkeypatch):
    from rewriter.render import curves

    figures = []
    monkeypatch.setattr(curves, "_save", lambda fig, path: figures.append(fig))
    curve = tuple(EpochPoint(e, 1.0, 0.5, 1.0, 0.5, 0.1) for e in range(4))
    grown = (Extension(2, 4, 0.001, 0.01, 1),)
    rows = [CellRow(model="m", recipe=r, seed=0, status="ok", test_accuracy=0.5, chance=0.1, curve=curve,
                    extensions=grown if r == "grown" else ()) for r in ("fresh", "grown")]  # fmt: skip
    curves.plot_curves(rows, "unused.png")
    panels = {ax.get_title().split("\n")[0]: ax for ax in figures[0].axes if ax.get_title()}
    dashed = {title: [list(line.get_xdata()) for line in ax.get_lines() if line.get_linestyle() == "--"]
              for title, ax in panels.items()}  # fmt: skip
    assert dashed == {"m / fresh": [], "m / grown": [[2.5, 2.5]]}  # between epochs 2 and 3, as drawn from 1
    assert "continued from its checkpoint (--extend)" in [t.get_text() for t in figures[0].legends[0].texts]
