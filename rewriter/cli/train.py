"""``rewriter train``: train a model on a data source and save it as a model file."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._errors import ModelFileError
from .._files import check_targets, same_file
from .._text import render_table
from ..analysis.flops_fvcore import count_params
from ..engine.exporting import check_exportable, check_format, export
from ..engine.recipe import Recipe
from ..engine.saving import save
from ..lab.precision import resolve_precision
from ..lab.training import TrainConfig, TrainError, TrainResult, distributed, init_distributed, train
from ._common import check_outputs, device_of, loader_workers, print_json, setup_of, status
from ._conventions import add_format_argument, add_latency_argument, output_format
from ._parser import (
    add_measuring_arguments,
    add_precision_argument,
    add_rate_arguments,
    command_parser,
    integer,
    real,
)
from ._setup import Setup, epoch_reporter

DESCRIPTION = """\
Train a model with SGD on a data source and write a model file (the same format as `rewrite -o`, so
`saturation`, `probe` and `rewrite` read it back). The defaults follow paper 000 III-B: SGD with learning
rate 0.1 and momentum 0.9, divided by 10 at each third of the run, batch size 64, random crops and flips.
A checkpoint is written after every epoch; `--resume` continues from it. Under
`torchrun --nproc_per_node N` the same command trains with DistributedDataParallel (gloo on CPUs).
"""

EPILOG = """\
examples:
  rewriter train cifar_vgg16 --input-size 32 --data cifar10:~/data/cifar10 --epochs 30 -o vgg16.pt
  rewriter train resnet18 --data synthetic --epochs 3 -o resnet18-syn.pt
  rewriter train relevance_cnn --data digits --epochs 5 --lr 0.01 -o cnn1.pt
  rewriter train vgg16-w.pt --data cifar10:~/data/cifar10 --epochs 30 -o vgg16-w-trained.pt
  rewriter train cifar_vgg16 --data cifar10:~/data/cifar10 --epochs 30 -o vgg16.pt --resume   # after a stop
  torchrun --nproc_per_node 2 -m rewriter train resnet18 --data synthetic --epochs 3 -o r18.pt
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "train",
        help="train a model on a data source and save it as a model file",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_measuring_arguments(parser, pretrain=False)
    _add_schedule(parser)
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", required=True, metavar="FILE", help="write the trained model here")
    add_format_argument(
        out, help="pt: a model file; pt2 or onnx: an export for deployment, checked against the model "
        "(checked to be exportable before training)",
    )  # fmt: skip
    out.add_argument("--force", action="store_true", help="overwrite an existing output file and checkpoint")
    out.add_argument(
        "--checkpoint", metavar="FILE", help="checkpoint written every epoch (default: OUTPUT.ckpt)"
    )
    out.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    out.add_argument("--json", action="store_true", help="print the training history as JSON")
    add_latency_argument(out, default=True, what="the export (--format pt2 or onnx) in its runtime")
    parser.set_defaults(run=run)


def _add_schedule(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    hyper = parser.add_argument_group("schedule (defaults: paper 000 III-B)")
    hyper.add_argument(
        "--epochs", type=integer(1, 100_000), default=defaults.epochs, metavar="N", help="default %(default)s"
    )
    add_rate_arguments(hyper, defaults.lr, "a range test on the model picks it")
    hyper.add_argument("--momentum", type=real(0, 1), default=defaults.momentum, help="default %(default)s")
    hyper.add_argument(
        "--weight-decay", type=real(0, 1), default=defaults.weight_decay, help="default %(default)s"
    )
    hyper.add_argument(
        "--optimizer", choices=("sgd", "adam"), default=defaults.optimizer, help="default %(default)s"
    )
    hyper.add_argument(
        "--step-every",
        type=integer(1, 100_000),
        metavar="N",
        help="epochs between learning-rate steps (default: a third of the run)",
    )
    hyper.add_argument(
        "--gamma",
        type=real(0, 10, low_open=True),
        default=defaults.gamma,
        help="learning-rate factor per step (default %(default)s)",
    )
    hyper.add_argument(
        "--seed", type=integer(0, 2**32 - 1), default=defaults.seed, help="default %(default)s"
    )
    hyper.add_argument(
        "--max-batches", type=integer(1), metavar="N", help="batches per epoch, for quick runs (default: all)"
    )
    hyper.add_argument(
        "--test-every", type=integer(0, 100_000), default=1, metavar="K",
        help="score the test split after every K-th epoch and after the last (0: only after the last; default 1)",
    )  # fmt: skip
    add_precision_argument(hyper)


def run(args: argparse.Namespace) -> int:
    args.format = output_format(args.output, args.format)
    checkpoint = _check_outputs(args)
    _config(args, 0.1 if args.lr == "auto" else args.lr)  # a setting out of range fails before any work
    device_of(args)
    joined = init_distributed()
    try:
        return _train(args, checkpoint)
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()


def _check_outputs(args: argparse.Namespace) -> Path:
    """Refuse the output and the checkpoint before any work; return the checkpoint's path. A checkpoint
    that exists is only read (--resume) or replaced (--force): it may be the user's own file."""
    checkpoint = Path(args.checkpoint or f"{args.output}.ckpt")
    check_format(args.output, args.format, strict=True)
    check_exportable(args.format)
    check_outputs(args, {"-o": args.output})
    check_targets({"--checkpoint": checkpoint}, args.force or args.resume)
    if same_file(args.output, checkpoint):
        raise ModelFileError(f"-o and --checkpoint are the same file ({checkpoint}); give two names")
    if args.resume and not checkpoint.is_file():
        raise ModelFileError(f"cannot resume: no checkpoint at {checkpoint}")
    return checkpoint


def _config(args: argparse.Namespace, lr: float) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=lr, momentum=args.momentum,
        weight_decay=args.weight_decay, optimizer=args.optimizer, step_every=args.step_every, gamma=args.gamma,
        seed=args.seed, workers=loader_workers(args), max_batches=args.max_batches, warmup_epochs=args.warmup_epochs,
        test_every=args.test_every, precision=args.precision,
    )  # fmt: skip


def _train(args: argparse.Namespace, checkpoint: Path) -> int:
    rank, world = distributed()
    torch.manual_seed(args.seed)  # the model's initial weights come from the seed too
    setup = setup_of(args)
    if args.format != "pt":  # a graph that cannot be exported fails now, not after the training
        _trial_export(args, setup)
    config = _config(args, _learning_rate(args, setup, checkpoint))
    if rank == 0:
        size = setup.input_size
        precision = resolve_precision(config.precision, device_of(args))
        status(
            f"training {args.model} ({count_params(setup.model) / 1e6:.2f} M params) on {setup.data.name} at "
            f"{size[0]}x{size[1]} for {config.epochs} epochs, lr {config.lr:.3g}, {precision.label} "
            f"({precision.reason})" + (f" on {world} processes" if world > 1 else "")
        )
    result = train(
        setup.model, setup.data, config, checkpoint=checkpoint, resume=args.resume, device=device_of(args),
        on_epoch=epoch_reporter(config, setup.data, status),
    )  # fmt: skip
    if rank != 0:
        return 0
    summary = _summary(args, setup, config, result, world)
    _write(args, setup, result, summary)
    status(f"wrote {args.output} (checkpoint {checkpoint})")
    if args.json:
        print_json(summary)
    else:
        rows = [
            [str(h.epoch + 1), f"{h.loss:.4f}", f"{h.accuracy:.2%}", f"{h.test_accuracy:.2%}", f"{h.lr:g}"]
            for h in result.history
        ]
        print(render_table(["epoch", "loss", "train acc", "test acc", "lr"], rows, align=">>>>>"))
    return 0


def _learning_rate(args: argparse.Namespace, setup: Setup, checkpoint: Path) -> float:
    """--lr, or for auto the rate of a range test (on a resumed run: the checkpoint's rate)."""
    if args.lr != "auto":
        return args.lr
    if args.resume and checkpoint.is_file():
        try:
            return float(torch.load(checkpoint, map_location="cpu", weights_only=True)["config"]["lr"])
        except Exception as err:
            raise TrainError(f"cannot resume from {checkpoint}: not a readable checkpoint") from err
    from ..lab.lr_range import find_lr

    found = find_lr(setup.model, setup.data, _config(args, 0.1), device=device_of(args))
    status(f"--lr auto: a range test picked {found.lr:.3g}")
    return found.lr


def _trial_export(args: argparse.Namespace, setup: Setup) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        trial = Path(folder) / f"trial{Path(args.output).suffix}"
        export(setup.model, trial, args.format, input_size=setup.input_size, in_channels=setup.data.in_channels,
               latency=False)  # fmt: skip


def _summary(args: argparse.Namespace, setup: Setup, config: TrainConfig, result: TrainResult, world: int):
    return {
        "model": args.model,
        "data": setup.data.name,
        "input_size": list(setup.input_size),
        "processes": world,
        "config": asdict(config),
        "history": [asdict(h) for h in result.history],
        "test_accuracy": result.test_accuracy,
        "precision": result.precision,
        "subset": setup.data.subset,
        **result.throughput(),
    }


def _write(args: argparse.Namespace, setup: Setup, result: TrainResult, summary: dict[str, Any]) -> None:
    model = result.model.cpu()
    if args.format == "pt":
        save(
            model, args.output, spec=setup.spec, recipe=Recipe.empty(setup.input_size), input_size=setup.input_size,
            in_channels=setup.data.in_channels, report={"training": summary}, overwrite=args.force,
        )  # fmt: skip
        return
    exported = export(
        model, args.output, args.format, input_size=setup.input_size, in_channels=setup.data.in_channels,
        overwrite=args.force, latency=args.latency,
    )  # fmt: skip
    summary["export"] = exported.to_json()
    status(exported.format())
