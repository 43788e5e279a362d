"""A local data folder: MNIST IDX files, CIFAR-10 python batches and sbbench npz files give the same images."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from real_images import shared_data_dir

from sbbench.data.images.sources import (
    DatasetUnavailable,
    ImageSource,
    canonical_order,
    load_classes,
    read_idx,
)

PER_CLASS = 30


@pytest.fixture(scope="module")
def subset() -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """30 real images of each of three classes per dataset and split, in file order."""
    folder = shared_data_dir()
    out = {}
    files = (("mnist", "mnist_{}.npz", (0, 1, 4)), ("cifar10", "cifar10_4class_{}.npz", (1, 9, 0)))
    for dataset, name, classes in files:
        for split in ("train", "test"):
            with np.load(folder / name.format(split)) as archive:
                x, y = archive["x"], archive["y"].astype(np.int64)
            rows = np.concatenate([np.flatnonzero(y == label)[:PER_CLASS] for label in classes])
            out[dataset, split] = x[rows], y[rows]
    return out


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def write_cifar_batches(folder: Path, subset: dict) -> None:
    """The python-pickle layout: data (n, 3072) uint8 as R, G, B planes, labels a list, bytes keys."""
    folder.mkdir(parents=True)
    x, y = subset["cifar10", "train"]
    names = [f"data_batch_{i}" for i in range(1, 6)]
    for name, rows in zip(names, np.array_split(np.random.default_rng(0).permutation(len(y)), 5), strict=True):
        batch = {b"batch_label": name.encode(), b"labels": y[rows].tolist(),
                 b"data": x[rows].transpose(0, 3, 1, 2).reshape(len(rows), -1), b"filenames": [b"f.png"] * len(rows)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    x, y = subset["cifar10", "test"]
    batch = {b"labels": y.tolist(), b"data": x.transpose(0, 3, 1, 2).reshape(len(y), -1)}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_and_cifar_batches_give_the_same_images_as_npz(subset: dict, tmp_path: Path,
                                                                compress: bool) -> None:
    standard, npz = tmp_path / "standard", tmp_path / "npz"
    (standard / "MNIST" / "raw").mkdir(parents=True)
    npz.mkdir()
    suffix = ".gz" if compress else ""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = subset["mnist", split]
        write_idx(standard / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte{suffix}", x, compress)
        write_idx(standard / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte{suffix}", y, compress)
        for dataset in ("mnist", "cifar10"):
            order = np.random.default_rng(2).permutation(len(subset[dataset, split][1]))
            np.savez(npz / f"{dataset}_{split}.npz", x=subset[dataset, split][0][order],
                     y=subset[dataset, split][1][order])
    write_cifar_batches(standard / "cifar-10-batches-py", subset)
    for dataset, labels in (("mnist", (0, 4)), ("cifar10", (9, 1))):
        for split in ("train", "test"):
            from_standard = load_classes(ImageSource(data_dir=standard), dataset, split, labels)
            from_npz = load_classes(ImageSource(data_dir=npz), dataset, split, labels)
            x, y = subset[dataset, split]
            for label in labels:
                np.testing.assert_array_equal(from_standard[label], canonical_order(x[y == label]))
                np.testing.assert_array_equal(from_npz[label], from_standard[label])


def test_canonical_order_does_not_depend_on_the_file_order(subset: dict) -> None:
    x, _ = subset["cifar10", "test"]
    shuffled = x[np.random.default_rng(5).permutation(len(x))]
    np.testing.assert_array_equal(canonical_order(x), canonical_order(shuffled))


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": os.system, b"labels": []}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="only hold numpy arrays"):
        load_classes(ImageSource(data_dir=tmp_path), "cifar10", "train", (1,))


def test_a_file_that_is_not_idx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x03" + bytes(12))
    with pytest.raises(DatasetUnavailable, match="not an IDX file"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 8, 1]) + np.asarray([5], dtype=">u4").tobytes() + bytes(3))
    with pytest.raises(DatasetUnavailable, match="announces shape"):
        read_idx(path)


def test_a_folder_without_the_files_gives_one_message_that_says_how_to_get_them(tmp_path: Path) -> None:
    for folder in (tmp_path, tmp_path / "missing"):
        with pytest.raises(DatasetUnavailable) as caught:
            load_classes(ImageSource(data_dir=folder), "mnist", "train", (0, 1))
        assert "sbbench images fetch" in str(caught.value) and "--data-dir" in str(caught.value)


def test_a_class_the_source_lacks_is_named(subset: dict, tmp_path: Path) -> None:
    x, y = subset["mnist", "train"]
    np.savez(tmp_path / "mnist_train.npz", x=x, y=y)
    with pytest.raises(DatasetUnavailable, match="no image of class 7"):
        load_classes(ImageSource(data_dir=tmp_path), "mnist", "train", (0, 7))
