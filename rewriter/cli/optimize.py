"""``rewriter optimize``: search the compositions of the strategies, choose one by the papers' heuristic
within a budget, verify it, report it, and save the rewritten model."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from typing import Any

import yaml

from .._errors import RewriterError, UsageError
from .._untrusted import load_yaml, shown
from ..engine.exporting import check_exportable, check_format, export
from ..engine.pipeline import rewrite
from ..engine.recipe import Recipe
from ..engine.saving import save
from ..lab.data import load_data
from ..lab.model_request import ModelRequest, model_for_data
from ..optimize import PREFERENCES, OptimizeResult, Ratio, optimize, parse_limit, validate
from ..render import format_front, plot_front
from ._accuracy import add_accuracy_arguments, check_accuracy_arguments, run_search, wants_search
from ._common import check_outputs, print_json, request_of, status, write_report
from ._conventions import add_format_argument, add_latency_argument, output_format
from ._flags import in_flags
from ._parser import (
    DATA_HELP,
    MAX_BATCH,
    add_input_arguments,
    add_model_arguments,
    add_precision_argument,
    command_parser,
    data_spec,
    integer,
    real,
)

DESCRIPTION = """\
Find the best training-free rewrite of a model for your input size. Every composition of the registered
strategies (their parameters' declared search values: `rewriter strategies`; each strategy at most once, in
a fixed order: stem, downsampling, stages, kernels, truncation, width) is planned, applied to a copy on the
meta device and analyzed: params, FLOPs, the unproductive layers, the border, and the r_min of the last
conv/pool layer against the input. A candidate a strategy refuses is dropped with the reason (--verbose).

The objective and the budget:
  --objective flops|params|latency   the cost the Pareto front is drawn over and the choice minimizes
                                     (default flops; latency times every candidate on the CPU)
  --max-flops 1.5G  --max-params 5M  --max-latency-ms 8   (or ratios of the baseline: --max-flops 0.5x)
                                     limits; a candidate over any of them is never chosen (suffixes k, M, G)

The choice (paper 000 V: put the border as close to the output as possible; dissertation 9.4.2: keep the
resolution close to the receptive field of the final layer), among the candidates within the budget and,
by default, no more expensive than the baseline in the objective:
  1. the fewest unproductive layers,  2. the lowest cost in the objective,
  3. the last layer's r_min closest to the input (|1 - r_min / i|),  4. the other costs,
  5. the fewest steps, then the name.
--prefer fit swaps 2 and 3 and lifts the baseline's cost as a limit: it buys accuracy with compute, after
dissertation D2 (moving downsampling later often costs FLOPs). The front marks both choices (C cost first,
F fit first). The chosen candidate is rewritten for real (`rewriter rewrite`'s invariants, on the weights)
and why it won is printed. A baseline with no unproductive layer that meets the budget is kept, and nothing
is written unless -o asks for it. With --validate K --data SPEC the baseline and the K best candidates are
trained as a study (OUT/, resumable) and the best accuracy within the budget wins; the summary says whether the trained
choice agrees with the training-free one.

Exit codes: 0 a choice was made (and written with -o), 1 a handled error, 3 no candidate met the budget
(the closest one is named).
"""

EPILOG = """\
examples:
  rewriter optimize cifar_vgg16 --input-size 32                       # best rewrite, training-free
  rewriter optimize resnet18 --input-size 64 --prefer fit             # the closest fit, at any cost
  rewriter optimize resnet18 --input-size 32 --max-flops 0.5x --format onnx -o r18.onnx
  rewriter optimize resnet50 --input-size 64 --max-flops 1.5G -o r50-64.pt --report r50-64.json --plot front.png
  rewriter optimize cifar_vgg16 --input-size 32 --objective params    # smallest model with no unproductive layer
  rewriter optimize mypkg.nets:build --input-size 96,128 --max-latency-ms 8 --dry-run
  rewriter optimize resnet18 --input-size 32 --data digits --validate 3 --epochs 10 --out opt/
  rewriter optimize resnet18 --input-size 32 --exclude truncate --verbose      # downsampling changes only
  rewriter optimize resnet18 --input-size 32 --search truncate.keep_blocks=0,1,2 --include decompose-kernels
  rewriter optimize resnet18 --input-size 32 --width-factor 0.5,0.75 --objective params

the search space per strategy is printed with --dry-run --verbose and written to the --report JSON.
"""

#: the parameters the optimizer's notes and its choice's reason may name (they carry no ``param`` of their own)
NOTE_PARAMS = ("prefer", "weights", "width_factors")


def amount(text: str) -> float | Ratio:
    """An argparse type: ``"1.5G"`` -> 1.5e9; ``"300M"``, ``"2k"``, ``"1e9"``, positive and finite; or a
    ratio of the baseline's cost, ``"0.5x"`` -> ``Ratio(0.5)``."""
    try:
        return parse_limit(text)
    except RewriterError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("limit: ")) from None


def parse_search(items: list[str]) -> dict[str, dict[str, list[Any]]]:
    """``["truncate.keep_blocks=0,1"]`` -> ``{"truncate": {"keep_blocks": [0, 1]}}`` (values read as YAML)."""
    values: dict[str, dict[str, list[Any]]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        strategy, dot, name = key.rpartition(".")
        if not sep or not dot or not strategy or not name or not text:
            raise UsageError(f"--search expects STRATEGY.PARAM=VALUE[,VALUE...], got {shown(item)}")
        where = f"--search {shown(key, 60)}"
        values.setdefault(strategy, {})[name] = [
            load_yaml(part, where=where, error=UsageError) for part in text.split(",")
        ]
    return values


def factors(text: str) -> list[float]:
    """An argparse type: ``"0.5,0.75"`` -> widths for scale-width, each in [1/64, 16]."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.5,0.75, got '{text}'") from None
    if not all(1 / 64 <= v <= 16 for v in values):
        raise argparse.ArgumentTypeError(f"expected factors from 1/64 to 16, got '{text}'")
    return values


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers, parents, "optimize", description=DESCRIPTION, epilog=EPILOG,
        help="search the strategies' compositions and choose the best rewrite for a resolution and budget",
    )  # fmt: skip
    add_model_arguments(parser)
    add_input_arguments(parser)
    _add_goal_arguments(parser)
    _add_space_arguments(parser)
    _add_validation_arguments(parser)
    add_accuracy_arguments(parser)
    _add_output_arguments(parser)
    parser.set_defaults(run=run)


def _add_goal_arguments(parser: argparse.ArgumentParser) -> None:
    goal = parser.add_argument_group("objective and budget")
    add = goal.add_argument
    add("--objective", choices=("flops", "params", "latency"), default="flops",
        help="the cost of the front and of the choice (default flops)")  # fmt: skip
    add("--prefer", choices=PREFERENCES, default="cost",
        help="cost (default): the cheapest with the fewest unproductive layers, never above the baseline; "
        "fit: the last layer's r_min closest to the input first, at any cost (buys accuracy with compute, "
        "after dissertation D2)")  # fmt: skip
    add(
        "--max-flops",
        type=amount,
        metavar="N",
        help="FLOPs budget per image, e.g. 1.5G (fvcore's multiply-adds) or 0.5x (of the baseline's)",
    )
    add("--max-params", type=amount, metavar="N", help="parameter budget, e.g. 5M or 0.25x")
    add(
        "--max-latency-ms",
        type=amount,
        metavar="MS",
        help="CPU latency budget at batch 1, e.g. 8 or 0.5x (times every candidate)",
    )
    add_latency_argument(goal, default=False, what="every candidate (batch 1; implied by --objective latency "
                         "and --max-latency-ms)")  # fmt: skip


def _add_space_arguments(parser: argparse.ArgumentParser) -> None:
    space = parser.add_argument_group(
        "the search space (default: every strategy that declares search values)"
    )
    add = space.add_argument
    add("--include", action="append", default=[], metavar="STRATEGY",
        help="also search a strategy that declares none (its defaults and Literal choices)")  # fmt: skip
    add("--exclude", action="append", default=[], metavar="STRATEGY", help="never search it")
    add("--search", action="append", default=[], metavar="STRATEGY.PARAM=V1,V2",
        help="the values to try for a parameter, over its declaration (repeatable)")  # fmt: skip
    add("--width-factor", type=factors, default=[], metavar="F[,F...]",
        help="widths to try with scale-width, e.g. 0.5,0.75")  # fmt: skip
    add("--max-steps", type=integer(0, 64), metavar="N", help="compose at most N strategies")
    add("--max-candidates", type=integer(1, 1_000_000), default=20_000, metavar="N",
        help="refuse a larger search space (default 20000)")  # fmt: skip
    add("--verify", choices=("chosen", "front", "all"), default="chosen",
        help="which candidates are rewritten for real with every invariant checked (default chosen)")  # fmt: skip


def _add_validation_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("validation on data (--validate K --data SPEC --out DIR)")
    add = data.add_argument
    add("--data", type=data_spec, metavar="SPEC", help=DATA_HELP)
    add("--download", action="store_true", help="fetch CIFAR into DIR if missing (needs internet)")
    add("--validate", type=integer(1, 64), metavar="K",
        help="train the baseline and the K best candidates to the end; the best validation accuracy wins")  # fmt: skip
    add("--epochs", type=integer(1, 100_000), default=10, metavar="N", help="epochs per model (default 10)")
    add("--seeds", type=integer(1, 1000), default=1, metavar="N", help="seeds per model (default 1)")
    add("--lr", type=real(0, 10, low_open=True), default=0.1, help="learning rate (default 0.1, paper 000)")
    add("--batch-size", type=integer(1, MAX_BATCH), default=64, metavar="N", help="default 64")
    add("--max-batches", type=integer(1), metavar="N", help="batches per epoch, for quick runs")
    add_precision_argument(data)
    add(
        "--workers",
        type=integer(1, 1024),
        default=1,
        metavar="N",
        help="models trained in parallel processes",
    )
    add("--out", metavar="DIR", help="checkpoints and trained finalists (resumed if it holds this search)")


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="FILE.pt", help="write the chosen rewritten model here")
    add_format_argument(out, help="as `rewriter rewrite`")
    out.add_argument("--force", action="store_true", help="overwrite existing output files")
    out.add_argument(
        "--report", metavar="FILE.json", help="write every candidate, the front and the choice as JSON"
    )
    out.add_argument("--json", action="store_true", help="print that JSON instead of tables")
    out.add_argument("--plot", metavar="FILE.png", help="plot the candidates and the Pareto front")
    out.add_argument("--dry-run", action="store_true", help="search and choose; rewrite and write nothing")
    out.add_argument("--verbose", action="store_true", help="every candidate, and why each dropped one was")


def _check_outputs(args: argparse.Namespace) -> None:
    if args.validate is not None and (not args.data or not args.out):
        raise UsageError("--validate K needs --data SPEC (what to train on) and --out DIR (the study folder)")
    check_accuracy_arguments(args)
    if args.dry_run:
        return
    check_outputs(args, {"-o": args.output, "--report": args.report, "--plot": args.plot})
    if args.output:
        check_format(args.output, args.format, strict=True)


def _load(args: argparse.Namespace, request: ModelRequest):
    if not args.data:
        return (*request.load(), None)
    data = load_data(args.data, args.input_size, download=args.download)
    return (*(request.load() if request.num_classes is not None else model_for_data(request, data)), data)


def run(args: argparse.Namespace) -> int:
    size = args.input_size
    budget = {flag: getattr(args, flag) for flag in ("max_flops", "max_params", "max_latency_ms")}
    search = parse_search(args.search)
    args.format = output_format(args.output, args.format)
    _check_outputs(args)
    request = request_of(args)
    model, spec, data = _load(args, request)
    args.num_classes = args.num_classes or spec.num_classes  # the recipe records the head it was built with
    if not request.is_file:  # a model file fixes its head; one built by name is rebuilt with this one
        request = dataclasses.replace(request, num_classes=args.num_classes)
    pretrained = spec.weights is not None or spec.kind == "file"
    status(f"searching the rewrites of {args.model} at {size[0]}x{size[1]} ...")
    with _progress() as progress:
        result = _search(args, model, size, budget, search, pretrained, data, progress)
    if wants_search(args) and result.exit_code == 0:
        return run_search(args, request, result, data, pretrained)
    validation = None
    if args.validate is not None and result.exit_code == 0:
        validation = validate(
            result, request, data=args.data, k=args.validate, epochs=args.epochs, seeds=args.seeds,
            out=args.out, lr=args.lr, batch_size=args.batch_size, max_batches=args.max_batches,
            workers=args.workers, val_fraction=args.val_fraction, device=args.device, say=status,
            precision=args.precision,
        )  # fmt: skip
    final = _final(result, validation, model, args)
    _report(result, validation, final, args)
    if not args.dry_run and result.exit_code == 0:
        _save_model(result, final, spec, args)
    return result.exit_code


@contextlib.contextmanager
def _progress():
    """A progress bar on stderr (candidates so far) when stderr is a terminal."""
    from .._progress import progress_bar

    bar = progress_bar(desc="candidates", unit="cand", leave=False)
    try:
        yield lambda candidate: bar.update()
    finally:
        bar.close()


def _search(args, model, size, budget, search, pretrained, data, progress) -> OptimizeResult:
    return optimize(
        model, input_size=size, objective=args.objective, prefer=args.prefer, **budget, latency=args.latency,
        include=args.include, exclude=args.exclude, search=search, width_factors=args.width_factor,
        max_steps=args.max_steps, max_candidates=args.max_candidates, num_classes=args.num_classes,
        in_channels=args.in_channels, leaf_modules=args.leaf_module, pretrained=pretrained, verify=args.verify,
        data=data, dry_run=args.dry_run, name=args.model, progress=progress,
    )  # fmt: skip


def _final(result: OptimizeResult, validation, model, args):
    """The rewrite to save: the training-free choice, or the trained choice when a validation picked another."""
    if validation is None or validation.trained_choice in (None, validation.heuristic_choice) or args.dry_run:
        return result.rewrite
    candidate = result.candidates[validation.trained_choice]
    recipe = Recipe(candidate.steps, result.input_size, result.num_classes, source="--validate")
    return rewrite(model, recipe, in_channels=args.in_channels, leaf_modules=args.leaf_module, name=args.model,
                   latency=args.latency)  # fmt: skip


def _report(result: OptimizeResult, validation, final, args: argparse.Namespace) -> None:
    payload = result.to_json()
    if validation is not None:
        payload["validation"] = validation.to_json()
    if not args.dry_run:
        write_report(args, payload)
        if args.plot:
            plot_front(result, args.plot)
            status(f"wrote {args.plot}")
    if args.json:
        print_json(payload)
        return
    print(format_front(result, verbose=args.verbose))
    print()
    if args.verbose or args.dry_run:
        for choices in result.space:
            tried = ", ".join(f"{k} in {list(v)}" for k, v in choices.values.items()) or "its defaults"
            print(
                f"searched {choices.name} (order {choices.order}): {len(choices.configs)} configurations: {tried}"
            )
        print()
    for note in result.notes:  # written for Python callers: the parameters they name, as this command's flags
        status(f"note: {in_flags(note, NOTE_PARAMS, args.command_parser)}")
    status_line = {"chosen": "chosen", "baseline": "kept", "over-budget": "no choice"}[result.choice.status]
    print(f"{status_line}: {in_flags(result.choice.reason, NOTE_PARAMS, args.command_parser)}")
    if validation is not None:
        print(f"\nvalidation ({validation.out}): {validation.summary}")
    if final is not None and result.choice.status == "chosen":
        print()
        print("\n\n".join(plan.format() for plan in final.plans))
        print()
        print(final.report.format())
    if result.recipe is not None and result.choice.status == "chosen":
        print("\nrecipe:\n" + yaml.safe_dump(result.recipe.to_dict(), sort_keys=False).rstrip())
    if args.dry_run:
        print("\ndry run: nothing rewritten or written")


def _save_model(result: OptimizeResult, final, spec, args: argparse.Namespace) -> None:
    if not args.output:
        if result.choice.status == "chosen":
            status("not saved: give -o FILE.pt to write the model")
        return
    if args.format == "pt":
        save(
            final.model, args.output, spec=spec, recipe=final.recipe, input_size=result.input_size,
            in_channels=args.in_channels, leaf_modules=args.leaf_module, report=final.report.to_json(),
            overwrite=args.force,
        )  # fmt: skip
    else:
        reasons = [getattr(type(s), "export_refusal", None) for s in final.recipe.strategies()]
        check_exportable(args.format, reasons=reasons)
        exported = export(
            final.model, args.output, args.format, input_size=result.input_size, in_channels=args.in_channels,
            overwrite=args.force, latency=args.latency,
        )  # fmt: skip
        status(exported.format())
    status(f"wrote {args.output}")
