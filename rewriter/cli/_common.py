"""What the subcommands share when they run: the model request, the input size, outputs checked before
any work, JSON on stdout, status on stderr. Options are read from ``args``, never written back."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import UsageError
from .._files import check_targets, write_json
from ..lab.model_request import ModelRequest
from ..lab.training import resolve_device
from ..models.sources import ModelSpec, parse_model_args
from ._log import log
from ._parser import cores
from ._setup import Setup, load_setup, pretrain, resolve_input_size


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def status(message: str) -> None:
    """Progress and notes go to stderr so that stdout stays clean for --json (as text or JSON lines, none
    with --quiet: ``rewriter.cli._log``)."""
    log(message)


def request_of(args: argparse.Namespace, *, num_classes: int | None = None) -> ModelRequest:
    """The model the arguments name (``num_classes`` when --num-classes is not given), a file it names read
    once (``ModelRequest.read``): ask once per command and pass the request on."""
    return ModelRequest(
        args.model,
        num_classes=args.num_classes if args.num_classes is not None else num_classes,
        model_args=parse_model_args(args.model_arg),
        weights=args.weights,
        trust_pickle=args.trust_pickle,
        input_size=getattr(args, "input_size", None),
    ).read()


def load_from_args(args: argparse.Namespace) -> tuple[nn.Module, ModelSpec]:
    return request_of(args).load()


def input_size_of(args: argparse.Namespace, request: ModelRequest) -> tuple[int, int]:
    """--input-size, else the size the model file of ``request`` was written for.

    Raises:
        UsageError: neither is known.
    """
    return resolve_input_size(args.input_size, request)


def device_of(args: argparse.Namespace) -> torch.device:
    """--device (default: cuda if available, else cpu); one this machine lacks is refused, and so is a kind
    that holds no data (meta) or that this torch lacks (mps without its backend)."""
    device = resolve_device(args.device)
    usable = device.type in ("cpu", "cuda") or (device.type == "mps" and torch.backends.mps.is_available())
    if not usable:
        raise UsageError(f"--device {device}: not a device this torch can train on here; use cpu or cuda")
    return device


def loader_workers(args: argparse.Namespace) -> int:
    """--loader-workers, capped to the cores (with a note)."""
    available = cores()
    if args.loader_workers > available:
        status(f"note: --loader-workers {args.loader_workers} capped to the {available} cores")
        return available
    return args.loader_workers


def executor_of(args: argparse.Namespace):
    """Where cells or candidates train, from --executor, --workers (capped to the cores, with a note) and the
    Ray options (``_parser.add_executor_arguments``)."""
    from ..lab.study import Executor

    kind = args.executor or ("processes" if args.workers > 1 else "serial")
    workers = args.workers
    if kind == "processes" and workers > cores():
        workers = cores()
        status(f"note: --workers {args.workers} capped to the {workers} cores")
    return Executor(kind, workers=workers, address=args.address, cpus_per_cell=args.cpus_per_cell,
                    gpus_per_cell=args.gpus_per_cell, connect_timeout=args.connect_timeout)  # fmt: skip


def check_outputs(args: argparse.Namespace, targets: Mapping[str, Any]) -> None:
    """Refuse every output before any work: an existing file without --force, a folder, a missing folder,
    one of the inputs (always), or two outputs that are the same file."""
    check_targets(targets, getattr(args, "force", False))


def prepare_measurement(args: argparse.Namespace) -> tuple[Setup, torch.device]:
    """For a command that measures a model on data: refuse unwritable outputs before any work, read the
    data and the model, train it first if asked, and move it to the device."""
    check_outputs(args, {"--plot": args.plot, "--report": args.report})
    device = device_of(args)  # a device this machine lacks fails before any work
    setup = setup_of(args)
    pretrain(
        setup.model,
        setup.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        workers=loader_workers(args),
        device=device,
        precision=args.precision,
        progress=status,
    )
    setup.model.to(device)
    return setup, device


def setup_of(args: argparse.Namespace) -> Setup:
    """The data of --data and the model, at --input-size (else a model file's own, else the data's)."""
    return load_setup(
        request_of(args), args.data, input_size=args.input_size, download=args.download, progress=status,
        **data_options(args),
    )  # fmt: skip


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """What ``load_data`` takes from --train-samples, --test-samples and --data-memory."""
    return {"train_samples": args.train_samples, "test_samples": args.test_samples,
            "memory_limit": args.data_memory * 2**30}  # fmt: skip


def write_report(args: argparse.Namespace, result: Any) -> None:
    """--report FILE: the JSON result, written atomically (the target was checked before the work)."""
    if args.report:
        write_json(args.report, result)
        status(f"wrote {args.report}")


def analysis_or_none(model: nn.Module, size: tuple[int, int], args: argparse.Namespace) -> Any:
    """The receptive-field analysis for plots and tables, or None with a note if the model cannot be traced."""
    from .._errors import RewriterError
    from ..analysis.traced_model import analyze

    try:
        return analyze(
            model,
            size,
            in_channels=args.in_channels,
            leaf_modules=args.leaf_module,
            flops=False,
            name=args.model,
        )
    except RewriterError as err:
        status(f"note: no receptive fields to show ({err})")
        return None


def inputs_of(args: argparse.Namespace) -> list[str]:
    """The files a command reads (MODEL, --weights, --recipe, --data's folder, files named by -p values):
    no output may replace them."""
    found: list[str] = []
    for name in ("model", "model_a", "model_b", "weights", "recipe"):
        value = getattr(args, name, None)
        found += value if isinstance(value, list) else [value] if value else []
    data = getattr(args, "data", None)
    if isinstance(data, str) and data.partition(":")[0] in ("cifar10", "cifar100", "imagefolder"):
        found.append(str(Path(data.partition(":")[2]).expanduser()))
    for item in getattr(args, "param", None) or []:
        found.append(item.partition("=")[2])
    return [p for p in found if p and os.path.exists(p)]  # False for a name too long to be a path
