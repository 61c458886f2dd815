"""Data sources for training, saturation and probes: ``--data SPEC``.

``cifar10:DIR`` and ``cifar100:DIR`` read the python version of the datasets (``data_batch_1`` ...,
``test_batch`` / ``train``, ``test``) from a folder, through an unpickler that only rebuilds arrays, lists
and numbers, never arbitrary objects. ``imagefolder:DIR`` reads ``DIR/train`` and ``DIR/test`` (or ``val``),
or splits one folder 80/20. ``synthetic`` generates shapes of several sizes (needs no files), ``digits`` is
scikit-learn's bundled handwritten digits (real scans, 8x8, upsampled). Images are normalised with the
ImageNet/AlexNet statistics and, for training, randomly cropped (padding 1/8 of the size) and flipped, as in
paper 000 III-B.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .._errors import RewriterError, close_matches
from .synthetic import SHAPES, synthetic_images

__all__ = [
    "SHAPES",
    "DataError",
    "DataSource",
    "DataSpec",
    "load_data",
    "parse_data_spec",
    "synthetic_images",
]

MEAN = (0.485, 0.456, 0.406)  # the AlexNet/ImageNet statistics paper 000 normalises with
STD = (0.229, 0.224, 0.225)
KINDS = ("cifar10", "cifar100", "imagefolder", "synthetic", "digits")
MAX_GENERATED = 100_000  # images of synthetic:N / digits:N (generated in memory: 3 KB each at 32 px)


class DataError(RewriterError, ValueError):
    """A data source cannot be read: a malformed spec, a missing folder, files of the wrong layout."""


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value."""

    kind: str
    path: str | None = None
    size: int | None = None  # synthetic: number of training images

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


def native_size(spec: DataSpec) -> tuple[int, int] | None:
    """The resolution a source's images come in (digits: the 8x8 scans upsampled to CIFAR's 32); None for
    image folders, whose files can be any size."""
    return None if spec.kind == "imagefolder" else (32, 32)


@dataclass
class DataSource:
    """A train and a test split of one image-classification task, ready for a DataLoader.

    ``train`` is augmented (for training); ``train_plain`` holds the same images without augmentation, for
    measurements (saturation, probes) that should not depend on random crops.
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    train_plain: Dataset
    in_channels: int = 3


def _in_memory(
    spec: DataSpec,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    input_size: tuple[int, int],
    classes: int,
) -> DataSource:
    return DataSource(
        str(spec),
        TensorImages(*train, input_size, augment=True),
        TensorImages(*test, input_size, augment=False),
        classes,
        TensorImages(*train, input_size, augment=False),
    )


class TensorImages(Dataset):
    """Images held in memory as uint8 ``[N, C, H, W]``, resized, normalised and (optionally) augmented."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, input_size: tuple[int, int], *, augment: bool
    ) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.input_size = input_size
        self.augment = augment
        channels = self.images.shape[1]
        self.mean = torch.tensor(MEAN[:channels] if channels == 3 else (0.5,) * channels).view(-1, 1, 1)
        self.std = torch.tensor(STD[:channels] if channels == 3 else (0.25,) * channels).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].float().div_(255)
        if tuple(image.shape[-2:]) != self.input_size:
            image = F.interpolate(image[None], size=self.input_size, mode="bilinear", align_corners=False)[0]
        if self.augment:
            image = _random_crop_flip(image)
        return (image - self.mean) / self.std, int(self.labels[index])


def _random_crop_flip(image: torch.Tensor) -> torch.Tensor:
    """Random crop after zero padding by 1/8 of the size, and a horizontal flip with probability 0.5."""
    h, w = image.shape[-2:]
    ph, pw = max(1, h // 8), max(1, w // 8)
    padded = F.pad(image, (pw, pw, ph, ph))
    top = int(torch.randint(0, 2 * ph + 1, ()))
    left = int(torch.randint(0, 2 * pw + 1, ()))
    image = padded[:, top : top + h, left : left + w]
    return image.flip(-1) if torch.rand(()) < 0.5 else image


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
            f"no {spec.kind} batches ({expected}, the python version) in {root}; pass --download to fetch them"
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


def _imagefolder(spec: DataSpec, input_size: tuple[int, int]) -> DataSource:
    import torchvision
    from torchvision import transforms

    root = Path(spec.path)
    if not root.is_dir():
        raise DataError(f"imagefolder: {root} is not a folder")
    normalise = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    resize = transforms.Resize(input_size)
    train_tf = transforms.Compose(
        [
            resize,
            transforms.RandomCrop(input_size, padding=max(1, min(input_size) // 8)),
            transforms.RandomHorizontalFlip(),
            *normalise,
        ]
    )
    test_tf = transforms.Compose([resize, transforms.CenterCrop(input_size), *normalise])
    test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    try:
        if (root / "train").is_dir() and test_dir is not None:
            train = torchvision.datasets.ImageFolder(
                str(root / "train"), transform=train_tf, loader=read_image
            )
            plain = torchvision.datasets.ImageFolder(
                str(root / "train"), transform=test_tf, loader=read_image
            )
            test = torchvision.datasets.ImageFolder(str(test_dir), transform=test_tf, loader=read_image)
            _map_classes(test, train.class_to_idx, test_dir)
        else:
            train_all = torchvision.datasets.ImageFolder(str(root), transform=train_tf, loader=read_image)
            test_all = torchvision.datasets.ImageFolder(str(root), transform=test_tf, loader=read_image)
            order = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(0)).tolist()
            cut = int(0.8 * len(order))
            train = torch.utils.data.Subset(train_all, order[:cut])
            plain = torch.utils.data.Subset(test_all, order[:cut])
            test = torch.utils.data.Subset(test_all, order[cut:])
            train.classes = train_all.classes  # type: ignore[attr-defined]
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"imagefolder: {err}") from err
    classes = len(getattr(train, "classes", None) or train.dataset.classes)  # type: ignore[union-attr]
    return DataSource(str(spec), train, test, classes, plain)


def read_image(path: str) -> Any:
    """An image file as RGB (the ImageFolder loader); a file that cannot be decoded raises ``DataError``
    naming it, not the decoder's traceback."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err


def _map_classes(test: Any, classes: dict[str, int], folder: Path) -> None:
    """Give the test split the training split's class numbers, by class name (a test folder may lack some
    classes); refuse a test class that training does not have."""
    unknown = sorted(set(test.class_to_idx) - set(classes))
    if unknown:
        raise DataError(
            f"imagefolder: {folder} has classes the training split lacks ({', '.join(unknown)}); "
            "every test class needs a folder of the same name in train/"
        )
    number = {index: classes[name] for name, index in test.class_to_idx.items()}
    test.samples = test.imgs = [(path, number[index]) for path, index in test.samples]
    test.targets = [index for _, index in test.samples]
    test.class_to_idx, test.classes = dict(classes), sorted(classes, key=classes.get)


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


def dataset_labels(dataset: Dataset) -> list[int]:
    """The class of every item, read from the dataset's label list where it has one (no image is decoded)."""
    if isinstance(dataset, TensorImages):
        return dataset.labels.tolist()
    if isinstance(dataset, torch.utils.data.Subset):
        inner = dataset_labels(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]


_LOADERS: dict[str, Callable[..., DataSource]] = {
    "synthetic": lambda spec, size, download: _synthetic(spec, size),
    "digits": lambda spec, size, download: _digits(spec, size),
    "imagefolder": lambda spec, size, download: _imagefolder(spec, size),
    "cifar10": _cifar,
    "cifar100": _cifar,
}


def load_data(
    spec: str | DataSpec, input_size: int | tuple[int, int], *, download: bool = False
) -> DataSource:
    """The train and test splits of ``spec`` at ``input_size``.

    Example:
        >>> data = load_data("synthetic:100", 32)
        >>> len(data.train), data.num_classes, tuple(data.train[0][0].shape)
        (100, 10, (3, 32, 32))
    """
    spec = parse_data_spec(spec) if isinstance(spec, str) else spec
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    return _LOADERS[spec.kind](spec, size, download)
