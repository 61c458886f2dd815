"""Where the command line's own lines go: status, notes, warnings and errors on stderr, as text or (with
``--log-json``) one JSON object a line; ``--quiet`` keeps only warnings and errors. stdout is left to the
command's result (tables, ``--json``)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Literal

from .._progress import set_progress

Level = Literal["info", "note", "warning", "error"]

_quiet = False
_as_json = False
_command = ""


@contextlib.contextmanager
def logging_to_stderr(*, quiet: bool, as_json: bool, command: str) -> Iterator[None]:
    """Within: lines as asked, and progress bars only when stderr is a terminal and neither flag is set;
    restored after, so that a caller of ``main`` in-process keeps its own settings."""
    global _quiet, _as_json, _command
    saved = (_quiet, _as_json, _command)
    _quiet, _as_json, _command = quiet, as_json, command
    set_progress(False if quiet or as_json else sys.stderr.isatty())
    try:
        yield
    finally:
        _quiet, _as_json, _command = saved
        set_progress(None)


def log(message: str, level: Level | None = None) -> None:
    """One line on stderr; the level is read from a ``note:``/``warning:``/``error:`` prefix if not given."""
    if level is None:
        prefix, sep, rest = message.partition(": ")
        level, message = (
            (prefix, rest) if sep and prefix in ("note", "warning", "error") else ("info", message)
        )
    if _quiet and level in ("info", "note"):
        return
    if _as_json:
        record = {"time": round(time.time(), 3), "command": _command, "level": level, "message": message}
        print(json.dumps(record), file=sys.stderr)
    else:
        print(message if level == "info" else f"{level}: {message}", file=sys.stderr)
