"""``rewriter rewrite``: apply strategies or a recipe, verify, report before/after, and save the model."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .._errors import RecipeError, UsageError
from .._untrusted import load_yaml, shown
from ..engine.exporting import check_exportable, check_format, export
from ..engine.pipeline import Result, rewrite
from ..engine.recipe import Recipe
from ..engine.registry import list_strategies
from ..engine.saving import save
from ..lab.data import load_data
from ..lab.model_request import ModelRequest, model_for_data
from ..models.sources import ModelSpec
from ._common import check_outputs, input_size_of, print_json, request_of, status, write_report
from ._conventions import add_format_argument, add_latency_argument, output_format
from ._parser import DATA_HELP, add_input_arguments, add_model_arguments, command_parser, data_spec

DESCRIPTION = """\
Rewrite a model for your input size without training it: each step plans its edits (printed with the
reasons), applies them to a copy, and is verified (the model runs, kept weights are bit-identical, a
truncated prefix computes the same activations). The report compares params, FLOPs (fvcore), b_min,
unproductive layers and CPU latency before and after every step. Nothing is written if a step fails.
"""

EPILOG = """\
examples:
  rewriter rewrite resnet18 --input-size 32 --num-classes 10 --strategy truncate -o resnet18-trunc.pt
  rewriter rewrite resnet18 --weights base.pth --input-size 32 \\
      --recipe examples/recipes/remove-stem-downsampling-then-truncate.yaml -o out.pt --report out.json
  rewriter rewrite cifar_vgg16 --input-size 32 --strategy truncate --dry-run
  rewriter rewrite resnet34 --input-size 32 --strategy remove-stem-downsampling \\
      -p remove-stem-downsampling.mode=cifar-stem
  rewriter rewrite resnet18 --input-size 32 --strategy truncate -p truncate.rule=output -p truncate.keep_blocks=1
  rewriter rewrite vgg16.pt --data cifar10:~/data/cifar10 --strategy scale-width -o vgg16-w.pt
  rewriter rewrite vgg16.pt --strategy scale-width -p scale-width.factor=0.5 -o vgg16-half.pt
  rewriter rewrite cifar_vgg16 --input-size 32 --strategy truncate --format onnx -o vgg16-trunc.onnx

a recipe (YAML; its num_classes sizes the baseline's head too, --num-classes wins):
  input_size: 32
  num_classes: 10
  steps:
    - remove-stem-downsampling: {}
    - truncate: {rule: output}

`rewriter strategies` lists the strategies and their parameters.
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "rewrite",
        help="apply strategies or a recipe to a model and save the result",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_model_arguments(parser)
    add_input_arguments(
        parser, required=False, note="; overrides a recipe's input_size (default: a model file's own)"
    )
    _add_steps(parser)
    data = parser.add_argument_group(
        "data (for strategies that measure or train the model: scale-width, skip-irrelevant-layers)"
    )
    data.add_argument("--data", type=data_spec, metavar="SPEC", help=DATA_HELP)
    data.add_argument(
        "--download", action="store_true", help="fetch CIFAR into DIR if missing (needs internet)"
    )
    _add_outputs(parser)
    parser.set_defaults(run=run)


def _add_steps(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to do (one of)")
    what.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="NAME",
        help=f"a strategy with default parameters, repeatable, applied in order ({', '.join(list_strategies())})",
    )
    what.add_argument("--recipe", metavar="FILE.yaml", help="a recipe of steps with parameters")
    what.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="STRATEGY.KEY=VALUE",
        help="set a parameter of every step of that strategy, over the recipe (repeatable)",
    )


def _add_outputs(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="FILE", help="write the rewritten model here")
    add_format_argument(
        out,
        help="pt: spec + recipe + state dict, reloads without unpickling; pt2: a torch.export program, onnx: "
        "an ONNX model, both for deployment without rewriter (a dynamic batch dimension, checked against the "
        "model)",
    )
    out.add_argument("--force", action="store_true", help="overwrite existing output files")
    out.add_argument("--report", metavar="FILE.json", help="write the before/after report as JSON")
    out.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    out.add_argument(
        "--dry-run", action="store_true", help="print the plan of every step; write and measure nothing"
    )
    add_latency_argument(out, default=True, what="the model before and after every step (and an export)")


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["truncate.rule=output"]`` -> ``{"truncate": {"rule": "output"}}`` (values read as YAML)."""
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        strategy, dot, name = key.rpartition(".")
        if not sep or not dot or not strategy or not name:
            raise UsageError(f"--param expects STRATEGY.KEY=VALUE, got '{item}'")
        where = f"--param {shown(key, 60)}"
        params.setdefault(strategy, {})[name] = (
            load_yaml(value, where=where, error=UsageError) if value else None
        )
    return params


def build_recipe(args: argparse.Namespace) -> Recipe:
    if bool(args.strategy) == bool(args.recipe):
        raise UsageError("give either --strategy NAME (repeatable) or --recipe FILE.yaml")
    # a recipe of `steps: []` is the model unchanged, as in `study`
    given = (
        Recipe.from_yaml(args.recipe, allow_empty=True)
        if args.recipe
        else Recipe.from_strategies(args.strategy, source="--strategy")
    )
    params = parse_params(args.param)
    try:
        recipe = given.with_overrides(input_size=args.input_size, num_classes=args.num_classes, params=params)
        recipe.strategies()  # validate before any expensive work
    except RecipeError as err:
        if args.recipe and not params:
            raise  # the file's fault: invalid input
        raise UsageError(
            str(err), param=getattr(err, "param", None)
        ) from err  # a fault of --strategy or --param: a usage error
    return recipe


def run(args: argparse.Namespace) -> int:
    recipe = build_recipe(args)
    args.format = output_format(args.output, args.format)
    if not args.dry_run:
        _check_before_work(args, recipe)
    request = request_of(args)
    if recipe.input_size is None:  # a model file knows the size it was made for
        recipe = recipe.with_overrides(input_size=input_size_of(args, request))
    data = load_data(args.data, recipe.input_size, download=args.download) if args.data else None
    model, spec = _baseline(request, recipe, data)
    result = rewrite(
        model,
        recipe,
        data=data,
        in_channels=args.in_channels,
        leaf_modules=args.leaf_module,
        pretrained=spec.weights is not None or spec.kind == "file",
        name=args.model,
        measure_cost=not args.dry_run,
        latency=args.latency,
        progress=status,
    )
    if args.dry_run:
        print("\n\n".join(plan.format() for plan in result.plans))
        print("\ndry run: nothing measured or written")
        return 0
    report = result.report.to_json()
    if args.output:
        report["export"] = _write_model(args, result, spec)
    write_report(args, report)
    _print_result(args, result, report)
    return 0


def _check_before_work(args: argparse.Namespace, recipe: Recipe) -> None:
    """Refuse unwritable outputs, a name that does not fit the format, and an export that cannot work."""
    check_outputs(args, {"-o": args.output, "--report": args.report})
    if args.output:
        check_format(args.output, args.format, strict=True)
        refusals = [getattr(type(s), "export_refusal", None) for s in recipe.strategies()]
        check_exportable(args.format, reasons=refusals)


def _baseline(request: ModelRequest, recipe: Recipe, data: Any) -> tuple[Any, ModelSpec]:
    """The model to rewrite; built by name, its head has the recipe's num_classes (--num-classes wins),
    else the data's classes."""
    classes = request.num_classes or (None if request.is_file else recipe.num_classes)
    request = dataclasses.replace(request, num_classes=classes, input_size=recipe.input_size)
    if data is not None and request.num_classes is None:
        return model_for_data(request, data)
    return request.load()


def _write_model(args: argparse.Namespace, result: Result, spec: ModelSpec) -> dict[str, Any] | None:
    """Save (pt) or export (pt2, onnx) the rewritten model; the export's check for the report."""
    checked = None
    if args.format == "pt":
        save(
            result.model, args.output, spec=spec, recipe=result.recipe, input_size=result.recipe.input_size,
            in_channels=args.in_channels, leaf_modules=args.leaf_module, report=result.report.to_json(),
            overwrite=args.force,
        )  # fmt: skip
    else:
        exported = export(
            result.model, args.output, args.format, input_size=result.recipe.input_size,
            in_channels=args.in_channels, overwrite=args.force, latency=args.latency,
        )  # fmt: skip
        status(exported.format())
        checked = exported.to_json()
    status(f"wrote {args.output}")
    return checked


def _print_result(args: argparse.Namespace, result: Result, report: dict[str, Any]) -> None:
    if args.json:
        print_json(report)
        return
    print(
        "\n\n".join(plan.format() for plan in result.plans)
        or "the recipe has no steps: the model is unchanged"
    )
    print()
    print(result.report.format(skip_notes=[note for plan in result.plans for note in plan.notes]))
    if not args.output:
        print("\nnot saved: give -o FILE.pt to write the model")
