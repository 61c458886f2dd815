"""Images held in memory as uint8, and the batches training and measurements read from them.

A data set that fits in memory is decoded once into a uint8 tensor ``[N, C, H, W]``; a batch is cut from it
by index, moved to the training device as uint8 (4x less to copy than floats), and converted, resized,
augmented (a random crop after zero padding by 1/8 of the size and a horizontal flip, paper 000 III-B) and
normalised there, for the whole batch at once. No image passes through Python one by one, and on a GPU the
whole set can live on the device. Any other dataset (a folder too large to decode, a relabelled subset)
streams through a ``DataLoader`` with the same interface (``loader``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

__all__ = ["MEAN", "STD", "BatchLoader", "TensorImages", "augment_batch", "loader"]

MEAN = (0.485, 0.456, 0.406)  # the AlexNet/ImageNet statistics paper 000 normalises with
STD = (0.229, 0.224, 0.225)


class TensorImages(Dataset):
    """Images held in memory as uint8 ``[N, C, H, W]``, resized, normalised and (optionally) augmented.

    Indexing gives one normalised float image and its label, as any torchvision dataset does; ``loader``
    reads whole batches instead, with the same transforms.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        input_size: tuple[int, int],
        *,
        augment: bool,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.images = torch.as_tensor(images)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.input_size = tuple(input_size)
        self.augment = augment
        self.classes = list(classes) if classes is not None else None
        channels = self.images.shape[1]
        self.mean = torch.tensor(MEAN[:channels] if channels == 3 else (0.5,) * channels).view(-1, 1, 1)
        self.std = torch.tensor(STD[:channels] if channels == 3 else (0.25,) * channels).view(-1, 1, 1)
        self._copies: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_copies": {}}  # a worker gets the images, not another device's copy

    def on(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) on ``device``, copied there once: a split scored every few epochs on a GPU
        is moved once, not at every scoring."""
        device = torch.device(device)
        if device.type == "cpu":
            return self.images, self.labels
        if device not in self._copies:
            self._copies[device] = (self.images.to(device), self.labels.to(device))
        return self._copies[device]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index : index + 1])[0], int(self.labels[index])

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def take(self, indices: Sequence[int]) -> TensorImages:
        """The images at ``indices``, as an in-memory set with the same transforms."""
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        return self.like(self.images[index], self.labels[index])

    def like(
        self, images: torch.Tensor, labels: torch.Tensor, *, augment: bool | None = None
    ) -> TensorImages:
        """Other images with this set's size, transforms and class names."""
        augment = self.augment if augment is None else augment
        return TensorImages(images, labels, self.input_size, augment=augment, classes=self.classes)

    def transform(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A uint8 batch ``[B, C, h, w]`` as normalised floats at the input size, augmented if this set is
        (random draws from ``generator``), on the batch's device."""
        x = batch.float().div_(255)
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        if self.augment:
            x = augment_batch(x, generator)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of ``x`` ``[B, C, H, W]`` cropped at a random offset after zero padding by 1/8 of its
    size (at least one pixel) and flipped horizontally with probability 0.5; the draws come from
    ``generator`` (a CPU generator; the offsets travel to the batch's device)."""
    b, _, h, w = x.shape
    ph, pw = max(1, h // 8), max(1, w // 8)
    padded = F.pad(x, (pw, pw, ph, ph))
    top = torch.randint(0, 2 * ph + 1, (b,), generator=generator).to(x.device)
    left = torch.randint(0, 2 * pw + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = top[:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = left[:, None] + torch.arange(w, device=x.device)  # [B, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


class BatchLoader:
    """Batches of a ``TensorImages`` on ``device``: (images, labels), images transformed there.

    ``shuffle`` draws a new order every pass from ``generator`` (reseed it for a reproducible epoch);
    ``shard`` (rank, world) gives every process of a distributed run its own share of each order.
    """

    def __init__(
        self,
        dataset: TensorImages,
        *,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.device = torch.device(device)
        self.rank, self.world = shard
        self.images, self.labels = dataset.on(self.device)  # uint8: a GPU holds CIFAR-10 in 180 MB

    def _count(self) -> int:
        return len(range(self.rank, len(self.dataset), self.world))

    def __len__(self) -> int:
        count = self._count()
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order[self.rank :: self.world].to(self.device)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.dataset.transform(self.images[index], self.generator), self.labels[index]


def loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool = False,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    workers: int = 0,
    shard: tuple[int, int] = (0, 1),
    seed: int = 0,
) -> BatchLoader | DataLoader:
    """Batches of ``dataset``: cut and transformed on ``device`` for an in-memory set, else a ``DataLoader``
    with ``workers`` processes (a ``DistributedSampler`` seeded with ``seed`` for ``shard``'s share under
    torchrun; call its ``set_epoch``)."""
    if isinstance(dataset, TensorImages):
        return BatchLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                           generator=generator, device=device, shard=shard)  # fmt: skip
    sampler = None
    if shard[1] > 1:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(
            dataset, num_replicas=shard[1], rank=shard[0], shuffle=shuffle, seed=seed
        )
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
        num_workers=workers, generator=generator, drop_last=drop_last,
        pin_memory=torch.device(device).type == "cuda",
    )  # fmt: skip
