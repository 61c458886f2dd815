"""``rewriter models``: the names MODEL accepts without an import spec or a file (and timm's, with --timm)."""

from __future__ import annotations

import argparse
import fnmatch

from ..models import zoo
from ..models.sources import torchvision_models
from ..models.timm_source import PREFIX, timm_models
from ._common import print_json
from ._parser import command_parser


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "models",
        help="list the built-in paper architectures and torchvision's classification models (or timm's)",
        description="List the model names MODEL accepts. Anything else is timm:NAME, package.module:callable "
        "or a file.",
        epilog="examples:\n  rewriter models 'cifar_*'\n  rewriter models --timm 'resnet*'   # MODEL is then timm:NAME",
    )
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'cifar_*'")
    parser.add_argument(
        "--timm",
        action="store_true",
        help="list timm's models instead (needs timm: pip install 'rewriter[timm]')",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print {builtin: [...], torchvision: [...]} (with --timm: {timm: [...]})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.timm:
        names = timm_models(args.pattern)
        if args.json:
            print_json({"timm": names})
            return 0
        print(f"timm models ({len(names)}; MODEL is {PREFIX}NAME, random weights unless pretrained=true):")
        print("  " + ", ".join(names))
        return 0
    builtin = zoo.list_models(args.pattern)
    vision = [name for name in torchvision_models() if fnmatch.fnmatchcase(name, args.pattern)]
    if args.json:
        print_json({"builtin": builtin, "torchvision": vision})
        return 0
    width = max((len(n) for n in builtin), default=0)
    print("built-in architectures from the papers (10 classes by default):")
    for name in builtin:
        print(f"  {name:<{width}}  {zoo.get_model_doc(name)}")
    print(f"\ntorchvision classification models ({len(vision)}, 1000 classes by default, random weights):")
    print("  " + ", ".join(vision))
    print(f"\ntimm's models: rewriter models --timm [FILTER], then MODEL is {PREFIX}NAME")
    return 0
