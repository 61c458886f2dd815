"""``rewriter models``: the names MODEL accepts without an import spec or a file."""

from __future__ import annotations

import argparse
import fnmatch

from ..models import zoo
from ..models.sources import torchvision_models
from ._common import print_json
from ._parser import command_parser


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "models",
        help="list the built-in paper architectures and torchvision's classification models",
        description="List the model names MODEL accepts. Anything else is package.module:callable or a file.",
    )
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'cifar_*'")
    parser.add_argument("--json", action="store_true", help="print {builtin: [...], torchvision: [...]}")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
    return 0
