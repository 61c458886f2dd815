"""``rewriter study``: train models x recipes x seeds with one setup; tables, deltas and a Pareto plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..lab.data import parse_data_spec
from ..lab.study import Study, StudySetup, parse_variant, run_study
from ..lab.training import TrainConfig, distributed, init_distributed, resolve_device
from ..render import plot_curves, plot_pareto
from ._common import executor_of, status
from ._parser import (
    DATA_HELP,
    MAX_CLASSES,
    add_executor_arguments,
    add_precision_argument,
    add_rate_arguments,
    command_parser,
    cores,
    data_spec,
    integer,
    real,
    size,
)  # fmt: skip

DESCRIPTION = """\
Answer "is the rewritten model as good as the baseline, and how much cheaper is it?" the way paper 000 V
does: every model x recipe x seed is built (and rewritten), measured (params, FLOPs, b_min, CPU latency at
batch 1 and 32) and trained from scratch with one shared setup, then scored on the test split. Each cell is
saved in OUT/cells/ as it finishes: run the same command again to resume, or with more models, recipes or
seeds to extend the study. A failed cell is recorded with its error and the others go on (--retry-failed
runs it again).

Every cell records its training curve (train and test loss and accuracy per epoch) and is marked
`converged`, `still improving`, `not converged` (test accuracy near chance) or `diverged`; the summary
gives no verdict against a baseline that did not converge, and says what to change. `--lr auto` finds one
learning rate for every cell by a range test on the baselines (recorded in OUT/study.json); the first
epoch warms the rate up (`--warmup-epochs 0 --lr 0.1` is paper 000's schedule exactly).

A study grows: `--keep-checkpoints` keeps each cell's last checkpoint (weights and momentum; about 90 MB
for resnet18) in OUT/checkpoints/, and `--extend --epochs N` with N above the study's epochs continues
every finished cell from it to N epochs (a cell without one is refused, with how to get one). An extended
cell runs N epochs' schedule from the epoch it reached, so its rate is a fresh N-epoch run's from there
on, but its earlier epochs ran the shorter schedule: close to a fresh run, not equal. Each cell, study.json,
summary.md and the plots record the extension and the rates before and after it.

OUT gets results.csv and results.json (one row per cell), summary.md (mean and spread per model x recipe,
deltas against the model's baseline, which variants are on the Pareto front), pareto.png and curves.png
(every cell's training curve).
Exit codes: 0 every cell succeeded, 3 the study finished but some cells failed, 1 it could not run.
"""

EPILOG = """\
examples:
  rewriter study --model cifar_vgg16 --model resnet18 --input-size 32 --data cifar10:~/data/cifar10 \\
      --recipe baseline --recipe truncate --recipe stem.yaml --seeds 3 --epochs 30 --out study/
  rewriter study --model cifar_vgg11 --data digits --recipe baseline --recipe truncate --epochs 5 --out s/ \
      --keep-checkpoints
  rewriter study ...the same... --epochs 10 --extend --out s/   # its cells trained on to 10 epochs
  rewriter study --model base.pt --data cifar10:~/data/cifar10 --recipe baseline --recipe truncate \\
      --finetune-head --epochs 3 --out heads/         # trained baseline: only the (new) head is trained
  rewriter study --model cifar_vgg11 --data digits --recipe baseline --recipe truncate --lr auto \
      --epochs 15 --out s/                 # one learning rate found for every cell
  torchrun --standalone --nproc_per_node 4 -m rewriter study ...              # DDP inside every cell
  rewriter study ... --executor ray --cpus-per-cell 2 --out /shared/study/     # a local Ray instance
  ray start --head                                      # on a cluster: once on the head node, then
  ray start --address HEAD:6379                         # once on every other node, and run the study with
  rewriter study ... --executor ray --address auto --gpus-per-cell 1 --out /shared/study/

--recipe is `baseline` (the model unchanged), a strategy name (one step with its defaults), or a YAML
recipe file (labelled by its file name; `steps: []` is a baseline too). With Ray, the driver writes the
results, and every node must read the data and model files at the same paths (a shared file system).
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "study",
        help="train models x recipes x seeds; accuracy against FLOPs, params and latency",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    grid = parser.add_argument_group("the grid")
    grid.add_argument("--model", action="append", required=True, metavar="MODEL",
                      help="a model name, package.module:callable, or a model file (repeatable)")  # fmt: skip
    grid.add_argument("--recipe", action="append", required=True, metavar="RECIPE",
                      help="baseline, a strategy name, or a recipe YAML (repeatable)")  # fmt: skip
    grid.add_argument("--seeds", type=integer(1, 1000), default=3, metavar="N",
                      help="seeds 0 .. N-1 per cell (default 3)")  # fmt: skip
    _add_setup_arguments(parser.add_argument_group("the shared setup (recorded in OUT/study.json)"))
    _add_running_arguments(parser)
    parser.set_defaults(run=run_command)


def _add_setup_arguments(setup: argparse._ArgumentGroup) -> None:
    setup.add_argument("--data", type=data_spec, required=True, metavar="SPEC", help=DATA_HELP)
    setup.add_argument("--input-size", type=size, default=(32, 32), metavar="SIZE",
                       help="training resolution (default 32)")  # fmt: skip
    defaults = TrainConfig()
    setup.add_argument("--epochs", type=integer(1, 100_000), default=defaults.epochs, metavar="N",
                       help="default %(default)s")  # fmt: skip
    add_rate_arguments(setup, defaults.lr, "a range test on the baselines, the rate shared by every cell")
    setup.add_argument("--batch-size", type=integer(1, 65_536), default=defaults.batch_size, metavar="N",
                       help="default %(default)s")  # fmt: skip
    setup.add_argument("--momentum", type=real(0, 1), default=defaults.momentum, help="default %(default)s")
    setup.add_argument("--weight-decay", type=real(0, 1), default=defaults.weight_decay,
                       help="default %(default)s")  # fmt: skip
    setup.add_argument(
        "--max-batches", type=integer(1), metavar="N", help="batches per epoch, for quick studies"
    )
    setup.add_argument("--num-classes", type=integer(1, MAX_CLASSES), metavar="N",
                       help="classes of the head, as in train (default: the data's)")  # fmt: skip
    setup.add_argument("--finetune-head", action="store_true",
                       help="train only the last layer (for trained baselines given as model files)")  # fmt: skip
    setup.add_argument("--train-samples", type=integer(1, 100_000_000), metavar="N",
                       help="train every cell on the same stratified sample of N training images (seed 0)")  # fmt: skip
    setup.add_argument("--test-samples", type=integer(1, 100_000_000), metavar="N",
                       help="score a stratified sample of N test images (default: all)")  # fmt: skip
    setup.add_argument("--test-every", type=integer(0, 100_000), default=1, metavar="K",
                       help="score the test split every K epochs and after the last (0: only after the last; "
                       "default 1); the convergence mark reads the scores there are")  # fmt: skip
    add_precision_argument(setup)


def _add_running_arguments(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("running")
    run.add_argument(
        "--out", required=True, metavar="DIR", help="the study folder (created; resumed if it exists)"
    )
    run.add_argument("--retry-failed", action="store_true",
                     help="run cells that failed in an earlier run again (they are kept otherwise)")  # fmt: skip
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep every cell's last checkpoint in OUT/checkpoints/ (so that --extend can continue "
                     "it; recorded, kept on later runs)")  # fmt: skip
    run.add_argument("--extend", action="store_true",
                     help="train the finished cells on to a larger --epochs from their checkpoints")  # fmt: skip
    run.add_argument("--force", action="store_true",
                     help="write into an --out folder that holds other files, or a broken study.json")  # fmt: skip
    run.add_argument("--device", metavar="DEVICE", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    run.add_argument("--workers", type=integer(1, 1024), default=1, metavar="N",
                     help=f"cells trained in parallel processes on this machine, at most the {cores()} cores "
                     "(default 1)")  # fmt: skip
    add_executor_arguments(parser, run, "cells")


def run_command(args: argparse.Namespace) -> int:
    parse_data_spec(args.data)  # a malformed spec fails before anything runs
    variants = [parse_variant(text) for text in args.recipe]
    setup = StudySetup(
        data=args.data, input_size=args.input_size, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, momentum=args.momentum, weight_decay=args.weight_decay,
        max_batches=args.max_batches, finetune_head=args.finetune_head, warmup_epochs=args.warmup_epochs,
        precision=args.precision, train_samples=args.train_samples, test_samples=args.test_samples,
        test_every=args.test_every,
        num_classes=args.num_classes,
    )  # fmt: skip
    executor = executor_of(args)
    study = Study(list(dict.fromkeys(args.model)), variants, list(range(args.seeds)), setup, Path(args.out),
                  retry_failed=args.retry_failed, force=args.force, extend=args.extend,
                  keep_checkpoints=args.keep_checkpoints)  # fmt: skip
    study.recorded()  # refuse a folder of another setup, or of other files, before anything runs
    device = None if args.device is None else str(resolve_device(args.device))
    joined = init_distributed()
    try:
        pending = len(study.pending())
        status(
            f"study of {len(study.cells)} cells in {args.out}: {len(study.cells) - pending} done, {pending} to run"
        )

        rows = run_study(
            study, executor=executor, device=device, on_cell=_report, plot=plot_pareto, curves=plot_curves
        )
        rank, _ = distributed()
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank != 0:
        return 0
    mine = {(c.model, c.source, c.variant.label, c.seed) for c in study.cells}
    failed = [r for r in rows if (r.model, r.source, r.recipe, r.seed) in mine and not r.ok]
    out = Path(args.out)
    print((out / "summary.md").read_text())
    plots = ", ".join(str(out / name) for name in ("pareto.png", "curves.png") if (out / name).is_file())
    status(
        f"wrote {out / 'results.csv'}, {out / 'results.json'}, {out / 'summary.md'}"
        + (f", {plots}" if plots else "")
    )
    if failed:
        status(f"{len(failed)} of {len(study.cells)} cells failed; their errors are in summary.md")
        return 3
    return 0


def _report(cell, row) -> None:
    if row.ok:
        accuracy = "-" if row.test_accuracy is None else f"{row.test_accuracy:.2%}"
        status(f"{cell.id}: test accuracy {accuracy} ({row.convergence}), {row.flops / 1e6:.1f} MFLOPs")
    else:
        status(f"{cell.id}: failed: {row.error}")
