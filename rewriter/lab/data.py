"""Data sources for training, saturation and probes: ``--data SPEC``.

``cifar10:DIR`` and ``cifar100:DIR`` read the python version of the datasets (``data_batch_1`` ...,
``test_batch`` / ``train``, ``test``) from a folder, through an unpickler that only rebuilds arrays, lists
and numbers, never arbitrary objects. ``imagefolder:DIR`` reads ``DIR/train`` and ``DIR/test`` (or ``val``),
or splits one folder 80/20, decoded once and cached (``imagefolder.py``). ``synthetic`` generates shapes of
several sizes (needs no files), ``digits`` is scikit-learn's bundled handwritten digits (real scans, 8x8,
upsampled). Every source that fits in memory is held as uint8 and read in whole batches (``batches.py``):
normalised with the ImageNet/AlexNet statistics and, for training, randomly cropped (padding 1/8 of the size)
and flipped, as in paper 000 III-B. ``train_samples`` and ``test_samples`` take a stratified, seeded part of
a split (``sampling.py``).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .._errors import RewriterError, close_matches
from .batches import MEAN, STD, TensorImages
from .imagefolder import FolderError, FolderLayout, read_folder, scan_layout
from .sampling import SamplingError, dataset_labels, stratified_indices, subset
from .synthetic import SHAPES, synthetic_images

__all__ = [
    "MEAN",
    "SHAPES",
    "STD",
    "DataError",
    "DataSource",
    "DataSpec",
    "TensorImages",
    "load_data",
    "native_size",
    "parse_data_spec",
    "scan_data",
    "synthetic_images",
]

KINDS = ("cifar10", "cifar100", "imagefolder", "synthetic", "digits")
MAX_GENERATED = 100_000  # images of synthetic:N / digits:N (generated in memory: 3 KB each at 32 px)
MEMORY_LIMIT = 2 * 2**30  # bytes of uint8 images a folder may take to be decoded once and held in memory
Say = Callable[[str], None]


class DataError(RewriterError, ValueError):
    """A data source cannot be read: a malformed spec, a missing folder, files of the wrong layout."""


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value."""

    kind: str
    path: str | None = None
    size: int | None = None  # synthetic: number of training images
    layout: FolderLayout | None = field(default=None, compare=False, repr=False)  # an image folder listed

    def __str__(self) -> str:
        return self.kind + (f":{self.path}" if self.path else "") + (f":{self.size}" if self.size else "")


def parse_data_spec(text: str) -> DataSpec:
    """``cifar10:~/data/cifar10`` -> DataSpec("cifar10", "/home/.../cifar10"); ``synthetic`` or ``synthetic:2000``."""
    kind, _, rest = str(text).partition(":")
    if kind not in KINDS:
        raise DataError(
            f"unknown data source '{kind}'{close_matches(kind, KINDS) or '.'} Use one of {', '.join(KINDS)}"
        )
    if kind in ("synthetic", "digits"):
        if rest and (not rest.isdigit() or not 1 <= int(rest) <= MAX_GENERATED):
            raise DataError(
                f"'{kind}' takes an optional number of training images from 1 to {MAX_GENERATED}, got '{rest}'"
            )
        return DataSpec(kind, size=int(rest) if rest else None)
    if not rest:
        raise DataError(f"'{kind}' needs a folder: {kind}:DIR")
    return DataSpec(kind, os.path.expanduser(rest))


def scan_data(spec: DataSpec) -> DataSpec:
    """``spec`` with its image folder listed once (``FolderLayout``: its splits and the size their images
    share), for ``native_size`` and ``load_data`` to use without listing it again; other kinds as they are.

    Raises:
        DataError: the folder cannot be read as an image folder.
    """
    if spec.kind != "imagefolder" or spec.layout is not None:
        return spec
    try:
        return dataclasses.replace(spec, layout=scan_layout(Path(spec.path)))
    except FolderError as err:
        raise DataError(str(err)) from err


def native_size(spec: DataSpec) -> tuple[int, int] | None:
    """The resolution a source's images come in (digits: the 8x8 scans upsampled to CIFAR's 32); for an
    image folder, the size all its images share (None when they differ), from its listing (``scan_data``)."""
    if spec.kind != "imagefolder":
        return (32, 32)
    return scan_data(spec).layout.native_size


@dataclass
class DataSource:
    """A train and a test split of one image-classification task.

    ``train`` is augmented (for training); ``train_plain`` holds the same images without augmentation, for
    measurements (saturation, probes) that should not depend on random crops. In-memory splits are
    ``TensorImages``, read in whole batches by ``batches.loader``; a folder too large for memory streams.
    ``subset`` records the part of the source's splits these are (None: all of them).
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    train_plain: Dataset
    in_channels: int = 3
    classes: tuple[str, ...] | None = None
    subset: dict[str, Any] | None = None


def _in_memory(
    spec: DataSpec, train, test, input_size: tuple[int, int], classes: int | tuple[str, ...]
) -> DataSource:
    """A source of uint8 images ``(images [N, C, H, W], labels)`` per split (numpy or torch)."""
    names = classes if isinstance(classes, tuple) else None

    def images(split, augment: bool) -> TensorImages:
        pixels, labels = (torch.as_tensor(np.ascontiguousarray(a)) for a in split)
        return TensorImages(pixels, labels, input_size, augment=augment, classes=names)

    count = len(names) if names is not None else classes
    return DataSource(str(spec), images(train, True), images(test, False), count, images(train, False),
                      classes=names)  # fmt: skip


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of numpy arrays, lists, bytes, numbers) and refuses anything else."""

    ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR batch holds only arrays and lists"
        )


def _read_batch(path: Path) -> dict:
    try:
        return _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise DataError(f"cannot read {path} as a CIFAR batch: {err}") from err
    except Exception as err:  # a truncated or foreign file: whatever the unpickler tripped on, name the file
        raise DataError(f"cannot read {path} as a CIFAR batch ({type(err).__name__}: {err})") from err


def _cifar(spec: DataSpec, input_size: tuple[int, int], download: bool) -> DataSource:
    root = Path(spec.path)
    folder = next(
        (
            p
            for p in (root, root / "cifar-10-batches-py", root / "cifar-100-python")
            if _has_cifar(p, spec.kind)
        ),
        None,
    )
    if folder is None and download:
        import torchvision

        dataset = torchvision.datasets.CIFAR10 if spec.kind == "cifar10" else torchvision.datasets.CIFAR100
        dataset(str(root), train=True, download=True)
        folder = next(
            p for p in (root / "cifar-10-batches-py", root / "cifar-100-python") if _has_cifar(p, spec.kind)
        )
    if folder is None:
        expected = (
            "data_batch_1 ... data_batch_5 and test_batch" if spec.kind == "cifar10" else "train and test"
        )
        raise DataError(
            f"no {spec.kind} batches ({expected}, the python version) in {root}; pass download=True to fetch them",
            param="download",
        )
    label_key = "labels" if spec.kind == "cifar10" else "fine_labels"
    if spec.kind == "cifar10":
        train_files = sorted(folder.glob("data_batch_*"))
        test_files = [folder / "test_batch"]
    else:
        train_files, test_files = [folder / "train"], [folder / "test"]

    classes = 10 if spec.kind == "cifar10" else 100

    def read(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        batches = [_checked_batch(f, label_key, classes) for f in files]
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    return _in_memory(spec, read(train_files), read(test_files), input_size, classes)


def _checked_batch(path: Path, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The images ``[N, 3, 32, 32]`` and labels of one CIFAR batch, or a ``DataError`` naming the file and
    what is wrong with it: not a dict, no data or labels, data that are not 32x32 RGB images, a label count
    that differs from the image count, a label outside 0 .. classes-1."""
    batch = _read_batch(path)
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        found = ", ".join(map(str, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: a CIFAR batch needs 'data' and '{label_key}', found {found or 'nothing'}")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: 'data' must be uint8 rows of 3x32x32 = 3072 pixels, got {data.dtype} of shape {data.shape}"
        )
    labels = np.asarray(batch[label_key])
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: {len(data)} images but '{label_key}' holds {labels.shape} {labels.dtype} labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        bad = int(labels[(labels < 0) | (labels >= classes)][0])
        raise DataError(f"{path}: label {bad} is outside the {classes} classes 0 .. {classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _has_cifar(folder: Path, kind: str) -> bool:
    names = ("data_batch_1", "test_batch") if kind == "cifar10" else ("train", "test")
    return all((folder / name).is_file() for name in names)


def _imagefolder(spec: DataSpec, input_size: tuple[int, int], memory_limit: float, say: Say | None):
    try:
        splits = read_folder(spec.layout or Path(spec.path), input_size, memory_limit=memory_limit, say=say)
    except FolderError as err:
        raise DataError(str(err)) from err
    if splits.streamed is not None:
        train, test, plain = splits.streamed
        return DataSource(str(spec), train, test, len(splits.classes), plain, classes=splits.classes)
    return _in_memory(spec, splits.train, splits.test, input_size, splits.classes)


def _synthetic(spec: DataSpec, input_size: tuple[int, int]) -> DataSource:
    count = spec.size or 2000
    train = synthetic_images(count, seed=0)
    test = synthetic_images(max(200, count // 4), seed=1)
    return _in_memory(spec, train, test, input_size, 2 * len(SHAPES))


def _digits(spec: DataSpec, input_size: tuple[int, int]) -> DataSource:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DataError("the 'digits' data source needs scikit-learn: pip install scikit-learn") from err
    digits = load_digits()
    images = (digits.images / 16.0 * 255).astype(np.uint8)[:, None].repeat(3, axis=1)  # gray as RGB
    labels = digits.target
    order = np.random.default_rng(0).permutation(len(labels))
    cut = int(0.8 * len(order))
    train_idx, test_idx = order[:cut], order[cut:]
    if spec.size:
        train_idx = train_idx[: spec.size]
    train = (images[train_idx], labels[train_idx])
    return _in_memory(spec, train, (images[test_idx], labels[test_idx]), input_size, 10)


class Relabelled(Dataset):
    """The images of ``base`` at ``indices``, each with a target: (image, target)."""

    def __init__(self, base: Dataset, indices: list[int], targets: list[Any]) -> None:
        self.base, self.indices, self.targets = base, indices, targets

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        return self.base[self.indices[i]][0], self.targets[i]


def take_subset(
    data: DataSource, *, train: int | None = None, test: int | None = None, seed: int = 0
) -> DataSource:
    """``data`` with a stratified, seeded part of its training split (``train`` images; ``train_plain``
    the same ones) and of its test split (``test`` images); None keeps a split whole."""
    if train is None and test is None:
        return data
    parts = {}
    try:
        if train is not None:
            picked = stratified_indices(dataset_labels(data.train), train, seed=seed)
            parts.update(train=subset(data.train, picked), train_plain=subset(data.train_plain, picked))
        if test is not None:
            parts["test"] = subset(data.test, stratified_indices(dataset_labels(data.test), test, seed=seed))
    except SamplingError as err:
        raise DataError(f"{data.name}: {err}") from err
    described = {"train_samples": train, "test_samples": test, "seed": seed,
                 "of": {"train": len(data.train), "test": len(data.test)}}  # fmt: skip
    name = data.name + "".join(f" {k}={v}" for k, v in (("train", train), ("test", test)) if v is not None)
    return dataclasses.replace(data, name=name, subset=described, **parts)


_LOADERS: dict[str, Callable[..., DataSource]] = {
    "synthetic": lambda spec, size, download, memory, say: _synthetic(spec, size),
    "digits": lambda spec, size, download, memory, say: _digits(spec, size),
    "imagefolder": lambda spec, size, download, memory, say: _imagefolder(spec, size, memory, say),
    "cifar10": lambda spec, size, download, memory, say: _cifar(spec, size, download),
    "cifar100": lambda spec, size, download, memory, say: _cifar(spec, size, download),
}


def load_data(
    spec: str | DataSpec,
    input_size: int | tuple[int, int],
    *,
    download: bool = False,
    train_samples: int | None = None,
    test_samples: int | None = None,
    seed: int = 0,
    memory_limit: float = MEMORY_LIMIT,
    progress: Say | None = None,
) -> DataSource:
    """The train and test splits of ``spec`` at ``input_size``; ``train_samples`` / ``test_samples`` take a
    stratified part of a split drawn with ``seed``; an image folder is decoded once when its images take at
    most ``memory_limit`` bytes.

    Example:
        >>> data = load_data("synthetic:100", 32)
        >>> len(data.train), data.num_classes, tuple(data.train[0][0].shape)
        (100, 10, (3, 32, 32))
        >>> part = load_data("synthetic:100", 32, train_samples=20, test_samples=10)
        >>> len(part.train), len(part.test), part.name
        (20, 10, 'synthetic:100 train=20 test=10')
    """
    spec = parse_data_spec(spec) if isinstance(spec, str) else spec
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    data = _LOADERS[spec.kind](spec, size, download, memory_limit, progress)
    return take_subset(data, train=train_samples, test=test_samples, seed=seed)
