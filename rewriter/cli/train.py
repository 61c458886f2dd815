"""``rewriter train``: train a model on a data source and save it as a model file."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._files import check_target
from .._text import render_table
from ..analysis.cost import count_params
from ..engine.recipe import Recipe
from ..engine.saving import save
from ..lab.training import TrainConfig, TrainError, distributed, init_distributed, resolve_device, train
from ._common import (
    add_measuring_arguments,
    command_parser,
    device_of,
    epoch_reporter,
    load_data_and_model,
    print_json,
    status,
)

DESCRIPTION = """\
Train a model with SGD on a data source and write a model file (the same format as `rewrite -o`, so
`saturation`, `probe` and `rewrite` read it back). The defaults follow paper 000 III-B: SGD with learning
rate 0.1 and momentum 0.9, divided by 10 at each third of the run, batch size 64, random crops and flips;
the rate warms up linearly over the first epoch (`--warmup-epochs 0` is the paper's schedule exactly), and
`--lr auto` finds the rate by a range test first. The same --seed gives the same weights. A checkpoint is
written after every epoch; `--resume` continues from it with the configuration it was written with (another
one is refused, naming the fields). Under `torchrun --nproc_per_node N` the same command trains with
DistributedDataParallel (gloo on CPUs).
"""

EPILOG = """\
examples:
  rewriter train cifar_vgg16 --input-size 32 --data cifar10:~/data/cifar10 --epochs 30 -o vgg16.pt
  rewriter train resnet18 --data synthetic --epochs 3 -o resnet18-syn.pt
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
    defaults = TrainConfig()
    hyper = parser.add_argument_group("schedule (defaults: paper 000 III-B)")
    hyper.add_argument("--epochs", type=int, default=defaults.epochs, metavar="N", help="default %(default)s")
    hyper.add_argument(
        "--lr", type=_rate, default=defaults.lr,
        help="initial learning rate, or auto: a range test picks it (default %(default)s)",
    )  # fmt: skip
    hyper.add_argument(
        "--warmup-epochs", type=int, default=1, metavar="N",
        help="epochs over which the rate rises linearly from 0 (default 1; 0: paper 000's schedule)",
    )  # fmt: skip
    hyper.add_argument("--momentum", type=float, default=defaults.momentum, help="default %(default)s")
    hyper.add_argument(
        "--weight-decay", type=float, default=defaults.weight_decay, help="default %(default)s"
    )
    hyper.add_argument("--optimizer", choices=("sgd", "adam"), default=defaults.optimizer)
    hyper.add_argument(
        "--step-every",
        type=int,
        metavar="N",
        help="epochs between learning-rate steps (default: a third of the run)",
    )
    hyper.add_argument("--gamma", type=float, default=defaults.gamma, help="learning-rate factor per step")
    hyper.add_argument("--seed", type=int, default=defaults.seed)
    hyper.add_argument("--max-batches", type=int, metavar="N", help="batches per epoch, for quick runs")
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", required=True, metavar="FILE.pt", help="write the trained model here")
    out.add_argument("--force", action="store_true", help="overwrite an existing output file")
    out.add_argument(
        "--checkpoint", metavar="FILE", help="checkpoint written every epoch (default: OUTPUT.ckpt)"
    )
    out.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    out.add_argument("--json", action="store_true", help="print the training history as JSON")
    parser.set_defaults(run=run)


def _rate(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a learning rate or 'auto', got '{text}'") from None


def _config(args: argparse.Namespace, lr: float) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=lr, momentum=args.momentum,
        weight_decay=args.weight_decay, optimizer=args.optimizer, step_every=args.step_every, gamma=args.gamma,
        seed=args.seed, workers=args.workers, max_batches=args.max_batches, warmup_epochs=args.warmup_epochs,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    check_target(args.output, args.force)
    _config(args, 0.1 if args.lr == "auto" else args.lr)  # a value out of range fails before any work
    resolve_device(args.device)
    joined = init_distributed()
    try:
        return _train(args)
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(args: argparse.Namespace) -> int:
    rank, world = distributed()
    torch.manual_seed(args.seed)  # the model's initial weights come from the seed too
    data, model, spec, size = load_data_and_model(args)
    checkpoint = Path(args.checkpoint or f"{args.output}.ckpt")
    lr = _learning_rate(args, model, data, checkpoint)
    config = _config(args, lr)
    if rank == 0:
        status(
            f"training {args.model} ({count_params(model) / 1e6:.2f} M params) on {data.name} at "
            f"{size[0]}x{size[1]} for {config.epochs} epochs, lr {config.lr:.3g}"
            + (f" on {world} processes" if world > 1 else "")
        )
    result = train(model, data, config, checkpoint=checkpoint, resume=args.resume, device=device_of(args),
                   on_epoch=epoch_reporter(config, data))  # fmt: skip
    if rank != 0:
        return 0
    summary = {"model": args.model, "data": data.name, "input_size": list(size), "processes": world,
               "config": asdict(config), "history": [asdict(h) for h in result.history],
               "test_accuracy": result.test_accuracy}  # fmt: skip
    save(result.model.cpu(), args.output, spec=spec, recipe=Recipe.empty(size), input_size=size,
         in_channels=data.in_channels, report={"training": summary}, force=args.force)  # fmt: skip
    status(f"wrote {args.output} (checkpoint {checkpoint})")
    _print(args, summary, result.history)
    return 0


def _learning_rate(args: argparse.Namespace, model: Any, data: Any, checkpoint: Path) -> float:
    """--lr, or for auto the rate of a range test (on a resumed run: the checkpoint's rate)."""
    if args.lr != "auto":
        return args.lr
    if args.resume and checkpoint.is_file():
        try:
            return float(torch.load(checkpoint, map_location="cpu", weights_only=True)["config"]["lr"])
        except Exception as err:
            raise TrainError(f"cannot resume from {checkpoint}: not a readable checkpoint") from err
    from ..lab.lr_range import find_lr

    found = find_lr(model, data, _config(args, 0.1), device=device_of(args))
    status(f"--lr auto: a range test picked {found.lr:.3g}")
    return found.lr


def _print(args: argparse.Namespace, summary: dict[str, Any], history: list[Any]) -> None:
    if args.json:
        print_json(summary)
        return
    rows = [[str(h.epoch + 1), f"{h.loss:.4f}", f"{h.accuracy:.2%}", f"{h.test_accuracy:.2%}", f"{h.lr:g}"]
            for h in history]  # fmt: skip
    print(render_table(["epoch", "loss", "train acc", "test acc", "lr"], rows, align=">>>>>"))
