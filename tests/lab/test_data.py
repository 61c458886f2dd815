"""Data sources: CIFAR folders and image folders the tests create, the generated sets, and bad specs."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from rewriter.lab.data import MEAN, STD, DataError, load_data, parse_data_spec, synthetic_images


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
    with pytest.raises(DataError, match=r"no cifar10 batches .*pass --download"):
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
