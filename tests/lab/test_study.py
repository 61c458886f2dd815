"""Studies: the grid, resuming, failed cells, no-op recipes, the summary's arithmetic and the Pareto front."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rewriter import RecipeError
from rewriter._files import write_json
from rewriter.cli import main
from rewriter.lab.study import (
    Cell,
    CellRow,
    Study,
    StudyError,
    StudySetup,
    build_variant,
    fill_latency,
    parse_variant,
    run_study,
    summarize,
    summary_markdown,
    write_results,
)
from rewriter.render import plot_curves, plot_pareto

SETUP = StudySetup(data="synthetic:64", input_size=(32, 32), epochs=1, lr=0.01, batch_size=32, max_batches=1,
                   latency_repeats=2)  # fmt: skip
TINY = "tests.nets:tiny_cnn"


def test_recipes_are_baseline_a_strategy_or_a_file(tmp_path):
    assert parse_variant("baseline").recipe.steps == ()
    assert [s.strategy for s in parse_variant("truncate").recipe.steps] == ["truncate"]
    path = tmp_path / "trim.yaml"
    path.write_text("steps:\n  - truncate: {rule: output}\n")
    variant = parse_variant(str(path))
    assert variant.label == "trim" and variant.recipe.steps[0].params == {"rule": "output"}
    empty = tmp_path / "base.yaml"
    empty.write_text("steps: []\n")
    assert parse_variant(str(empty)).recipe.steps == ()
    with pytest.raises(RecipeError, match="neither 'baseline', a strategy"):
        parse_variant("trunc")


def test_two_recipes_with_one_label_are_refused(tmp_path):
    with pytest.raises(StudyError, match="share a label"):
        Study(["cifar_vgg11"], [parse_variant("truncate"), parse_variant("truncate")], [0], SETUP, tmp_path)


def row(model, recipe, seed, accuracy, flops, params=1000, status="ok", **extra) -> CellRow:
    return CellRow(model=model, recipe=recipe, seed=seed, status=status, test_accuracy=accuracy, flops=flops,
                   params=params, latency_ms_b1=extra.get("b1", 1.0), latency_ms_b32=10.0, train_s=5.0,
                   error=extra.get("error"), is_baseline=extra.get("is_baseline", recipe == "baseline"),
                   convergence=extra.get("convergence", "converged" if status == "ok" else None),
                   chance=0.1)  # fmt: skip


def test_the_summary_averages_seeds_and_finds_the_pareto_front():
    rows = [
        row("a", "baseline", 0, 0.80, 100), row("a", "baseline", 1, 0.90, 100),
        row("a", "cut", 0, 0.84, 50, params=400), row("a", "cut", 1, 0.86, 50, params=400),
        row("a", "wide", 0, 0.95, 300), row("a", "wide", 1, 0.93, 300),
        row("a", "worse", 0, 0.70, 200), row("a", "worse", 1, None, None, status="failed", error="boom"),
    ]  # fmt: skip
    groups = {g.recipe: g for g in summarize(rows)}
    base, cut = groups["baseline"], groups["cut"]
    assert base.accuracy == pytest.approx(0.85) and base.accuracy_std == pytest.approx(0.0707107, rel=1e-5)
    assert cut.delta_accuracy == pytest.approx(0.0) and cut.delta_flops_percent == pytest.approx(-50.0)
    assert cut.delta_params_percent == pytest.approx(-60.0)
    # front: cut (cheapest, 85 %) and wide (most accurate); baseline ties cut's accuracy at twice the FLOPs
    assert {name for name, g in groups.items() if g.pareto} == {"cut", "wide"}
    assert groups["worse"].n == 1 and groups["worse"].failed == 1 and groups["worse"].errors == ("boom",)


def test_a_recipe_without_steps_under_any_label_is_the_baseline():
    rows = [row("a", "base", 0, 0.80, 100, is_baseline=True), row("a", "cut", 0, 0.90, 50)]
    groups = {g.recipe: g for g in summarize(rows)}
    assert groups["cut"].delta_accuracy == pytest.approx(0.10)
    assert groups["cut"].delta_flops_percent == pytest.approx(-50.0)
    assert "(no change)" not in summary_markdown(list(groups.values()), SETUP)


def test_deltas_pair_the_seeds_both_finished_and_costs_average_over_seeds():
    # the baseline's seed 1 failed: the variant's seed 1 (0.5) has nothing to be compared with
    rows = [row("a", "baseline", 0, 0.90, 100), row("a", "baseline", 1, None, None, status="failed", error="x"),
            row("a", "routed", 0, 0.90, 40), row("a", "routed", 1, 0.50, 90)]  # fmt: skip
    routed = {g.recipe: g for g in summarize(rows)}["routed"]
    assert routed.delta_accuracy == pytest.approx(0.0)
    assert routed.flops == pytest.approx(65.0)  # an input-adaptive model's FLOPs differ per seed


def test_a_summary_with_untimed_cells_still_renders():
    rows = [row("a", "baseline", 0, 0.9, 100), row("a", "cut", 0, 0.9, 50, b1=None)]
    rows[1] = rows[1].replace(latency_ms_b32=None)
    text = summary_markdown(summarize(rows), SETUP)
    assert "| a | cut | 1 | 1/1 |" in text and "| - | - | - |" in text


def test_a_verdict_from_one_seed_says_so():
    rows = [row("a", "baseline", 0, 0.80, 100), row("a", "cut", 0, 0.90, 50)]
    text = summary_markdown(summarize(rows), SETUP)
    assert "more accurate by one seed, with no spread to judge the difference by (+10.00 pp)" in text


def test_no_verdict_is_given_against_a_baseline_that_did_not_converge():
    rows = [row("a", "baseline", 0, 0.12, 100, convergence="not converged"),
            row("a", "baseline", 1, 0.80, 100, convergence="still improving"),
            row("a", "cut", 0, 0.90, 50), row("a", "cut", 1, 0.91, 50),
            row("b", "baseline", 0, 0.80, 100), row("b", "cut", 0, 0.30, 50, convergence="diverged")]  # fmt: skip
    text = summary_markdown(summarize(rows), SETUP)
    verdicts = text.split("Against the baseline:")[1]
    assert "- a: no verdict: its baseline is not converged in 2 of 2 seeds" in verdicts
    assert "train for more epochs (--epochs)" in verdicts and "a cut:" not in verdicts
    # b's baseline converged: its variant is judged, and its own divergence is stated
    assert (
        "- b cut: cheaper" in verdicts
        and "the variant itself did not converge in 1 of 1 seeds (1 diverged)" in verdicts
    )
    assert "| a | baseline | 2 | 0/2 (1 still improving, 1 not converged) |" in text
    assert "chance level 10.0 %" in text and "at or below 19.0 %" in text


def test_a_row_round_trips_through_json_and_names_a_bad_field(tmp_path):
    original = row("a", "cut", 3, 0.5, 10, error=None)
    assert CellRow.from_json(json.loads(json.dumps(original.to_json()))) == original
    broken = {**original.to_json(), "seed": "three"}
    with pytest.raises(StudyError, match=r"x\.json: field 'seed' must be int, got \"three\""):
        CellRow.from_json(broken, where="x.json")
    with pytest.raises(StudyError, match="not a cell record \\(no model, recipe, seed, status\\)"):
        CellRow.from_json({}, where="x.json")


def test_two_model_files_whose_names_read_alike_are_two_cells(tmp_path):
    (tmp_path / "sub").mkdir()
    first, second = tmp_path / "sub" / "m.pt", tmp_path / "sub-m.pt"
    first.write_bytes(b"one model")
    second.write_bytes(b"another model")
    out = tmp_path / "s"
    done = Study([str(first)], [parse_variant("baseline")], [0], SETUP, out)
    done.prepare()
    cell = done.cells[0]
    (out / "cells" / f"{cell.id}.json").write_text(
        json.dumps(row(str(first), "baseline", 0, 0.5, 1).to_json())
    )
    assert done.pending() == []
    other = Study([str(second)], [parse_variant("baseline")], [0], SETUP, out)
    assert other.cells[0].id != cell.id and other.pending() == other.cells  # not reported done


def test_each_model_has_its_own_front_beside_the_studys():
    # b's truncation beats b's baseline, but a's variants are cheaper and more accurate than anything of b's
    rows = [row("a", "baseline", 0, 0.90, 100), row("a", "truncate", 0, 0.95, 50),
            row("b", "baseline", 0, 0.60, 400), row("b", "truncate", 0, 0.80, 200)]  # fmt: skip
    groups = {(g.model, g.recipe): g for g in summarize(rows)}
    assert {k for k, g in groups.items() if g.pareto} == {("a", "truncate"), ("b", "truncate")}
    assert {k for k, g in groups.items() if g.pareto_all} == {("a", "truncate")}


def refused_recipe(folder: Path) -> Path:
    """A valid recipe file that the strategy refuses when it plans: its cells fail."""
    path = folder / "stem0.yaml"
    path.write_text("steps:\n  - remove-stem-downsampling: {mode: cifar-stem, count: 1}\n")
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    bad = refused_recipe(tmp_path_factory.mktemp("recipes"))
    study = Study(["cifar_vgg11"], [parse_variant("baseline"), parse_variant("truncate"),
                                    parse_variant(str(bad))], [0], SETUP, out)  # fmt: skip
    rows = run_study(study, progress=False, plot=plot_pareto, curves=plot_curves)
    return study, rows


def test_a_study_writes_every_output(finished):
    study, rows = finished
    assert {p.name for p in study.out.iterdir()} >= {"cells", "study.json", "results.csv", "results.json",
                                                    "summary.md", "pareto.png", "curves.png"}  # fmt: skip
    # the file-named recipe is spelled out beside its label
    assert (
        "- `stem0`: remove-stem-downsampling(mode=cifar-stem, count=1)"
        in (study.out / "summary.md").read_text()
    )
    with open(study.out / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["recipe"], r["status"]) for r in table] == [
        ("baseline", "ok"), ("truncate", "ok"), ("stem0", "failed")
    ]  # fmt: skip
    ok = {r.recipe: r for r in rows if r.ok}
    assert ok["truncate"].flops < ok["baseline"].flops
    # timed (never compared: wall time on a shared machine is noise; see benchmarks/ for timings)
    assert ok["baseline"].latency_ms_b1 > 0 and ok["baseline"].latency_ms_b32 > 0
    assert json.loads((study.out / "study.json").read_text())["setup"]["data"] == "synthetic:64"


def test_every_cell_records_its_curve_and_a_mark(finished):
    study, rows = finished
    baseline = next(r for r in rows if r.recipe == "baseline")
    assert len(baseline.curve) == 1 and baseline.curve[0].test_accuracy == baseline.test_accuracy
    assert baseline.curve[0].test_loss > 0 and baseline.convergence in ("not converged", "still improving")
    labels = [int(y) for y in build_variant(study.cells[0], SETUP)[1].test.labels]
    assert baseline.chance == pytest.approx(max(labels.count(c) for c in set(labels)) / len(labels))


def test_a_failed_cell_is_recorded_with_its_reason(finished):
    study, rows = finished
    failed = next(r for r in rows if not r.ok)
    assert "count applies to mode 'strides'" in failed.error
    summary = (study.out / "summary.md").read_text()
    assert "Failed cells:" in summary and "cifar_vgg11 / stem0: " in summary


def test_a_finished_study_resumes_without_running_a_cell(finished, monkeypatch):
    study, _ = finished

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr("rewriter.lab.study.cells.run_cell", fail)
    again = Study(study.models, study.variants, study.seeds, SETUP, study.out)
    assert len(run_study(again, progress=False)) == 3


def test_retry_failed_runs_only_the_failed_cells(finished):
    study, _ = finished
    again = Study(study.models, study.variants, study.seeds, SETUP, study.out, retry_failed=True)
    assert [cell.variant.label for cell in again.pending()] == ["stem0"]


def test_latency_is_timed_where_it_is_missing_and_again_for_every_finished_cell(
    finished, monkeypatch, tmp_path
):
    shutil.copytree(finished[0].out, tmp_path / "copy")
    study = Study(finished[0].models, finished[0].variants, [0], SETUP, tmp_path / "copy")
    measured = {r.recipe: r.latency_ms_b1 for r in study.rows()}
    truncate = next(cell for cell in study.cells if cell.variant.label == "truncate")
    row = study.read_cell(truncate)
    write_json(study.cell_path(truncate), row.replace(latency_ms_b1=None, latency_ms_b32=None).to_json())
    calls = []

    def fake(model, setup):
        calls.append(model)
        return {"latency_ms_b1": -1.0, "latency_ms_b32": -2.0}

    monkeypatch.setattr("rewriter.lab.study.cells.latencies", fake)

    def latencies() -> dict[str, tuple]:
        return {r.recipe: (r.latency_ms_b1, r.latency_ms_b32) for r in study.rows()}

    fill_latency(study)  # only the cell without a latency is timed
    assert len(calls) == 1 and latencies()["truncate"] == (-1.0, -2.0)
    assert latencies()["baseline"][0] == measured["baseline"] > 0
    fill_latency(study, again=True)  # every finished cell; the failed one has no model
    assert len(calls) == 3
    expected = {"baseline": (-1.0, -2.0), "truncate": (-1.0, -2.0), "stem0": (None, None)}
    assert latencies() == expected
    write_results(study, study.rows())
    saved = json.loads((study.out / "results.json").read_text())["rows"]
    assert {r["recipe"]: (r["latency_ms_b1"], r["latency_ms_b32"]) for r in saved} == expected


def test_another_recipe_under_a_recorded_label_is_refused(finished, tmp_path):
    study, _ = finished
    other = tmp_path / "stem0.yaml"  # the fixture's label, other steps
    other.write_text("steps:\n  - remove-stem-downsampling: {count: 2}\n")
    variants = [parse_variant("baseline"), parse_variant(str(other))]
    with pytest.raises(StudyError, match="another recipe labelled 'stem0'"):
        Study(study.models, variants, study.seeds, SETUP, study.out).recorded()


def test_another_setup_in_the_same_folder_is_refused(finished):
    study, _ = finished
    other = StudySetup(**{**SETUP.__dict__, "epochs": 2})
    with pytest.raises(StudyError, match="differs in epochs"):
        run_study(Study(study.models, study.variants, study.seeds, other, study.out), progress=False)


def test_seeds_give_different_initial_weights():
    cells = [Cell("cifar_vgg11", parse_variant("truncate"), seed) for seed in (0, 1, 0)]
    weights = [next(build_variant(cell, SETUP)[0].parameters()) for cell in cells]
    assert not torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])


def test_a_recipe_that_changes_nothing_reuses_the_baseline(tmp_path, monkeypatch):
    # resnet18 at 32 px: the organizer stops at once (no move gains IF), so the model is the baseline's;
    # the no-op recipe is listed first, the baseline still runs first
    study = Study(
        ["resnet18"], [parse_variant("reorganize-stages"), parse_variant("baseline")], [0], SETUP, tmp_path
    )
    rows = {r.recipe: r for r in run_study(study, progress=False)}
    assert rows["reorganize-stages"].same_as_baseline is True
    assert rows["reorganize-stages"].test_accuracy == rows["baseline"].test_accuracy
    assert rows["reorganize-stages"].curve == rows["baseline"].curve
    assert "changes nothing for this model" in (tmp_path / "summary.md").read_text()
    # timed again: the baseline once, and the no-op recipe takes its figures
    timings = iter([{"latency_ms_b1": 7.0, "latency_ms_b32": 70.0}])
    monkeypatch.setattr("rewriter.lab.study.cells.latencies", lambda model, setup: next(timings))
    fill_latency(study, again=True)
    assert {r.recipe: r.latency_ms_b32 for r in study.rows()} == {"reorganize-stages": 70.0, "baseline": 70.0}


def test_the_command_exits_3_when_cells_failed(tmp_path, capsys):
    bad = refused_recipe(tmp_path)
    code = main(["study", "--model", TINY, "--recipe", str(bad), "--data", "synthetic:64",
                 "--epochs", "1", "--seeds", "1", "--max-batches", "1", "--out", str(tmp_path / "s")])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 3
    assert "1 of 1 cells failed" in err and "# Study summary" in out


def test_a_worker_that_dies_fails_its_cell_and_the_study_goes_on(tmp_path):
    study = Study(["tests.nets:dies", TINY], [parse_variant("baseline")], [0], SETUP, tmp_path)
    rows = {r.model: r for r in run_study(study, workers=2, progress=False)}
    assert rows["tests.nets:dies"].status == "failed"
    assert "a worker process died" in rows["tests.nets:dies"].error
    survivor = rows[TINY]  # it either finished before the pool broke, or it shared the broken pool
    assert (survivor.ok and survivor.test_accuracy is not None) or "a worker process died" in survivor.error
    again = Study(study.models, study.variants, [0], SETUP, tmp_path, retry_failed=True)
    assert "tests.nets:dies" in [cell.model for cell in again.pending()]


def same_cells(a: list[CellRow], b: list[CellRow]) -> None:
    """Two runs of one grid computed the same cells: every figure but the wall times, bit for bit."""
    keep = (
        "model",
        "recipe",
        "seed",
        "status",
        "test_accuracy",
        "params",
        "flops",
        "curve",
        "convergence",
        "chance",
    )
    assert [[getattr(r, k) for k in keep] for r in a] == [[getattr(r, k) for k in keep] for r in b]
    assert all(r.ok for r in a) and len(a) == 4


def serial_rows(tmp_path: Path, setup: StudySetup, threads: int) -> list[CellRow]:
    """The grid of the parallel tests, run here with as many threads as each of their workers has."""
    study = Study([TINY], [parse_variant("baseline"), parse_variant("truncate")], [0, 1], setup, tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run_study(study, progress=False)
    finally:
        torch.set_num_threads(before)


PARALLEL = StudySetup(**{**SETUP.__dict__, "epochs": 2, "max_batches": 2, "batch_size": 16})


def test_parallel_workers_give_the_same_cells_as_a_serial_run(tmp_path):
    study = Study(
        [TINY], [parse_variant("baseline"), parse_variant("truncate")], [0, 1], PARALLEL, tmp_path / "p"
    )
    rows = run_study(study, workers=2, progress=False)
    same_cells(rows, serial_rows(tmp_path / "s", PARALLEL, max(1, (os.cpu_count() or 1) // 2)))
    assert rows[0].curve != rows[1].curve  # the seeds differ: the comparison is not of one run with itself
    assert all(r.latency_ms_b1 is not None for r in rows)  # timed afterwards, one at a time


def test_the_same_study_runs_under_torchrun(tmp_path):
    # two processes train every cell together (DDP); rank 0 alone writes the cells and prints the summary
    out = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "rewriter", "study", "--model", TINY, "--recipe", "baseline", "--recipe", "truncate",
        "--data", "synthetic:64", "--epochs", "1", "--seeds", "1", "--max-batches", "1", "--batch-size", "16",
        "--lr", "0.01", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("# Study summary") == 1
    with open(out / "results.csv") as handle:
        assert [(r["recipe"], r["status"]) for r in csv.DictReader(handle)] == [
            ("baseline", "ok"),
            ("truncate", "ok"),
        ]
