"""Files handled safely: one guard for every file the tool writes, atomic writes, claims on outputs, and
inputs read only when they are regular files (``check_regular_file``, ``read_text_input``).

The guard (``check_target``) refuses, before any work is done, an output that would replace a file
without ``force``, a folder, a path in a folder that does not exist, and always a path that is one of the
command's inputs (resolved paths, symlinks followed, hard links compared by inode). ``protected_inputs``
declares the inputs of a command for everything that writes while it runs: ``atomic_path``, the one
primitive every writer goes through, refuses them too, so an input is never replaced even by a write
that was not checked in advance. Writes go to a temporary sibling named ``.NAME.PID-XXXXXXXX.tmp`` that
replaces the target in one rename; stale ones of that naming (their process is gone) are removed on the
next write to the same target.

Two commands that write the same file must not both run: inside ``claims()`` (every CLI command runs in
one) ``check_target`` also claims its path by creating ``.NAME.claim`` exclusively (it holds the PID), so
a second claimant is refused at the start with the first one's PID; the claims go when the block ends, and
one whose process is gone is taken over. The final rename of a write that may not overwrite never replaces
a file that appeared meanwhile (it is a hard link, which fails on an existing name).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._errors import ModelFileError

PathLike = str | os.PathLike

_INPUTS: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("rewriter_inputs", default=())
_CLAIMS: contextvars.ContextVar[dict[Path, Path] | None] = contextvars.ContextVar(
    "rewriter_claims", default=None
)
_LEGACY_STALE_S = 3600  # temporary files of the naming before the PID was in it: stale after an hour


@contextlib.contextmanager
def protected_inputs(paths: Iterable[PathLike | None]) -> Iterator[None]:
    """While the block runs, no write may go to one of ``paths`` (``None`` and missing files are skipped)."""
    found = tuple(Path(p) for p in paths if p is not None and os.path.exists(p))
    token = _INPUTS.set(_INPUTS.get() + found)
    try:
        yield
    finally:
        _INPUTS.reset(token)


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: equal resolved paths (symlinks followed) or inodes."""
    first, second = Path(a), Path(b)
    if first.resolve() == second.resolve():
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def input_clash(path: PathLike, inputs: Iterable[PathLike | None] = ()) -> Path | None:
    """The input (given, or declared with ``protected_inputs``) that ``path`` would replace, or None."""
    for source in (*(Path(p) for p in inputs if p is not None), *_INPUTS.get()):
        if same_file(path, source):
            return source
    return None


def check_target(
    path: PathLike, force: bool = False, *, inputs: Iterable[PathLike | None] = (), what: str = "output"
) -> Path:
    """Refuse an output path before any work is done; return it as a Path.

    Refused: one of the inputs (always, even with ``force``), a folder, a path whose folder does not
    exist, and an existing file unless ``force``.

    Raises:
        ModelFileError: with the reason and the way out.
    """
    target = Path(path)
    clash = input_clash(target, inputs)
    if clash is not None:
        named = "" if str(clash) == str(target) else f" ({clash})"
        raise ModelFileError(
            f"{target} is one of the command's inputs{named}; the {what} must go to another file"
        )
    if target.is_dir():
        raise ModelFileError(f"{target} is a folder; give a file name for the {what}")
    if not target.parent.exists():
        raise ModelFileError(f"cannot write {target}: folder {target.parent} does not exist")
    _claim(target)
    if (target.exists() or target.is_symlink()) and not force:
        raise ModelFileError(f"{target} exists; pass overwrite=True to overwrite it", param="overwrite")
    return target


@contextlib.contextmanager
def claims() -> Iterator[None]:
    """While the block runs, ``check_target`` claims each output exclusively; the claims end with it."""
    held: dict[Path, Path] = {}
    token = _CLAIMS.set(held)
    try:
        yield
    finally:
        _CLAIMS.reset(token)
        for claim in held.values():
            with contextlib.suppress(OSError):
                claim.unlink()


def _claim(target: Path) -> None:
    """Create ``.NAME.claim`` next to ``target`` exclusively (inside ``claims()``); refuse a live claimant."""
    held = _CLAIMS.get()
    key = target.resolve()
    if held is None or key in held or os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 writes
        return
    claim = key.parent / f".{key.name}.claim"
    for _ in range(2):  # a second try after removing a claim whose process is gone
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _claim_owner(claim)
            if owner is not None and _alive(owner):
                raise ModelFileError(
                    f"{target} is being written by another process (pid {owner}, claim {claim}); wait for it "
                    "to finish or write to another file"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                claim.unlink()
            continue
        except OSError as err:
            raise ModelFileError(f"cannot write {target}: {err.strerror or err}") from err
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        held[key] = claim
        return
    raise ModelFileError(f"{target} is claimed by another process ({claim}); write to another file")


def _claim_owner(claim: Path) -> int | None:
    try:
        text = claim.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and len(text) < 12 else None


def check_targets(
    targets: Mapping[str, PathLike | None], force: bool = False, *, inputs: Iterable[PathLike | None] = ()
) -> None:
    """``check_target`` for each given output (keyed by what it is: ``{"--report": path}``), and no two
    outputs the same file."""
    inputs = tuple(inputs)
    seen: dict[str, Path] = {}
    for what, path in targets.items():
        if path is None:
            continue
        target = check_target(path, force, inputs=inputs, what=what)
        for other, earlier in seen.items():
            if same_file(target, earlier):
                raise ModelFileError(f"{what} and {other} are the same file ({target}); give two names")
        seen[what] = target


@contextlib.contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    If the body raises, the temporary file is removed and ``path`` is left as it was. A path that is one
    of the running command's inputs is refused, and so is an existing file unless ``overwrite``.
    """
    target = Path(path)
    clash = input_clash(target)
    if clash is not None:
        raise ModelFileError(f"refusing to write {target}: it is one of the command's inputs ({clash})")
    if target.is_dir():
        raise ModelFileError(f"cannot write {target}: it is a folder")
    if not overwrite and target.exists():
        raise ModelFileError(f"{target} exists; pass overwrite=True to overwrite it", param="overwrite")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise ModelFileError(f"cannot write {target}: {err.strerror or err}") from err
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual permissions
        if overwrite:
            os.replace(tmp, target)
        else:
            _rename_no_replace(Path(tmp), target)
    except ModelFileError:
        raise
    except OSError as err:
        raise ModelFileError(f"cannot write {target}: {err.strerror or err}") from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _rename_no_replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` unless ``target`` exists, atomically (ModelFileError if it does)."""
    appeared = ModelFileError(
        f"{target} appeared while this command ran (another process wrote it); it was not replaced"
    )
    try:
        os.link(source, target)  # fails on an existing name, whoever created it
    except FileExistsError:
        raise appeared from None
    except OSError:  # a file system without hard links: the check and the rename are two steps there
        if target.exists() or target.is_symlink():
            raise appeared from None
        os.replace(source, target)
    else:
        os.unlink(source)


def remove_stale_temporaries(target: PathLike) -> list[Path]:
    """Remove the temporary siblings of ``target`` left by a write that was killed (``.NAME.PID-X.tmp``
    whose process is gone, or the older ``.NAME.XXXXXXXX.tmp`` over an hour old); return them."""
    target = Path(target)
    ours = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)-[a-z0-9_]{{8}}\.tmp$")
    legacy = re.compile(rf"^\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp$")
    removed = []
    for candidate in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        match = ours.match(candidate.name)
        if match:
            stale = not _alive(int(match.group(1)))
        else:
            stale = bool(legacy.match(candidate.name)) and _age(candidate) > _LEGACY_STALE_S
        if stale and candidate.is_file():
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


MAX_TEXT_INPUT = 16 << 20  # bytes of a text input (a recipe): more is not a recipe


def check_regular_file(
    path: PathLike, *, what: str = "input", error: type[Exception] = ModelFileError
) -> Path:
    """Refuse, before anything opens it, an input that is not a regular file: missing, a folder, a symlink
    loop, or a FIFO, device or socket (reading one blocks or never ends).

    Raises:
        error: one line naming the path and what it is.
    """
    target = Path(path)
    try:
        mode = target.stat().st_mode  # follows symlinks: a loop is ELOOP
    except OSError as err:
        raise error(f"cannot read {what} {target}: {err.strerror or err}") from err
    if stat.S_ISDIR(mode):
        raise error(f"{what} {target} is a folder; give a file")
    if not stat.S_ISREG(mode):
        raise error(f"{what} {target} is not a regular file (a FIFO, device or socket); give a file")
    return target


def read_text_input(path: PathLike, *, what: str = "input", error: type[Exception] = ModelFileError) -> str:
    """The UTF-8 text of a regular file of at most ``MAX_TEXT_INPUT`` bytes.

    Raises:
        error: not a regular file (``check_regular_file``), too large, unreadable, or not UTF-8.
    """
    target = check_regular_file(path, what=what, error=error)
    try:
        with open(target, "rb") as handle:
            data = handle.read(MAX_TEXT_INPUT + 1)
    except OSError as err:
        raise error(f"cannot read {what} {target}: {err.strerror or err}") from err
    if len(data) > MAX_TEXT_INPUT:
        raise error(f"{what} {target} is larger than {MAX_TEXT_INPUT >> 20} MiB; it is not a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{what} {target} is not UTF-8 text (byte {err.start}); save it as UTF-8") from err


def write_json(path: PathLike, data: Any, *, overwrite: bool = True) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
