"""Data sources: CIFAR folders and image folders the tests create, the generated sets, and bad specs."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from rewriter.lab.data import (
    MEAN,
    STD,
    DataError,
    dataset_labels,
    load_data,
    parse_data_spec,
    synthetic_images,
)


def write_batch(path, images: np.ndarray, labels: list[int], label_key: str) -> None:
    """A batch in the layout of the python CIFAR files: a dict with a flat uint8 'data' array."""
    with open(path, "wb") as handle:
        pickle.dump({"data": images.reshape(len(images), -1), label_key: labels}, handle, protocol=2)


@pytest.fixture
def cifar10_dir(tmp_path):
    root = tmp_path / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        write_batch(
            root / f"data_batch_{i}", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), [i] * 4, "labels"
        )
    test_images = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    write_batch(root / "test_batch", test_images, [7, 8, 9], "labels")
    return tmp_path / "cifar10", test_images


def test_cifar10_is_read_from_the_python_batches(cifar10_dir):
    root, test_images = cifar10_dir
    data = load_data(f"cifar10:{root}", 32)
    assert (len(data.train), len(data.test), data.num_classes) == (20, 3, 10)
    image, label = data.test[1]
    assert label == 8
    expected = (
        torch.from_numpy(test_images[1]).float() / 255 - torch.tensor(MEAN).view(3, 1, 1)
    ) / torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(image, expected)
    assert sorted({data.train[i][1] for i in range(20)}) == [1, 2, 3, 4, 5]


def test_cifar_images_are_resized_to_the_input_size(cifar10_dir):
    root, _ = cifar10_dir
    data = load_data(f"cifar10:{root}", (48, 40))
    assert data.test[0][0].shape == (3, 48, 40)
    assert data.train[0][0].shape == (3, 48, 40)


def test_training_images_are_cropped_and_flipped_test_images_are_not(cifar10_dir):
    root, _ = cifar10_dir
    data = load_data(f"cifar10:{root}", 32)
    torch.manual_seed(0)
    assert any(not torch.equal(data.train[0][0], data.train[0][0]) for _ in range(5))
    assert torch.equal(data.test[0][0], data.test[0][0])
    assert torch.equal(data.train_plain[0][0], data.train_plain[0][0])


def test_cifar100_uses_the_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    write_batch(
        tmp_path / "train",
        rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8),
        [0, 99, 5, 5, 1],
        "fine_labels",
    )
    write_batch(
        tmp_path / "test", rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), [42, 43], "fine_labels"
    )
    data = load_data(f"cifar100:{tmp_path}", 32)
    assert data.num_classes == 100
    assert [data.test[i][1] for i in range(2)] == [42, 43]


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    root = tmp_path / "evil"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as handle:
            pickle.dump({"data": Exploit(), "labels": [0]}, handle)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(DataError, match=r"refusing to load .*system"):
            load_data(f"cifar10:{root}", 32)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "pwned").exists()


def test_a_folder_without_batches_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"no cifar10 batches .*pass download=True"):
        load_data(f"cifar10:{tmp_path}", 32)


def make_images(folder, classes: dict[str, int], size=(20, 24)) -> None:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


def test_an_image_folder_with_train_and_test(tmp_path):
    make_images(tmp_path / "train", {"cat": 3, "dog": 2, "emu": 2})
    make_images(tmp_path / "test", {"cat": 1, "dog": 1, "emu": 1})
    data = load_data(f"imagefolder:{tmp_path}", 16)
    assert (len(data.train), len(data.test), data.num_classes) == (7, 3, 3)
    assert data.test[0][0].shape == (3, 16, 16)
    assert [data.test[i][1] for i in range(3)] == [0, 1, 2]


def test_an_image_folder_without_splits_is_split_80_20(tmp_path):
    make_images(tmp_path, {"a": 5, "b": 5})
    data = load_data(f"imagefolder:{tmp_path}", 16)
    assert (len(data.train), len(data.test), data.num_classes) == (8, 2, 2)
    assert data.train[0][0].shape == (3, 16, 16)


def test_synthetic_is_deterministic_and_covers_all_classes():
    a, labels = synthetic_images(200, seed=3)
    b, _ = synthetic_images(200, seed=3)
    assert np.array_equal(a, b) and a.shape == (200, 3, 32, 32) and a.dtype == np.uint8
    assert set(labels.tolist()) == set(range(10))
    data = load_data("synthetic:300", 64)
    assert (len(data.train), len(data.test), data.num_classes) == (300, 200, 10)
    assert data.test[0][0].shape == (3, 64, 64)


def test_digits_are_scikit_learns_scans():
    pytest.importorskip("sklearn")
    data = load_data("digits", 32)
    assert data.num_classes == 10
    assert len(data.train) + len(data.test) == 1797  # the bundled set
    assert data.train[0][0].shape == (3, 32, 32)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("cifar", "unknown data source 'cifar'.*cifar10"),
        ("cifar10", "needs a folder: cifar10:DIR"),
        ("synthetic:lots", "optional number of training images"),
        ("imagefolder:/no/such/dir", "is not a folder"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(DataError, match=message):
        load_data(spec, 32)


def test_a_home_folder_is_expanded():
    assert parse_data_spec("cifar10:~/data").path == os.path.expanduser("~/data")


def test_test_classes_are_mapped_onto_the_training_classes_by_name(tmp_path):
    make_images(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    make_images(tmp_path / "test", {"a": 1, "c": 1})  # no b: c is class 2 of the training split, not 1
    data = load_data(f"imagefolder:{tmp_path}", 16)
    assert [data.test[i][1] for i in range(2)] == [0, 2]
    assert dataset_labels(data.test) == [0, 2]


def test_a_test_class_that_training_lacks_is_refused(tmp_path):
    make_images(tmp_path / "train", {"a": 2, "b": 2})
    make_images(tmp_path / "test", {"a": 1, "zebra": 1})
    with pytest.raises(DataError, match=r"classes the training split lacks \(zebra\)"):
        load_data(f"imagefolder:{tmp_path}", 16)


def test_a_corrupt_image_is_named(tmp_path):
    make_images(tmp_path / "train", {"a": 2, "b": 2})
    make_images(tmp_path / "test", {"a": 1, "b": 1})
    broken = tmp_path / "train" / "b" / "1.png"
    broken.write_bytes(broken.read_bytes()[:60])  # a truncated file
    with pytest.raises(DataError, match=r"b/1\.png: not a readable image"):  # named when decoded, at load
        load_data(f"imagefolder:{tmp_path}", 16)


def cifar10_with(tmp_path, **batch) -> str:
    """A cifar10 folder whose first training batch is ``batch`` (the others are well-formed)."""
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_batch(tmp_path / name, rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), [0, 1], "labels")
    with open(tmp_path / "data_batch_1", "wb") as handle:
        pickle.dump(batch, handle, protocol=2)
    return f"cifar10:{tmp_path}"


@pytest.mark.parametrize(
    ("batch", "fault"),
    [
        ({"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1]}, "3 images but 'labels' holds"),
        (
            {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]},
            "'data' must be uint8 rows of 3x32x32 = 3072 pixels, got uint8 of shape",
        ),
        ({"data": np.zeros((2, 3072), np.uint8)}, "a CIFAR batch needs 'data' and 'labels', found data"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, "label 10 is outside the 10 classes"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [-1, 0]}, "label -1 is outside"),
    ],
    ids=["count-mismatch", "wrong-shape", "no-labels", "label-too-large", "negative-label"],
)
def test_a_malformed_cifar_batch_is_named_with_its_fault(tmp_path, batch, fault):
    with pytest.raises(DataError, match=r"data_batch_1: " + re.escape(fault)):
        load_data(cifar10_with(tmp_path, **batch), 32)


def test_a_truncated_cifar_batch_is_named(tmp_path):
    spec = cifar10_with(tmp_path, data=np.zeros((2, 3072), np.uint8), labels=[0, 1])
    path = tmp_path / "data_batch_1"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=r"cannot read .*data_batch_1 as a CIFAR batch"):
        load_data(spec, 32)
