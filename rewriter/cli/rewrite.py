"""``rewriter rewrite``: apply strategies or a recipe, verify, report before/after, and save the model."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from .._errors import RecipeError
from .._files import check_target, write_json
from ..engine.pipeline import rewrite
from ..engine.recipe import Recipe
from ..engine.registry import list_strategies
from ..engine.saving import save
from ..lab.data import load_data
from ._common import (
    DATA_HELP,
    add_input_arguments,
    add_model_arguments,
    command_parser,
    load_from_args,
    model_for_data,
    parse_size,
    print_json,
    resolve_input_size,
    status,
)

DESCRIPTION = """\
Rewrite a model for your input size without training it: each step plans its edits (printed with the
reasons), applies them to a copy, and is verified (the model runs, kept weights are bit-identical, a
truncated prefix computes the same activations). The report compares params, FLOPs (fvcore), b_min,
unproductive layers and CPU latency before and after every step. Nothing is written if a step fails.
"""

EPILOG = """\
examples:
  rewriter rewrite resnet18 --input-size 32 --num-classes 10 --strategy truncate -o resnet18-trunc.pt
  rewriter rewrite resnet18 --weights base.pth --input-size 32 --recipe trim.yaml -o out.pt --report out.json
  rewriter rewrite cifar_vgg16 --input-size 32 --strategy truncate --dry-run
  rewriter rewrite resnet34 --input-size 32 --strategy remove-stem-downsampling \
      -p remove-stem-downsampling.mode=cifar-stem
  rewriter rewrite resnet18 --input-size 32 --strategy truncate -p truncate.rule=output -p truncate.keep_blocks=1
  rewriter rewrite vgg16.pt --data cifar10:~/data/cifar10 --strategy scale-width -o vgg16-w.pt
  rewriter rewrite vgg16.pt --strategy scale-width -p scale-width.factor=0.5 -o vgg16-half.pt

a recipe (YAML):
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
    what = parser.add_argument_group("what to do (one of)")
    names = ", ".join(list_strategies())
    what.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="NAME",
        help=f"a strategy with default parameters, repeatable, applied in order ({names})",
    )
    what.add_argument("--recipe", metavar="FILE.yaml", help="a recipe of steps with parameters")
    data = parser.add_argument_group(
        "data (for strategies that measure or train the model: scale-width, skip-irrelevant-layers)"
    )
    data.add_argument("--data", metavar="SPEC", help=DATA_HELP)
    data.add_argument(
        "--download", action="store_true", help="fetch CIFAR into DIR if missing (needs internet)"
    )
    what.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="STRATEGY.KEY=VALUE",
        help="set a parameter of every step of that strategy, over the recipe (repeatable)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="FILE.pt", help="write the rewritten model here")
    out.add_argument(
        "--format",
        choices=("pt", "pt2"),
        default="pt",
        help="pt: spec + recipe + state dict, reloads without unpickling (default); "
        "pt2: a torch.export program for deployment without rewriter",
    )
    out.add_argument("--force", action="store_true", help="overwrite an existing output file")
    out.add_argument("--report", metavar="FILE.json", help="write the before/after report as JSON")
    out.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    out.add_argument(
        "--dry-run", action="store_true", help="print the plan of every step; write and measure nothing"
    )
    out.add_argument("--no-latency", action="store_true", help="skip the CPU latency measurement")
    parser.set_defaults(run=run)


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["truncate.rule=output"]`` -> ``{"truncate": {"rule": "output"}}`` (values read as YAML)."""
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        strategy, dot, name = key.rpartition(".")
        if not sep or not dot or not strategy or not name:
            raise RecipeError(f"--param expects STRATEGY.KEY=VALUE, got '{item}'")
        params.setdefault(strategy, {})[name] = yaml.safe_load(value) if value else None
    return params


def build_recipe(args: argparse.Namespace) -> Recipe:
    if bool(args.strategy) == bool(args.recipe):
        raise RecipeError("give either --strategy NAME (repeatable) or --recipe FILE.yaml")
    recipe = Recipe.from_yaml(args.recipe) if args.recipe else Recipe.from_strategies(args.strategy)
    recipe = recipe.with_overrides(
        input_size=parse_size(args.input_size) if args.input_size else None,
        num_classes=args.num_classes,
        params=parse_params(args.param),
    )
    recipe.strategies()  # validate before any expensive work
    return recipe


def run(args: argparse.Namespace) -> int:
    recipe = build_recipe(args)
    if not args.dry_run:  # refuse bad output paths before any work is done
        if args.output:
            check_target(args.output, args.force)
        if args.report:
            check_target(args.report, force=True)
    if recipe.input_size is None:  # a model file knows the size it was made for
        recipe = recipe.with_overrides(input_size=resolve_input_size(args))
    data = None
    if args.data:
        data = load_data(args.data, recipe.input_size, download=args.download)
    if data is not None and recipe.num_classes is None:  # a model built by name gets the data's classes
        model, spec = model_for_data(args, data)
    else:
        model, spec = load_from_args(args)
    result = rewrite(
        model,
        recipe,
        data=data,
        in_channels=args.in_channels,
        leaf_modules=args.leaf_module,
        pretrained=spec.weights is not None or spec.kind == "file",
        name=args.model,
        measure_cost=not args.dry_run,
        latency=not args.no_latency,
        progress=status,
    )
    if args.dry_run:
        print("\n\n".join(plan.format() for plan in result.plans))
        print("\ndry run: nothing measured or written")
        return 0
    if args.report:
        write_json(args.report, result.report.to_json())
        status(f"wrote {args.report}")
    if args.output:
        save(
            result.model,
            args.output,
            spec=spec,
            recipe=result.recipe,
            input_size=result.recipe.input_size,
            in_channels=args.in_channels,
            leaf_modules=args.leaf_module,
            report=result.report.to_json(),
            fmt=args.format,
            force=args.force,
        )
        status(f"wrote {args.output}")
    if args.json:
        print_json(result.report.to_json())
    else:
        print("\n\n".join(plan.format() for plan in result.plans))
        print()
        print(result.report.format())
        if not args.output:
            print("\nnot saved: give -o FILE.pt to write the model")
    return 0
