"""``rewriter strategies``: every registered strategy with its parameters."""

from __future__ import annotations

import argparse
import dataclasses

from ..engine.registry import get_strategy, list_strategies
from ..engine.strategy import parameters, summary
from ._common import print_json
from ._parser import command_parser


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "strategies",
        help="list the rewrite strategies and their parameters",
        description="List the registered strategies (built-in and from the 'rewriter.strategies' entry points).",
    )
    parser.add_argument("--json", action="store_true", help="print {name: {summary, parameters}}")
    parser.set_defaults(run=run)


def _default(value: object) -> object:
    return "required" if value is dataclasses.MISSING else value


def run(args: argparse.Namespace) -> int:
    catalogue = {}
    for name in list_strategies():
        cls = get_strategy(name)
        catalogue[name] = {
            "summary": summary(cls),
            "parameters": [
                {
                    "name": p.name,
                    "type": p.type_text,
                    "default": _default(p.default),
                    "help": p.help,
                    "search": None if p.search is None else list(p.search),
                }
                for p in parameters(cls)
            ],
        }
    if args.json:
        print_json(catalogue)
        return 0
    for name, entry in catalogue.items():
        print(f"{name}: {entry['summary']}")
        for p in entry["parameters"]:
            print(f"    {p['name']}: {p['type']} = {p['default']!r}")
            if p["help"]:
                print(f"        {p['help']}")
            if p["search"]:
                print(f"        rewriter optimize tries: {', '.join(map(repr, p['search']))}")
        print()
    return 0
