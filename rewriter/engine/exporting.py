"""Exports for deployment without rewriter: a ``torch.export`` program (``.pt2``) or an ONNX model
(``.onnx``), each with a dynamic batch dimension, checked before it is kept.

An export is written to a temporary file, loaded back with its own runtime (``torch.export.load``, or
``onnx.checker`` and onnxruntime) and run against the PyTorch model on random inputs at two batch sizes;
the largest absolute difference is reported and must stay within a bound, else nothing is written. The
exported model is then timed in its runtime. A model that computes per image what no static graph can
(a routed model that skips units per image) is refused with the reason, before any work: a model class
or a strategy says so with an ``export_refusal`` attribute.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .._errors import ModelFileError
from .._files import atomic_path, check_target
from .._text import one_line
from ..analysis.modes import eval_mode
from .report import Latency, time_call

Format = Literal["pt", "pt2", "onnx"]
SUFFIXES: dict[str, str] = {"pt2": ".pt2", "onnx": ".onnx"}
TOLERANCE = 1e-3  # largest absolute difference allowed, relative to the largest output magnitude (at least 1)
CHECK_BATCHES = (1, 3)


@dataclass(frozen=True)
class ExportCheck:
    """The exported model against PyTorch on one random batch."""

    batch: int
    max_abs_diff: float


@dataclass(frozen=True)
class ExportReport:
    """What was written, by which exporter, how close it computes to PyTorch, and how fast it runs."""

    path: Path
    fmt: str
    exporter: str
    checks: tuple[ExportCheck, ...]
    bound: float
    latency: Latency | None = None

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.fmt,
            "exporter": self.exporter,
            "dynamic_batch": True,
            "checks": [{"batch": c.batch, "max_abs_diff": c.max_abs_diff} for c in self.checks],
            "max_abs_diff_bound": self.bound,
            "latency": self.latency.to_json() if self.latency is not None else None,
        }

    def format(self) -> str:
        batches = ", ".join(f"batch {c.batch}: {c.max_abs_diff:.2e}" for c in self.checks)
        timed = f"; {self.latency.text()} per image in its runtime" if self.latency else ""
        return (
            f"{self.path}: {self.exporter}, dynamic batch; max |exported - PyTorch| {batches} "
            f"(bound {self.bound:.1e}){timed}"
        )


def check_format(path: str | os.PathLike, fmt: str, *, strict: bool = False) -> None:
    """Refuse a name that does not fit the format: a ``.pt2`` archive must end in .pt2 (torch.export.load
    reads nothing else), an ONNX model in .onnx, and a model file must not take either suffix; with
    ``strict`` (the command line's ``-o``) it must end in .pt (``x.txt`` would be taken for text).

    Raises:
        ModelFileError: with the name to give instead.
    """
    target = Path(path)
    if fmt not in ("pt", *SUFFIXES):
        raise ModelFileError(f"unknown format '{fmt}': use pt, pt2 or onnx")
    wanted = SUFFIXES.get(fmt)
    if wanted is not None and target.suffix != wanted:
        raise ModelFileError(
            f"{target}: fmt='{fmt}' writes a file whose name must end in {wanted}; give {target.with_suffix(wanted)}",
            param="fmt",
        )
    if wanted is None and target.suffix in SUFFIXES.values():
        fmt_of = next(f for f, suffix in SUFFIXES.items() if suffix == target.suffix)
        raise ModelFileError(
            f"{target} is named like a {fmt_of} export; pass fmt='{fmt_of}', or name it .pt", param="fmt"
        )
    if strict and wanted is None and target.suffix != ".pt":
        raise ModelFileError(
            f"{target}: a model file (what `rewriter rewrite`, `analyze` and `rewriter.load` read back) is "
            f"named .pt, not {target.suffix or 'without a suffix'}; give {target.with_suffix('.pt')}, or "
            "fmt='pt2' or fmt='onnx' for an export",
            param="fmt",
        )


def check_exportable(fmt: str, *, reasons: Iterable[str | None] = ()) -> None:
    """Refuse an export that cannot succeed, before any expensive work: ONNX without onnx/onnxruntime
    installed, or a model that says it cannot be exported (``reasons``: the ``export_refusal`` of the model
    or of the strategies that will make it).

    Raises:
        ModelFileError: with the reason.
    """
    if fmt == "pt":
        return
    for reason in reasons:
        if reason:
            raise ModelFileError(f"fmt='{fmt}': {reason}", param="fmt")
    if fmt == "onnx":
        missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
        if missing:
            raise ModelFileError(
                f"fmt='onnx' needs {' and '.join(missing)}: pip install 'rewriter[onnx]'", param="fmt"
            )


def export(
    model: nn.Module,
    path: str | os.PathLike,
    fmt: str,
    *,
    input_size: tuple[int, int],
    in_channels: int = 3,
    overwrite: bool = False,
    force: bool = False,
    latency: bool = True,
) -> ExportReport:
    """Export ``model`` to ``path`` as ``fmt`` (``pt2`` or ``onnx``) with a dynamic batch dimension, check
    it against PyTorch at two batch sizes, time it in its runtime, and write it atomically.

    Raises:
        ModelFileError: the name does not fit the format, the target exists (without ``overwrite``), the
            model cannot be exported (the exporter's reason), or the export computes something else.
    """
    check_format(path, fmt)
    if fmt == "pt":
        raise ModelFileError("export() writes pt2 or onnx; a .pt model file is rewriter.save's")
    check_exportable(fmt, reasons=[getattr(model, "export_refusal", None)])
    target = check_target(path, overwrite or force)
    if any(t.device.type != "cpu" for t in (*model.parameters(), *model.buffers())):
        model = copy.deepcopy(model).cpu()  # exported and checked on the CPU, where the runtimes run
    example = _inputs(2, in_channels, input_size, seed=0)
    with eval_mode(model), torch.no_grad(), atomic_path(target, overwrite=overwrite or force) as tmp:
        if fmt == "pt2":
            exporter = _write_pt2(model, example, tmp)
            run = _pt2_runner(tmp)
        else:
            exporter = _write_onnx(model, example, tmp)
            run = _onnx_runner(tmp)
        checks, bound = _compare(model, run, in_channels, input_size)
        timed = None
        if latency:
            one = _inputs(1, in_channels, input_size, seed=2)
            timed = time_call(lambda: run(one))
    return ExportReport(target, fmt, exporter, checks, bound, timed)


def _inputs(batch: int, in_channels: int, input_size: tuple[int, int], *, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, in_channels, *input_size, generator=generator)


def _dynamic_batch() -> dict[int, Any]:
    return {0: torch.export.Dim("batch", min=1, max=4096)}


def _write_pt2(model: nn.Module, example: torch.Tensor, tmp: Path) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, (example,), dynamic_shapes=(_dynamic_batch(),))
    except Exception as err:
        raise ModelFileError(f"torch.export cannot export the model: {one_line(err, limit=300)}") from err
    with open(tmp, "wb") as handle:  # a handle: torch.export.save warns on a name not ending in .pt2
        torch.export.save(program, handle)
    return "torch.export"


def _pt2_runner(tmp: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    with open(tmp, "rb") as handle:
        module = torch.export.load(io.BytesIO(handle.read())).module()
    return lambda x: module(x)


def _write_onnx(model: nn.Module, example: torch.Tensor, tmp: Path) -> str:
    """The torch.export-based exporter first; the TorchScript-based one when it cannot trace the model."""
    errors = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                _onnx_export(model, example, tmp, dynamo=dynamo)
            return "torch.onnx (dynamo)" if dynamo else "torch.onnx (TorchScript)"
        except Exception as err:  # both exporters raise many kinds; the reason is reported below
            errors.append(f"{'dynamo' if dynamo else 'TorchScript'}: {one_line(err, limit=200)}")
    raise ModelFileError("torch.onnx cannot export the model (" + "; ".join(errors) + ")")


def _onnx_export(model: nn.Module, example: torch.Tensor, tmp: Path, *, dynamo: bool) -> None:
    names = {"input_names": ["input"], "output_names": ["output"]}
    if dynamo:
        program = torch.onnx.export(
            model, (example,), dynamo=True, dynamic_shapes=(_dynamic_batch(),), verbose=False, **names
        )
        program.save(str(tmp), external_data=False)
    else:
        axes = {"input": {0: "batch"}, "output": {0: "batch"}}
        torch.onnx.export(model, (example,), str(tmp), dynamo=False, dynamic_axes=axes, **names)
    import onnx

    onnx.checker.check_model(str(tmp), full_check=True)


def _onnx_runner(tmp: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _compare(
    model: nn.Module,
    run: Callable[[torch.Tensor], torch.Tensor],
    in_channels: int,
    input_size: tuple[int, int],
) -> tuple[tuple[ExportCheck, ...], float]:
    checks, bound = [], TOLERANCE
    for i, batch in enumerate(CHECK_BATCHES):
        x = _inputs(batch, in_channels, input_size, seed=1 + i)
        expected = model(x)
        if not isinstance(expected, torch.Tensor):
            raise ModelFileError(
                f"the model returns {type(expected).__name__}, not one tensor: cannot check it"
            )
        try:
            got = run(x)
        except Exception as err:
            raise ModelFileError(
                f"the exported model fails at batch {batch}: {one_line(err, limit=200)}"
            ) from err
        if tuple(got.shape) != tuple(expected.shape):
            raise ModelFileError(
                f"the exported model returns {list(got.shape)} at batch {batch}, PyTorch {list(expected.shape)}"
            )
        bound = max(bound, TOLERANCE * float(expected.abs().max()))
        checks.append(ExportCheck(batch, float((got.float() - expected.float()).abs().max())))
    worst = max(c.max_abs_diff for c in checks)
    if not worst <= bound:
        raise ModelFileError(
            f"the exported model computes something else: max |exported - PyTorch| {worst:.3g} exceeds "
            f"{bound:.3g}; nothing was written"
        )
    return tuple(checks), bound
