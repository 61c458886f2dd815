"""Image folders: decoded once into a cache that a changed folder makes stale, the input size read from the
images, batches augmented on the device, and parts of a class-sorted folder that read every class."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from rewriter.lab import imagefolder
from rewriter.lab.batches import BatchLoader, augment_batch
from rewriter.lab.data import DataError, dataset_labels, load_data, native_size, parse_data_spec
from rewriter.lab.sampling import sample


def class_sorted(folder, counts: dict[str, int], size=(12, 12)) -> None:
    """One folder per class, each image filled with its class's grey level (class k: 40 * k), so that a
    picture tells its class; files in class order, as every image folder and CIFAR-10's layout are."""
    for k, (name, count) in enumerate(counts.items()):
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((size[0], size[1], 3), 40 * k, dtype=np.uint8)).save(
                folder / name / f"{i}.png"
            )


@pytest.fixture
def folder(tmp_path):
    class_sorted(tmp_path / "data" / "train", {"a": 30, "b": 30, "c": 30, "d": 30})
    class_sorted(tmp_path / "data" / "test", {"a": 10, "b": 10, "c": 10, "d": 10})
    return tmp_path / "data"


def test_the_input_size_is_the_one_every_image_has(folder, tmp_path):
    assert native_size(parse_data_spec(f"imagefolder:{folder}")) == (12, 12)
    Image.fromarray(np.zeros((9, 7, 3), dtype=np.uint8)).save(folder / "train" / "a" / "odd.png")
    assert native_size(parse_data_spec(f"imagefolder:{folder}")) is None  # mixed sizes: it must be given


def test_a_folder_is_decoded_once_and_the_cache_holds_its_pixels(folder, monkeypatch):
    first = load_data(f"imagefolder:{folder}", 12)
    assert Counter(dataset_labels(first.train)) == {0: 30, 1: 30, 2: 30, 3: 30}
    grey = first.train.images[:, 0, 0, 0]  # class k is grey level 40 k
    assert torch.equal(grey, 40 * first.train.labels.to(torch.uint8))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is fresh")

    monkeypatch.setattr(imagefolder, "_decode_all", no_decoding)
    again = load_data(f"imagefolder:{folder}", 12)
    assert torch.equal(again.train.images, first.train.images)
    assert sorted(os.listdir(folder)) == ["test", "train"]  # the cache lives elsewhere, never in the input


def test_a_changed_folder_makes_the_cache_stale(folder):
    load_data(f"imagefolder:{folder}", 12)
    Image.fromarray(np.full((12, 12, 3), 40, dtype=np.uint8)).save(folder / "train" / "b" / "new.png")
    said = []
    data = load_data(f"imagefolder:{folder}", 12, progress=said.append)
    assert len(data.train) == 121
    assert any("stale" in line for line in said)


def test_a_folder_over_the_memory_limit_streams_from_disk(folder):
    said = []
    data = load_data(f"imagefolder:{folder}", 12, memory_limit=1000, progress=said.append)
    assert not hasattr(data.train, "images")  # read image by image
    assert len(data.train) == 120 and data.test[0][0].shape == (3, 12, 12)
    assert any("exceed the memory limit" in line for line in said)


def test_a_sample_of_a_class_sorted_split_reads_every_class(folder):
    data = load_data(f"imagefolder:{folder}", 12, train_samples=40, test_samples=8)
    assert Counter(dataset_labels(data.train)) == {0: 10, 1: 10, 2: 10, 3: 10}
    assert Counter(dataset_labels(data.test)) == {0: 2, 1: 2, 2: 2, 3: 2}
    assert data.subset["of"] == {"train": 120, "test": 40}
    measured = sample(data.test, 4)
    assert Counter(dataset_labels(measured)) == {0: 1, 1: 1, 2: 1, 3: 1}


def test_more_samples_than_the_split_holds_is_refused(folder):
    with pytest.raises(DataError, match="cannot draw 500 items from a split of 120"):
        load_data(f"imagefolder:{folder}", 12, train_samples=500)


def test_the_batch_augmentation_crops_within_the_padding_and_flips():
    """A batch of one image whose pixels are their column numbers: every crop is a shift of at most 1/8 of
    the size (zeros come in from the padding) and a flip reverses the columns."""
    x = torch.arange(16.0).repeat(1, 1, 16, 1) + 1  # [1, 1, 16, 16], columns 1 .. 16
    seen_flip = seen_plain = False
    for seed in range(40):
        out = augment_batch(x, torch.Generator().manual_seed(seed))
        row = out[0, 0, 8]
        inner = row[row > 0]
        steps = inner[1:] - inner[:-1]
        assert len(inner) >= 14  # at most 2 columns of padding come in
        assert bool((steps == 1).all()) or bool((steps == -1).all())
        seen_flip |= bool((steps == -1).all())
        seen_plain |= bool((steps == 1).all())
    assert seen_flip and seen_plain


def test_batches_of_an_epoch_read_every_image_once_and_shards_split_it():
    from rewriter.lab.batches import TensorImages

    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 4, 4).contiguous()
    data = TensorImages(images, torch.arange(10), (4, 4), augment=False)
    whole = [int(y) for _, ys in BatchLoader(data, batch_size=3, shuffle=True) for y in ys]
    assert sorted(whole) == list(range(10))
    shards = [[int(y) for _, ys in BatchLoader(data, batch_size=2, shuffle=True, shard=(r, 2)) for y in ys]
              for r in (0, 1)]  # fmt: skip
    assert sorted(shards[0] + shards[1]) == list(range(10)) and not set(shards[0]) & set(shards[1])


def test_a_folder_of_one_class_is_refused(tmp_path):
    class_sorted(tmp_path / "one", {"only": 5})
    with pytest.raises(DataError, match="has one class folder \\(only\\); classification needs two or more"):
        load_data(f"imagefolder:{tmp_path / 'one'}", 12)


def test_a_link_loop_in_a_folder_is_refused_not_followed_forever(tmp_path):
    class_sorted(tmp_path / "loop", {"a": 3, "b": 3})
    (tmp_path / "loop" / "a" / "again").symlink_to(tmp_path / "loop" / "a", target_is_directory=True)
    with pytest.raises(DataError, match="links back to a folder already read"):
        load_data(f"imagefolder:{tmp_path / 'loop'}", 12)


def test_a_cache_folder_inside_the_data_is_never_written(folder, monkeypatch):
    monkeypatch.setenv("REWRITER_CACHE", str(folder / "cache"))
    said = []
    data = load_data(f"imagefolder:{folder}", 12, progress=said.append)
    assert len(data.train) == 120 and not (folder / "cache").exists()
    assert any("not caching" in line for line in said)


def test_a_split_is_moved_to_a_device_once_and_a_pickle_carries_no_device_copy(monkeypatch):
    import pickle

    from rewriter.lab.batches import TensorImages

    data = TensorImages(torch.zeros(6, 3, 4, 4, dtype=torch.uint8), torch.arange(6), (4, 4), augment=False)
    moves = []
    real_to = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", lambda t, *a, **k: moves.append(a) or real_to(t, *a, **k))
    for _ in range(3):  # three scorings of the split on the (meta) device: images and labels moved once
        loader = BatchLoader(data, batch_size=4, device="meta")
    assert len(moves) == 2 and loader.images.is_meta
    assert BatchLoader(data, batch_size=4).images is data.images  # the CPU reads the split in place
    monkeypatch.undo()
    assert pickle.loads(pickle.dumps(data))._copies == {}
