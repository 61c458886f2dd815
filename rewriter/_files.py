"""Writing outputs safely: refuse a target that must not be replaced, and never leave a half-written file
(write to a temporary sibling, then rename)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._errors import ModelFileError


def check_target(path: str | os.PathLike, force: bool) -> None:
    """Refuse an output path before any work is done: an existing file without ``force``, a folder, no folder."""
    target = Path(path)
    if target.is_dir():
        raise ModelFileError(f"{target} is a folder; give a file name")
    if target.exists() and not force:
        raise ModelFileError(f"{target} exists; pass --force (force=True) to overwrite it")
    if not target.parent.exists():
        raise ModelFileError(f"cannot write {target}: folder {target.parent} does not exist")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    If the body raises, the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    if target.is_dir():
        raise ModelFileError(f"cannot write {target}: it is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise ModelFileError(f"cannot write {target}: {err.strerror or err}") from err
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, target)
    except OSError as err:
        raise ModelFileError(f"cannot write {target}: {err.strerror or err}") from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
