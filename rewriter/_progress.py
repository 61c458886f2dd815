"""Progress bars: tqdm on stderr, shown only where someone watches (stderr is a terminal) and not turned off.

Every bar of the package is made here, so one switch (the command line's ``--quiet`` and ``--log-json``)
keeps a pipeline's log free of them; a library caller's ``progress=False`` still turns off a single bar.
"""

from __future__ import annotations

import sys
from typing import Any

_enabled: bool | None = None  # None: when stderr is a terminal


def set_progress(enabled: bool | None) -> None:
    """Show bars (True), never (False), or when stderr is a terminal (None, the default)."""
    global _enabled
    _enabled = enabled


def progress_shown() -> bool:
    """Whether bars are shown now."""
    return _enabled if _enabled is not None else sys.stderr.isatty()


def progress_bar(iterable: Any = None, *, show: bool = True, **options: Any):
    """A ``tqdm`` bar (``options`` as tqdm's), disabled unless ``show`` and bars are shown."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not (show and progress_shown()), **options)
