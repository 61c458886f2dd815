"""Progress bars: tqdm on stderr, each shown as its caller asks, unless the command line turned them off.

Every bar of the package is made here, so one switch keeps a pipeline's log free of them: the command line
shows bars only when stderr is a terminal, and none with ``--quiet`` or ``--log-json``. A library caller
(a notebook, whose stderr is no terminal) gets the bars it asks for with ``progress=True``.
"""

from __future__ import annotations

from typing import Any

_enabled: bool | None = None  # None: as each caller asks (the library's default)


def set_progress(enabled: bool | None) -> None:
    """Allow bars (True), never show them (False), or leave it to each caller (None, the default)."""
    global _enabled
    _enabled = enabled


def progress_shown() -> bool:
    """Whether bars are allowed now."""
    return _enabled is not False


def progress_bar(iterable: Any = None, *, show: bool = True, **options: Any):
    """A ``tqdm`` bar (``options`` as tqdm's), disabled unless ``show`` and bars are allowed."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not (show and progress_shown()), **options)
