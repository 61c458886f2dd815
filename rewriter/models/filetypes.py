"""What a file on disk is, found without unpickling anything: empty, corrupt, a torch archive, a
``torch.export`` program, an ONNX model, a bare pickle; and its structure read with every tensor on the
``meta`` device, so that shapes can be checked before a byte of tensor data is read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import torch

from .._errors import InvalidFileError, ModelFileError, UntrustedPickleError
from .._text import root_cause

FileType = Literal[
    "missing", "folder", "unreadable", "special", "loop", "empty", "corrupt", "torch", "export", "onnx", "pickle",
    "unknown",
]  # fmt: skip

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_PICKLE_INDEX_LIMIT = 64 << 20  # the largest data.pkl read to look for a marker (the tensors are elsewhere)


def sniff(path: str | os.PathLike) -> FileType:
    """The kind of ``path``, from its first bytes and (for a zip) its table of contents: one open."""
    with opened(path) as (_, kind):
        return kind


@contextlib.contextmanager
def opened(path: str | os.PathLike) -> Iterator[tuple[BinaryIO | None, FileType]]:
    """``path`` opened once for reading, with its kind (``sniff``): ``(handle, kind)``, the handle at the
    start of the file, or ``(None, kind)`` for what is not opened (missing, a folder, a special file, a loop)
    or cannot be. A reader that reads the file through the handle opens it once in all."""
    file = Path(path)
    kind = _not_opened(file)  # decided outside the handlers, so that a caller's error is not chained to them
    if kind is not None:
        yield None, kind
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 (closed below, after the caller's reading)
    except OSError as err:
        kind = "missing" if isinstance(err, FileNotFoundError) else "unreadable"  # removed; permission, I/O
    if kind is not None:
        yield None, kind
        return
    with handle:
        kind = _kind_of(handle, file)
        handle.seek(0)
        yield handle, kind


def _not_opened(file: Path) -> FileType | None:
    """Why ``file`` is not to be opened (missing, a loop, a folder, a special file that would block a
    read), or None for a regular file."""
    try:
        mode = os.stat(file).st_mode
    except OSError as err:
        return "loop" if err.errno == errno.ELOOP else "missing"
    if stat.S_ISDIR(mode):
        return "folder"
    return None if stat.S_ISREG(mode) else "special"


def _kind_of(handle: BinaryIO, file: Path) -> FileType:
    try:
        head = handle.read(8)
    except OSError:
        return "unreadable"
    if not head:
        return "empty"
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(handle) as archive:  # a handle it was given is left open
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return "corrupt"
        if any(n.endswith(("serialized_exported_program.json", "archive_format")) for n in names):
            return "export"
        return "torch" if any(n.endswith("data.pkl") for n in names) else "unknown"
    if head[0] == 0x80:  # a pickle (protocol 2 or later): the legacy torch.save format or a bare pickle
        return "pickle"
    if file.suffix == ".onnx" and head[0] == 0x08:  # protobuf field 1 (ir_version)
        return "onnx"
    return "unknown"


def describe(path: str | os.PathLike, kind: FileType) -> str:
    """One phrase for a file that is not what was expected."""
    if kind == "unreadable":
        return f"{path} cannot be read: {_open_error(path)}"
    return {
        "missing": f"{path} does not exist",
        "folder": f"{path} is a folder, not a file",
        "special": f"{path} is not a regular file (a FIFO, device or socket); reading it would block or not end",
        "loop": f"{path} is a symbolic link that leads back to itself (a loop)",
        "empty": f"{path} is empty (0 bytes): it is not a model file; was its writing interrupted?",
        "corrupt": f"{path} is corrupt: a truncated or damaged archive (was its writing interrupted or its "
        "download incomplete?)",
        "export": f"{path} is a torch.export program (a pt2 export), made for deployment: load it with "
        "torch.export.load(path).module(); rewriter reads the .pt model files it writes",
        "onnx": f"{path} is an ONNX model (an onnx export), made for deployment: run it with onnxruntime; "
        "rewriter reads the .pt model files it writes",
        "pickle": f"{path} is a bare pickle, not a torch archive",
        "unknown": f"{path} is not a torch file (unknown format)",
        "torch": f"{path} is a torch archive",
    }[kind]


def _open_error(path: str | os.PathLike) -> str:
    """Why ``path`` cannot be opened for reading, in the system's words (``Permission denied``)."""
    try:
        with open(path, "rb"):
            return "it could be read when looked at again"
    except OSError as err:
        return err.strerror or type(err).__name__


def read_structure(path: str | os.PathLike) -> Any:
    """``torch.load`` with ``weights_only=True`` and every tensor on the meta device: the file's structure
    and shapes, no tensor data read (the file opened once, its kind found on the way).

    Raises:
        ModelFileError: the file is missing, empty, corrupt, or not a torch archive.
        UntrustedPickleError: the file holds pickled Python objects (a whole module): ``weights_only``
            refuses them and nothing was unpickled.
    """
    with opened(path) as (handle, kind):
        if handle is None or kind not in ("torch", "pickle"):
            raise (ModelFileError if kind == "missing" else InvalidFileError)(describe(path, kind))
        try:
            return torch.load(handle, map_location="meta", weights_only=True)
        except pickle.UnpicklingError as err:
            unsafe = _unsafe_globals(handle)
            if unsafe:
                raise UntrustedPickleError(
                    f"{path} holds pickled Python objects ({', '.join(unsafe[:3])})"
                ) from err
            raise InvalidFileError(f"{describe(path, 'corrupt')} ({root_cause(err)})") from err
        except Exception as err:  # torch's zip reader and unpickler raise many kinds on damaged bytes
            raise InvalidFileError(f"{describe(path, 'corrupt')} ({root_cause(err)})") from err


def _unsafe_globals(handle: BinaryIO) -> list[str]:
    """The classes and functions a torch archive's pickle names that ``weights_only`` refuses (torch's own
    reading of the pickle's opcodes: nothing is unpickled); empty if there are none or the pickle is damaged."""
    try:
        handle.seek(0)
        return torch.serialization.get_unsafe_globals_in_checkpoint(handle)
    except Exception:  # a damaged pickle names no class: the caller reports the damage
        return []


def contains_marker(path: str | os.PathLike, marker: bytes) -> bool:
    """Whether the pickle index of a torch archive (its ``data.pkl``) mentions ``marker``, read without
    unpickling (how a model file holding a pickled module is told from any other pickle)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith("data.pkl") and info.file_size <= _PICKLE_INDEX_LIMIT:
                    return marker in archive.read(info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError):
        return False
    return False


def tensor_bytes(handle: BinaryIO) -> int:
    """Bytes of tensor data a torch archive declares (the uncompressed sizes of its storage records), read
    from an open ``handle`` (``opened``), which is left at the start."""
    try:
        with zipfile.ZipFile(handle) as archive:
            return sum(i.file_size for i in archive.infolist() if "/data/" in i.filename)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return 0
    finally:
        handle.seek(0)
