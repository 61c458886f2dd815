"""``rewriter analyze``: the layer's own test and the tail, named for what they are, in the table, the JSON
and the plot; the FLOP backend in the JSON (issue 11)."""

from __future__ import annotations

import json
import re

from rewriter.cli import main
from rewriter.render import plots


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def _rows(out: str) -> dict[str, list[str]]:
    """The table's rows by layer name, split into cells (two spaces or more apart: "589.82 k" is one)."""
    return {
        cells[1]: cells
        for line in out.splitlines()
        if len(cells := re.split(r"\s{2,}", line.strip())) > 12 and cells[0].isdigit()
    }


def test_the_table_shows_the_own_test_and_the_tail(capsys):
    # resnet18 at 32 px (input rule): layer3.1.conv2 and layer4.0.conv2 see r_min 43 > 32 but later layers
    # still integrate through the skips; layer4.1.conv2 (75) is the tail.
    code, out = run(capsys, "analyze", "resnet18", "--input-size", "32", "--no-flops")
    assert code == 0
    header = next(line for line in out.splitlines() if line.lstrip().startswith("#"))
    assert "r_in min > 32" in header and "in tail" in header
    rows = _rows(out)
    assert rows["layer3.1.conv2"][14:16] == ["yes", "no"]
    assert rows["layer4.1.conv2"][14:16] == ["yes", "YES"]
    assert rows["layer4.1.conv1"][14:16] == ["no", "no"]
    assert "still productive" in out and "layer3.1.conv2, layer4.0.conv2" in out
    assert "unproductive layers (the tail): 1 of 18" in out


def test_the_json_gives_both_verdicts_and_the_backend(capsys):
    code, out = run(capsys, "analyze", "resnet18", "--input-size", "32", "--num-classes", "10", "--json")
    assert code == 0
    data = json.loads(out)
    layers = {layer["name"]: layer for layer in data["layers"]}
    dip, tail = layers["layer3.1.conv2"], layers["layer4.1.conv2"]
    assert (dip["exceeds"], dip["in_tail"], dip["productive"], dip["role"]) == (True, False, True, "feature")
    assert (tail["exceeds"], tail["in_tail"], tail["productive"]) == (True, True, False)
    assert layers["fc"]["exceeds"] is None and layers["fc"]["in_tail"] is None
    assert data["flops_backend"] == "meta" and data["flops"] == 37118464  # fvcore's figure (design.md)
    code, out = run(
        capsys, "analyze", "resnet18", "--input-size", "32", "--num-classes", "10", "--json", "--flops-backend",
        "fvcore",
    )  # fmt: skip
    fvcore = json.loads(out)
    assert (fvcore["flops_backend"], fvcore["flops"]) == ("fvcore", 37118464)


def test_attention_layers_are_marked_in_the_table_and_the_json(capsys):
    code, out = run(capsys, "analyze", "mobilenet_v3_small", "--input-size", "32", "--no-flops")
    assert code == 0
    assert "features.1.block.1.fc1" in out and "attention (gate branch)" in out
    assert "layers in gate branches" in out
    data = json.loads(
        run(capsys, "analyze", "mobilenet_v3_small", "--input-size", "32", "--no-flops", "--json")[1]
    )
    fc1 = next(layer for layer in data["layers"] if layer["name"] == "features.1.block.1.fc1")
    assert (fc1["role"], fc1["productive"], fc1["exceeds"]) == ("attention", None, None)


def test_the_plot_has_a_legend_for_each_verdict(capsys, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    code, _ = run(
        capsys, "analyze", "resnet18", "--input-size", "32", "--no-flops", "--plot", str(tmp_path / "a.png")
    )
    assert code == 0
    labels = [text.get_text() for text in figures[0].axes[0].get_legend().get_texts()]
    for _color, label in plots._VERDICTS.values():
        assert label in labels
    points = figures[0].axes[0].collections  # one scatter per layer, then the legend's empty ones
    colors = {tuple(round(c, 3) for c in p.get_facecolor()[0]) for p in points if len(p.get_offsets())}
    assert len(colors) == 4  # within, exceeding before b_min, in the tail, not tested: all drawn
