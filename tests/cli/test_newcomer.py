"""The first hour of a newcomer (issue 15.7): each fault found when the README was tried as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import rewriter
from rewriter.engine.recipe import Recipe

from ..cli_runner import run

ROOT = Path(__file__).resolve().parents[2]


def test_a_recipes_num_classes_sizes_the_baseline_the_weights_belong_to(capsys, tmp_path):
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    torch.save(model.state_dict(), tmp_path / "base.pth")
    recipe = tmp_path / "trim.yaml"
    recipe.write_text("num_classes: 10\nsteps:\n  - truncate: {}\n")
    code, out, err = run(capsys, "rewrite", "resnet18", "--weights", str(tmp_path / "base.pth"), "--input-size",
                         "32", "--recipe", str(recipe), "--dry-run")  # fmt: skip
    assert code == 0, err
    # the truncation's fixed point cuts after layer3.0 at 32 px (layer3.1.conv2 sees r_in_min 43): 256 channels
    assert "Linear(256, 10)" in out


def test_analyze_takes_the_input_size_a_model_file_records(capsys, tmp_path):
    model, spec = rewriter.load_model("cifar_vgg11")
    rewriter.save(model, tmp_path / "v.pt", spec=spec, recipe=Recipe.empty((48, 40)), input_size=(48, 40))
    code, out, err = run(capsys, "analyze", str(tmp_path / "v.pt"), "--no-flops")
    assert code == 0, err
    assert "model " in out and "at 48x40" in out


def test_a_missing_model_file_is_said_not_to_exist(capsys):
    code, _, err = run(capsys, "relevance", "cnn1.pt", "--data", "digits")
    assert code == 1 and err.startswith("error: cnn1.pt does not exist (no such file)")


def test_the_readme_shows_how_cnn1_is_made_and_names_recipes_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"rewriter train relevance_cnn .*-o cnn1\.pt", readme)
    named = set(re.findall(r"examples/recipes/[\w.-]+\.yaml", readme))
    assert named and all((ROOT / path).is_file() for path in named)
    assert "trim.yaml" not in readme


def test_the_analysis_table_names_its_last_column(capsys):
    _, out, _ = run(capsys, "analyze", "cifar_vgg11", "--input-size", "32", "--no-flops")
    header = out.splitlines()[0].split()
    assert header[-3:] == ["in", "tail", "border"]


def test_a_note_of_a_rewrite_is_printed_once_and_a_dry_run_verifies_nothing_aloud(capsys):
    code, out, err = run(capsys, "rewrite", "cifar_vgg16", "--input-size", "32", "--strategy", "truncate",
                         "--no-latency")  # fmt: skip
    assert code == 0 and out.count("note: b_min 'features.23' lies in block") == 1
    code, out, err = run(capsys, "rewrite", "cifar_vgg16", "--input-size", "32", "--strategy", "truncate",
                         "--dry-run")  # fmt: skip
    assert code == 0 and "verifying" not in err and "planning" in err


def test_models_shows_whole_descriptions(capsys):
    _, out, _ = run(capsys, "models", "relevance*")
    assert "(the input size is fixed by that layer)." in out


def test_dataloader_workers_and_parallel_cells_have_two_names_and_defaults_are_shown(capsys):
    for command in ("train", "saturation", "probe", "relevance"):
        _, help_text, _ = run(capsys, command, "--help")
        assert "--loader-workers" in help_text and "--workers" not in help_text.replace(
            "--loader-workers", ""
        )
    _, train_help, _ = run(capsys, "train", "--help")
    flat = " ".join(train_help.split())
    for flag, default in (("--optimizer", "sgd"), ("--gamma", "0.1"), ("--seed", "0")):
        assert re.search(rf"{flag} .*?\(?default {re.escape(default)}\)?", flat), flag
    _, study_help, _ = run(capsys, "study", "--help")
    flat = " ".join(study_help.split())
    for flag, default in (("--batch-size", "64"), ("--momentum", "0.9"), ("--weight-decay", "0.0")):
        assert re.search(rf"{flag} .*?default {re.escape(default)}", flat), flag


def test_compare_takes_weights_and_checks_them(capsys, tmp_path):
    model, _ = rewriter.load_model("cifar_vgg11")
    torch.save(model.state_dict(), tmp_path / "w.pth")
    code, _, err = run(capsys, "compare", "cifar_vgg11", "cifar_vgg13", "--input-size", "32", "--weights",
                       str(tmp_path / "w.pth"), "--no-latency")  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "compare", "cifar_vgg13", "cifar_vgg11", "--input-size", "32", "--weights",
                       str(tmp_path / "w.pth"), "--no-latency")  # fmt: skip
    assert code == 4 and "does not match the model" in err


@pytest.fixture
def captured(monkeypatch):
    """The figures the plot functions would save, instead of PNGs."""
    from rewriter.render import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    return figures


def _legend(fig) -> list[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def test_the_receptive_field_plot_explains_every_mark(captured, analysis_of):
    from rewriter.render.plots import plot_receptive_fields

    plot_receptive_fields(analysis_of("resnet18", (64, 48)), "unused.png")
    labels = _legend(captured[-1])
    assert "input height 64" in labels and "input width 48" in labels  # one entry per dashed line
    assert "unbounded (after a global op), drawn at the top" in labels
    plot_receptive_fields(analysis_of("cifar_vgg11", 32), "unused.png")
    assert "input 32x32" in _legend(captured[-1])


def test_b_min_stays_visible_where_it_coincides_with_b_max(captured):
    from types import SimpleNamespace

    from rewriter.render.plots import _border_positions, _draw_borders, _pyplot

    analysis = SimpleNamespace(border_layer_min="b", border_layer_max="b", layers=[SimpleNamespace(name="a"),
                               SimpleNamespace(name="b")])  # fmt: skip
    fig, ax = _pyplot().subplots()
    captured.append(fig)
    _draw_borders(ax, _border_positions(["a", "b"], analysis))
    lines = {line.get_label(): line for line in ax.get_lines()}
    low, high = lines["$b_{min}$"], lines["$b_{max}$"]
    assert low.get_xdata()[0] == high.get_xdata()[0] == 2
    assert low.get_zorder() > high.get_zorder() and low.get_linewidth() < high.get_linewidth()


def test_the_pareto_plot_labels_only_major_ticks_with_si_prefixes(captured):
    from matplotlib import ticker

    from rewriter.render.plots import plot_pareto

    groups = [
        {"model": "m", "recipe": r, "n": 2, "same_as_baseline": False, "flops": f, "accuracy": a,
         "accuracy_std": 0.01, "pareto": True}
        for r, f, a in (("baseline", 37e6, 0.9), ("truncate", 32e6, 0.89), ("stem", 48e6, 0.92))
    ]  # fmt: skip
    plot_pareto(groups, "unused.png")
    axis = captured[-1].axes[0].xaxis
    assert isinstance(axis.get_minor_formatter(), ticker.NullFormatter)
    assert isinstance(axis.get_major_formatter(), ticker.EngFormatter)
