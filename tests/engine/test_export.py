"""Exports for deployment (issue 15.4, 15.5): a dynamic batch dimension, checked in the runtime that will
run them against PyTorch, names that fit the format, and a routed model refused with the reason."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch

import rewriter
from rewriter import ModelFileError
from rewriter.engine import ExportReport, export

from ..cli_runner import run

onnxruntime = pytest.importorskip("onnxruntime")
TINY = {"width": 4, "input_size": 8}


@pytest.fixture(scope="module")
def tiny():
    model, _ = rewriter.load_model("relevance_cnn", model_args=TINY)
    return model.eval()


def test_a_pt2_archive_has_a_dynamic_batch_and_is_written_without_a_warning(tmp_path, tiny, caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        report = export(tiny, tmp_path / "m.pt2", "pt2", input_size=(8, 8), latency=False)
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in said if ".pt2" in m], said
    program = torch.export.load(str(tmp_path / "m.pt2")).module()
    for batch in (1, 4, 7):  # 7 was never seen by the exporter or the check
        x = torch.randn(batch, 3, 8, 8)
        assert torch.allclose(program(x), tiny(x), atol=1e-5)
    assert [c.batch for c in report.checks] == [1, 3] and report.max_abs_diff <= report.bound
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt2"]


def test_an_onnx_model_runs_in_onnxruntime_at_any_batch_and_matches_pytorch(tmp_path, tiny):
    report = export(tiny, tmp_path / "m.onnx", "onnx", input_size=(8, 8))
    assert isinstance(report, ExportReport) and report.exporter.startswith("torch.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 3, 8, 8)
        out = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
        assert out.shape == (batch, 10)
        assert (out - tiny(x)).abs().max() < 1e-4
    assert report.latency is not None and report.latency.median_ms > 0


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        ("x.pt", "pt2", r"fmt='pt2' writes a file whose name must end in .pt2; give .*x.pt2"),
        ("x.pt", "onnx", r"must end in .onnx"),
        ("x.pt2", "pt", r"named like a pt2 export; pass fmt='pt2'"),
    ],
)
def test_a_name_that_does_not_fit_the_format_is_refused(tmp_path, tiny, name, fmt, message):
    spec = rewriter.ModelSpec("relevance_cnn", "builtin", None, TINY)
    with pytest.raises(ModelFileError, match=message):
        rewriter.save(tiny, tmp_path / name, spec=spec, recipe=rewriter.Recipe.empty((8, 8)), input_size=(8, 8),
                      fmt=fmt)  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_loading_an_export_as_a_model_file_says_what_it_is(tmp_path, tiny):
    export(tiny, tmp_path / "m.pt2", "pt2", input_size=(8, 8), latency=False)
    with pytest.raises(
        ModelFileError, match=r"is a torch.export program \(a pt2 export\).*torch.export.load"
    ):
        rewriter.load(str(tmp_path / "m.pt2"))


def test_a_routed_model_is_refused_with_the_reason(tmp_path):
    from rewriter.analysis import analyze
    from rewriter.lab import RoutedModel, Router, gate_units, label_units

    model, _ = rewriter.load_model("relevance_cnn", model_args=TINY)
    units = label_units(model, analyze(model, 8, flops=False))
    backbone, routes = gate_units(model, units)
    routed = RoutedModel(Router(len(units)), backbone, routes, [u.name for u in units])
    for fmt in ("onnx", "pt2"):
        with pytest.raises(ModelFileError, match="picks per image which units run"):
            export(routed, tmp_path / f"r.{fmt}", fmt, input_size=(8, 8))
    assert not list(tmp_path.iterdir())


def test_an_export_that_computes_something_else_is_not_written(tmp_path, tiny, monkeypatch):
    from rewriter.engine import exporting

    monkeypatch.setattr(exporting, "_pt2_runner", lambda tmp: lambda x: tiny(x) + 0.5)
    with pytest.raises(ModelFileError, match=r"computes something else: max .* exceeds"):
        export(tiny, tmp_path / "m.pt2", "pt2", input_size=(8, 8))
    assert not list(tmp_path.iterdir())


def test_rewrite_writes_an_onnx_model_and_reports_the_check(capsys, tmp_path):
    out, report = tmp_path / "v.onnx", tmp_path / "r.json"
    code, _, err = run(capsys, "rewrite", "cifar_vgg11", "--input-size", "32", "--strategy", "truncate",
                       "--format", "onnx", "-o", str(out), "--report", str(report), "--no-latency")  # fmt: skip
    assert code == 0, err
    checked = json.loads(report.read_text())["export"]
    assert checked["dynamic_batch"] and [c["batch"] for c in checked["checks"]] == [1, 3]
    assert max(c["max_abs_diff"] for c in checked["checks"]) <= checked["max_abs_diff_bound"]
    assert "max |exported - PyTorch|" in err
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {session.get_inputs()[0].name: torch.zeros(2, 3, 32, 32).numpy()})[0].shape == (
        2,
        10,
    )


def test_train_exports_what_it_trained(capsys, tmp_path):
    out = tmp_path / "cnn.pt2"
    code, _, err = run(capsys, "train", "relevance_cnn", "--model-arg", "width=4", "--data", "synthetic:32",
                       "--epochs", "1", "--max-batches", "1", "--batch-size", "16", "--lr", "0.01",
                       "--format", "pt2", "-o", str(out))  # fmt: skip
    assert code == 0, err
    program = torch.export.load(str(out)).module()
    assert program(torch.randn(3, 3, 32, 32)).shape == (3, 10)
