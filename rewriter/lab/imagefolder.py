"""Image folders (``imagefolder:DIR``): one sub-folder per class, decoded once and cached as uint8.

A folder whose decoded images fit the memory budget is decoded once into a uint8 tensor and cached on disk
(in ``$REWRITER_CACHE``, default ``~/.cache/rewriter``; never beside the user's files), keyed by the folder's
path and the size the images are stored at, and stamped with a fingerprint of its file list, sizes and
modification times: a cache whose stamp no longer matches the folder is stale, and is rebuilt, never used.
Later epochs and later commands then read no JPEG at all. A larger folder streams from disk through a
``DataLoader`` (``--loader-workers`` processes decode in parallel).

When every image has the same size, that is the folder's native size: the input size is inferred from it
and the images are stored as they are. Images of mixed sizes are resized to the input size when decoded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._errors import RewriterError

__all__ = [
    "EXTENSIONS", "Folder", "FolderError", "FolderImages", "FolderLayout", "FolderSplits", "cache_dir",
    "decode_folder", "native_folder_size", "read_folder", "scan_folder", "scan_layout",
]  # fmt: skip

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
MAX_FILES = 20_000_000  # a folder with more files than this is refused before it is listed whole
Say = Callable[[str], None]


class FolderError(RewriterError, ValueError):
    """An image folder cannot be read: no class folders, no images, a link loop, an unreadable image."""


@dataclass(frozen=True)
class Folder:
    """The images of one split folder: class names (sorted, as torchvision's ImageFolder numbers them), each
    file's path and label, and the fingerprint of the file list, sizes and modification times."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.files)


def scan_folder(root: Path) -> Folder:
    """List ``root``'s class folders and their images (links followed, a link loop refused)."""
    if not root.is_dir():
        raise FolderError(f"imagefolder: {root} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise FolderError(f"imagefolder: {root} has no class folders (expected {root}/CLASS/IMAGE.jpg)")
    files, labels, stamp = [], [], hashlib.sha256()
    for label, name in enumerate(classes):
        for path in _images_under(root / name, root):
            stat = path.stat()
            relative = str(path.relative_to(root))
            files.append(relative)
            labels.append(label)
            stamp.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if not files:
        raise FolderError(f"imagefolder: no images ({', '.join(EXTENSIONS)}) under {root}")
    return Folder(root, tuple(classes), tuple(files), tuple(labels), stamp.hexdigest())


def _images_under(folder: Path, root: Path) -> list[Path]:
    found: list[Path] = []
    seen: set[str] = set()
    for here, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            raise FolderError(f"imagefolder: {here} links back to a folder already read (a link loop)")
        seen.add(real)
        dirs.sort()
        found.extend(Path(here) / n for n in sorted(names) if n.lower().endswith(EXTENSIONS))
        if len(found) > MAX_FILES:
            raise FolderError(f"imagefolder: {root} holds more than {MAX_FILES} images")
    return found


def read_image(path: str | Path):
    """An image file as RGB (the ImageFolder loader); a file that cannot be decoded raises ``FolderError``
    naming it, not the decoder's traceback."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise FolderError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err


def _sizes(folder: Folder) -> set[tuple[int, int]]:
    """The (height, width) of every image, from the headers (nothing decoded); stops at the second size."""
    from PIL import Image

    sizes: set[tuple[int, int]] = set()
    for name in folder.files:
        try:
            with Image.open(folder.root / name) as image:
                sizes.add((image.height, image.width))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise FolderError(f"{folder.root / name}: not a readable image ({type(err).__name__})") from err
        if len(sizes) > 1:
            break
    return sizes


def native_folder_size(folders: list[Folder]) -> tuple[int, int] | None:
    """The size every image of ``folders`` has, or None when they differ (a cached decode answers without
    reading any header)."""
    sizes: set[tuple[int, int]] = set()
    for folder in folders:
        cached = _cached_size(folder)
        sizes |= {cached} if cached is not None else _sizes(folder)
        if len(sizes) > 1:
            return None
    return next(iter(sizes)) if sizes else None


def cache_dir() -> Path:
    return Path(os.environ.get("REWRITER_CACHE") or Path.home() / ".cache" / "rewriter") / "folders"


def _cache_path(folder: Folder, size: tuple[int, int] | None) -> Path:
    where = f"{folder.root.resolve()}\0{size}".encode()
    return cache_dir() / f"{folder.root.name}-{hashlib.sha256(where).hexdigest()[:16]}.pt"


def _cached_size(folder: Folder) -> tuple[int, int] | None:
    stamp = _cache_path(folder, None).with_suffix(".json")
    try:
        import json

        meta = json.loads(stamp.read_text())
        return tuple(meta["size"]) if meta.get("fingerprint") == folder.fingerprint else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def decode_folder(
    folder: Folder, size: tuple[int, int] | None, *, data_root: Path | None = None, say: Say | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of ``folder`` as uint8 ``[N, 3, H, W]`` and their labels: from the cache when its stamp
    matches, else decoded (resized to ``size``, or as they are for None) and cached, unless the cache lies
    inside ``data_root`` (the folder of ``imagefolder:DIR``; default the split's own): an input is never
    written."""
    path = _cache_path(folder, size)
    data_root = (data_root or folder.root).resolve()
    if data_root in path.resolve().parents:
        if say:
            say(
                f"not caching: {path.parent} lies inside the data folder {data_root}; set REWRITER_CACHE elsewhere"
            )
        return _decode_all(folder, size), torch.tensor(folder.labels, dtype=torch.int64)
    cached = _read_cache(path, folder, say)
    if cached is not None:
        return cached
    if say:
        say(f"decoding {len(folder)} images of {folder.root} once (cached in {path.parent})")
    images = _decode_all(folder, size)
    labels = torch.tensor(folder.labels, dtype=torch.int64)
    _write_cache(path, folder, images, labels, size)
    return images, labels


def _decode_all(folder: Folder, size: tuple[int, int] | None) -> torch.Tensor:
    from PIL import Image

    first = read_image(folder.root / folder.files[0])
    h, w = size if size is not None else (first.height, first.width)
    out = torch.empty((len(folder), 3, h, w), dtype=torch.uint8)
    for i, name in enumerate(folder.files):
        image = read_image(folder.root / name)
        if (image.height, image.width) != (h, w):
            if size is None:
                raise FolderError(
                    f"{folder.root / name} is {image.height}x{image.width}, the folder's others {h}x{w}; "
                    "give the input size to resize them all"
                )
            image = image.resize((w, h), Image.BILINEAR)
        out[i] = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    return out


def _read_cache(path: Path, folder: Folder, say: Say | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not path.exists():
        return None
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
        stale = payload.get("fingerprint") != folder.fingerprint
    except Exception:  # a cache we cannot read is rebuilt: it only ever holds what we can decode again
        payload, stale = None, True
    if stale:
        if say:
            say(f"the cached decode of {folder.root} is stale (its files changed): decoding again")
        return None
    return payload["images"], payload["labels"]


def _write_cache(path: Path, folder: Folder, images: torch.Tensor, labels: torch.Tensor, size) -> None:
    from .._files import atomic_path, write_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"fingerprint": folder.fingerprint, "images": images, "labels": labels}, tmp)
        if size is None:
            write_json(path.with_suffix(".json"), {"fingerprint": folder.fingerprint,
                                                   "size": list(images.shape[-2:])})  # fmt: skip
    except OSError:  # no cache (a read-only home): the next command decodes again
        pass


@dataclass(frozen=True)
class FolderSplits:
    """The splits of an image folder: in memory (uint8 images and labels) or, above the memory limit,
    ``FolderImages`` datasets read from disk."""

    classes: tuple[str, ...]
    train: tuple[torch.Tensor, torch.Tensor] | None = None
    test: tuple[torch.Tensor, torch.Tensor] | None = None
    streamed: tuple[FolderImages, FolderImages, FolderImages] | None = None


@dataclass(frozen=True, eq=False)
class FolderLayout:
    """An image folder listed once (``scan_layout``): its training split, its test split (None: the training
    folder is split 80/20 at ``holdout``), and the size all their images share (None: they differ). The
    input size is inferred from it and the folder read with it, without listing the folder again."""

    root: Path
    train: Folder
    test: Folder | None
    holdout: tuple[list[int], list[int]] | None
    native_size: tuple[int, int] | None


def scan_layout(root: Path) -> FolderLayout:
    """List ``root/train`` and ``root/test`` (or ``val``), or ``root`` alone (split 80/20, stratified,
    seed 0), and find the size their images share.

    Raises:
        FolderError: no such folder, one class only, one image only, no images, a link loop.
    """
    from .sampling import holdout

    if not root.is_dir():
        raise FolderError(f"imagefolder: {root} is not a folder")
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        train, test, split = scan_folder(root / "train"), scan_folder(test_dir), None
    else:
        train, test = scan_folder(root), None
        if len(train) < 2:
            raise FolderError(
                f"imagefolder: {root} holds one image; a train and a test split need two or more"
            )
        split = holdout(train.labels, max(1, len(train) // 5), seed=0)
    if len(train.classes) < 2:  # every model scores 100 % on one class: nothing would be measured
        raise FolderError(
            f"imagefolder: {train.root} has one class folder ({train.classes[0]}); classification "
            "needs two or more (one folder per class)"
        )
    native = native_folder_size([f for f in (train, test) if f is not None])
    return FolderLayout(root, train, test, split, native)


def read_folder(
    root: Path | FolderLayout, input_size: tuple[int, int], *, memory_limit: float, say: Say | None = None
) -> FolderSplits:
    """The splits of an image folder (its ``FolderLayout``, listed here if a path is given): decoded once if
    they fit ``memory_limit`` bytes as uint8, else streamed."""
    layout = root if isinstance(root, FolderLayout) else scan_layout(root)
    train_folder, test_folder, split = layout.train, layout.test, layout.holdout
    folders = [f for f in (train_folder, test_folder) if f is not None]
    store = None if layout.native_size is not None else input_size
    h, w = store or layout.native_size
    total = sum(len(f) for f in folders)
    if total * 3 * h * w > memory_limit:
        if say:
            say(f"{layout.root}: {total} images of {h}x{w} exceed the memory limit of {memory_limit / 2**30:.2f} "
                "GiB; reading them from disk every epoch (raise --data-memory to decode them once)")  # fmt: skip
        return FolderSplits(
            train_folder.classes, streamed=_streamed(train_folder, test_folder, split, input_size)
        )
    images, labels = decode_folder(train_folder, store, data_root=layout.root, say=say)
    if test_folder is None:
        kept, held = (torch.tensor(part, dtype=torch.int64) for part in split)
        return FolderSplits(train_folder.classes, (images[kept], labels[kept]), (images[held], labels[held]))
    number = _class_numbers(test_folder, train_folder.classes)
    test_images, test_labels = decode_folder(test_folder, store, data_root=layout.root, say=say)
    return FolderSplits(train_folder.classes, (images, labels), (test_images, number[test_labels]))


def _class_numbers(test: Folder, classes: tuple[str, ...]) -> torch.Tensor:
    """The training split's number of each test class, by name (a test folder may lack some classes)."""
    unknown = sorted(set(test.classes) - set(classes))
    if unknown:
        raise FolderError(
            f"imagefolder: {test.root} has classes the training split lacks ({', '.join(unknown)}); "
            "every test class needs a folder of the same name in train/"
        )
    return torch.tensor([classes.index(name) for name in test.classes], dtype=torch.int64)


class FolderImages(torch.utils.data.Dataset):
    """Images of a folder read from disk at every access and transformed one by one (for folders too large
    to decode once); ``targets`` are their labels."""

    def __init__(self, folder: Folder, indices: list[int], targets: list[int], transform: Callable) -> None:
        self.folder, self.indices, self.targets, self.transform = folder, indices, targets, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.transform(
            read_image(self.folder.root / self.folder.files[self.indices[i]])
        ), self.targets[i]


def _streamed(train: Folder, test: Folder | None, split, input_size) -> tuple[FolderImages, ...]:
    from torchvision import transforms

    from .batches import MEAN, STD

    normalise = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    plain = transforms.Compose([transforms.Resize(input_size), transforms.CenterCrop(input_size), *normalise])
    augmented = transforms.Compose([
        transforms.Resize(input_size), transforms.RandomCrop(input_size, padding=max(1, min(input_size) // 8)),
        transforms.RandomHorizontalFlip(), *normalise,
    ])  # fmt: skip
    if test is None:
        kept, held = split
        test_part = FolderImages(train, held, [train.labels[i] for i in held], plain)
    else:
        kept = list(range(len(train)))
        number = _class_numbers(test, train.classes).tolist()
        test_part = FolderImages(
            test, list(range(len(test))), [number[label] for label in test.labels], plain
        )
    labels = [train.labels[i] for i in kept]
    return FolderImages(train, kept, labels, augmented), test_part, FolderImages(train, kept, labels, plain)
