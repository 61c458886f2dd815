"""The ``rewriter`` command line: one module per subcommand, each only calling the library.

``main(argv) -> int`` returns the exit code: 0 success, 1 a handled error (one line on stderr; ``--debug``
shows the traceback), 2 a usage error (argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._errors import RewriterError
from .._version import __version__
from . import analyze, compare, models, probe, relevance, rewrite, saturation, strategies, study, train

SUBCOMMANDS = (analyze, rewrite, train, saturation, probe, relevance, study, compare, strategies, models)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser = argparse.ArgumentParser(
        prog="rewriter",
        description="Analyze the receptive fields of a CNN for your input size and rewrite it before training; "
        "train it, and measure saturation and probes to check the prediction.",
        epilog="Run `rewriter COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"rewriter {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(subparsers, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except RewriterError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
