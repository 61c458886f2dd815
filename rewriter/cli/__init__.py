"""The ``rewriter`` command line: one module per subcommand, each only calling the library.

``main(argv) -> int`` returns the exit code: 0 success, 1 a handled error (one line on stderr; ``--debug``
shows the traceback), 2 a usage error (a bad or missing option: one line), 130 interrupted. Nothing heavy
is imported before ``main`` runs, so an interrupt during start-up is handled like any other.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterator, Sequence

from .._errors import RewriterError, RewriterWarning, UsageError
from .._text import one_line
from .._version import __version__
from ._log import log, logging_to_stderr

SUBCOMMANDS = (
    "optimize", "analyze", "sweep", "rewrite", "train", "saturation", "probe", "relevance", "study", "compare",
    "strategies", "models", "export", "evaluate",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from ._parser import Parser

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    common.add_argument(
        "--quiet", action="store_true", help="no progress bars and no status lines (warnings and errors stay)"
    )
    common.add_argument(
        "--log-json",
        action="store_true",
        help="stderr as JSON lines (time, command, level, message), no bars",
    )
    common.add_argument(
        "--allow-large",
        action="store_true",
        help="lift the bounds on input sizes (2048 px per side) and image channels (64)",
    )
    parser = Parser(
        prog="rewriter",
        description="Analyze the receptive fields of a CNN for your input size and rewrite it before training; "
        "train it, and measure saturation and probes to check the prediction.",
        epilog="Run `rewriter COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"rewriter {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--version"]:  # before the parser, whose subcommands import torch (seconds)
        print(f"rewriter {__version__}")
        return 0
    from .._files import protected_inputs
    from ..analysis.sizes import unbounded
    from ._common import inputs_of

    # the log is set up before parsing, so that a usage error is a JSON line too with --log-json
    logging = logging_to_stderr(quiet="--quiet" in argv, as_json="--log-json" in argv, command=_command(argv))
    with unbounded() if "--allow-large" in argv else contextlib.nullcontext(), logging:
        args, unknown = build_parser().parse_known_args(argv)  # sizes are checked while parsing
        if unknown:  # refused by the subcommand's parser: its --help is the page to read
            args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        try:
            with _warnings_as_lines(), protected_inputs(inputs_of(args)):
                return args.run(args)
        except RewriterError as err:
            if args.debug:
                raise
            log(one_line(err), "error")
            return 2 if isinstance(err, UsageError) else 1


def _command(argv: list[str]) -> str:
    return next((a for a in argv if a in SUBCOMMANDS), "")


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Our warnings as ``warning: ...`` lines on stderr (not raised, whatever the filters say)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", RewriterWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if issubclass(category, RewriterWarning):
                log(str(message), "warning")
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


if __name__ == "__main__":
    sys.exit(main())
