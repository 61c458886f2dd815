"""The accuracy-aware search of ``rewriter optimize``: its options, and the run after the training-free search
(``rewriter.optimize.accuracy``): train the candidates by successive halving, choose by validation accuracy,
report, and write the chosen model with its trained weights."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from .._errors import UsageError
from ..engine.recipe import Recipe
from ..engine.saving import save
from ..lab.model_request import ModelRequest
from ..lab.training import TrainConfig, resolve_device
from ..optimize.accuracy import AccuracySearch, Schedule, search_accuracy
from ..optimize.trials import TrialSetup, trained_model
from ._common import executor_of, print_json, status
from ._parser import add_executor_arguments, integer, real


def add_accuracy_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "accuracy-aware search (--max-accuracy-drop PP or --by-accuracy, with --data SPEC --out DIR; "
        "--epochs, --seeds, --lr, --batch-size, --max-batches, --workers as above)"
    )
    add = group.add_argument
    add("--max-accuracy-drop", type=real(0, 100), metavar="PP",
        help="train the candidates and choose the cheapest whose validation accuracy is within PP percentage "
        "points of the baseline's")  # fmt: skip
    add("--by-accuracy", action="store_true",
        help="train the candidates and choose the most accurate within the budget")  # fmt: skip
    add("--top", type=integer(0, 64), default=3, metavar="N",
        help="candidates of the training-free ranking trained beside the front (default 3)")  # fmt: skip
    add("--min-epochs", type=integer(1, 100_000), metavar="N",
        help="the first rung (default: epochs / factor^2, at least 1)")  # fmt: skip
    add("--reduction-factor", type=integer(2, 16), default=3, metavar="ETA",
        help="each rung keeps about 1/ETA of the candidates (default 3)")  # fmt: skip
    add("--val-fraction", type=real(0, 0.5, low_open=True), default=0.1, metavar="F",
        help="share of the training split held out for validation, stratified (default 0.1)")  # fmt: skip
    add(
        "--val-seed",
        type=integer(0, 2**31 - 1),
        default=0,
        metavar="N",
        help="seed of that split (default 0)",
    )
    add("--device", metavar="DEVICE", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add_executor_arguments(parser, group, "candidates")


def wants_search(args: argparse.Namespace) -> bool:
    return args.max_accuracy_drop is not None or args.by_accuracy


def check_accuracy_arguments(args: argparse.Namespace) -> None:
    """Usage errors of the search's options, before anything runs."""
    if not wants_search(args):
        return
    if not args.data or not args.out:
        raise UsageError(
            "--max-accuracy-drop/--by-accuracy need --data SPEC (what to train on) and --out DIR"
        )
    if args.validate is not None or args.dry_run:
        raise UsageError("the accuracy-aware search trains: leave out --validate and --dry-run")
    if args.min_epochs is not None and args.min_epochs > args.epochs:
        raise UsageError(f"--min-epochs {args.min_epochs} is above --epochs {args.epochs}")


def run_search(args: argparse.Namespace, request: ModelRequest, result, data, pretrained: bool) -> int:
    """Train, choose, report (tables or --json, --report) and write -o; the exit code. ``request`` is the
    baseline as the command read it (``_common.request_of``)."""
    device = None if args.device is None else str(resolve_device(args.device))
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_batches=args.max_batches,
        precision=args.precision,
    )  # fmt: skip
    setup = TrialSetup(
        request, args.data, result.input_size, config, Path(args.out), fraction=args.val_fraction,
        holdout_seed=args.val_seed, in_channels=args.in_channels, leaf_modules=tuple(args.leaf_module),
        pretrained=pretrained, device=device,
    )  # fmt: skip
    executor = executor_of(args)
    schedule = Schedule(args.max_accuracy_drop, args.min_epochs, args.reduction_factor, args.seeds, args.top)
    search = search_accuracy(result, setup, schedule, data=data, executor=executor, say=status)
    _report(result, search, args, setup.splits()[0].num_classes)
    if search.chosen is None:
        return 3
    if args.output:
        _save_chosen(search, setup, args)
    else:
        status(f"not saved: give -o FILE.pt (the finalists are in {Path(args.out) / 'finalists'})")
    return 0


def _report(result, search: AccuracySearch, args: argparse.Namespace, classes: int) -> None:
    from ..render import format_front
    from ._common import write_report

    payload = {**result.to_json(), "accuracy_search": search.to_json()}
    write_report(args, payload)
    if args.json:
        print_json(payload)
        return
    print(format_front(result, verbose=args.verbose))
    print()
    print(search.format())
    if search.chosen is not None:
        steps = search.entry(search.chosen).candidate.steps
        recipe = Recipe(steps, result.input_size, classes, source="rewriter optimize")
        print("\nrecipe:\n" + yaml.safe_dump(recipe.to_dict(), sort_keys=False).rstrip())


def _save_chosen(search: AccuracySearch, setup: TrialSetup, args: argparse.Namespace) -> None:
    entry = search.entry(search.chosen)
    model, spec = trained_model(setup, entry.key, entry.candidate.steps)
    classes = setup.splits()[0].num_classes
    recipe = Recipe(entry.candidate.steps, setup.input_size, classes, source="rewriter optimize")
    save(model, args.output, spec=spec, recipe=recipe, input_size=setup.input_size, in_channels=args.in_channels,
         leaf_modules=args.leaf_module, report=entry.to_json(), fmt=args.format, overwrite=args.force)  # fmt: skip
    status(f"wrote {args.output} ({entry.key}, trained {args.epochs} epochs, seed 0)")
