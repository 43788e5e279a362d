"""MNIST and CIFAR-10 through the real huggingface_hub code path, offline.

Each test builds a local Hub cache in the standard layout (``datasets--<org>--<name>/blobs``,
``refs/main``, ``snapshots/<revision>/<file>`` linking to the blob) holding parquet files in
the layout of the public repositories (``ylecun/mnist``: ``mnist/{train,test}-00000-of-00001.parquet``
with columns ``image`` and ``label``; ``uoft-cs/cifar10``: ``plain_text/...`` with ``img`` and
``label``; images as ``{"bytes": PNG, "path": ...}`` structs). The images are a few real ones
from the shared npz files; without those the tests skip.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from huggingface_hub import scan_cache_dir
from PIL import Image
from real_images import shared_data_dir

from sbbench.data.images.dominoes import DominoSpec, build_halves, make_dominoes
from sbbench.data.images.sources import (
    DEFAULT_HUB,
    DatasetUnavailable,
    HubRepo,
    ImageSource,
    canonical_order,
    hub_file,
    load_classes,
)

PER_CLASS = {"train": 40, "test": 15}
CLASSES = {"mnist": (0, 1, 7), "cifar10": (1, 9, 0)}
NPZ = {"mnist": "mnist_{split}.npz", "cifar10": "cifar10_4class_{split}.npz"}


@pytest.fixture(scope="module")
def subset() -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """A few real images per class and split: (dataset, split) -> (x uint8, y), rows in file order."""
    folder = shared_data_dir()
    out = {}
    for dataset, classes in CLASSES.items():
        for split, count in PER_CLASS.items():
            with np.load(folder / NPZ[dataset].format(split=split)) as archive:
                x, y = archive["x"], archive["y"].astype(np.int64)
            rows = np.concatenate([np.flatnonzero(y == label)[:count] for label in classes])
            out[dataset, split] = x[rows], y[rows]
    return out


def png_parquet(x: np.ndarray, y: np.ndarray, image_column: str, order: np.ndarray) -> bytes:
    """Parquet bytes with an image struct column (PNG bytes + path) and an int64 label column."""
    structs = []
    for i in order:
        buffer = io.BytesIO()
        Image.fromarray(x[i]).save(buffer, format="PNG")
        structs.append({"bytes": buffer.getvalue(), "path": f"{i}.png"})
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({image_column: pa.array(structs, type=image_type), "label": pa.array(y[order], pa.int64())})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def add_repo(cache: Path, repo: HubRepo, files: dict[str, bytes]) -> None:
    """Store ``files`` (path in repo -> bytes) as ``repo`` at ``repo.revision`` in a Hub cache folder."""
    root = cache / f"datasets--{repo.repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(repo.revision)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / repo.revision / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def build_cache(cache: Path, subset: dict, hub: dict[str, HubRepo], seed: int = 0) -> None:
    """Both datasets' parquet files, with rows in a random order (the Hub's order is not ours)."""
    rng = np.random.default_rng(seed)
    for dataset, repo in hub.items():
        files = {}
        for split, name in repo.files.items():
            x, y = subset[dataset, split]
            files[name] = png_parquet(x, y, repo.image_column, rng.permutation(len(y)))
        add_repo(cache, repo, files)


@pytest.fixture
def hub_source(tmp_path: Path, subset: dict) -> ImageSource:
    build_cache(tmp_path / "hub", subset, DEFAULT_HUB)
    return ImageSource(hub_cache=tmp_path / "hub", allow_download=False)


def test_the_cache_we_build_is_a_hub_cache_that_huggingface_hub_recognises(hub_source: ImageSource) -> None:
    info = scan_cache_dir(hub_source.hub_cache)
    found = {(repo.repo_type, repo.repo_id): {r.commit_hash for r in repo.revisions} for repo in info.repos}
    assert found == {("dataset", repo.repo_id): {repo.revision} for repo in DEFAULT_HUB.values()}


@pytest.mark.parametrize("allow_download", [False, True])
def test_pinned_files_resolve_from_the_cache_without_network(hub_source: ImageSource, allow_download: bool) -> None:
    source = hub_source.model_copy(update={"allow_download": allow_download})
    for dataset, repo in DEFAULT_HUB.items():
        for split, name in repo.files.items():
            path = hub_file(source, dataset, split)
            assert path == hub_source.hub_cache / f"datasets--{repo.repo_id.replace('/', '--')}" / "snapshots" \
                / repo.revision / name
            assert path.resolve().parent.name == "blobs"


def test_hub_images_decode_to_the_original_pixels_of_the_requested_classes(hub_source: ImageSource,
                                                                           subset: dict) -> None:
    for dataset, classes in CLASSES.items():
        for split in PER_CLASS:
            wanted = classes[:2]
            loaded = load_classes(hub_source, dataset, split, wanted)
            x, y = subset[dataset, split]
            assert sorted(loaded) == sorted(wanted)
            for label in wanted:
                np.testing.assert_array_equal(loaded[label], canonical_order(x[y == label]))


def test_hub_and_folder_sources_give_bit_identical_dominoes(hub_source: ImageSource, subset: dict,
                                                            tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for (dataset, split), (x, y) in subset.items():
        order = rng.permutation(len(y))
        np.savez(folder / NPZ[dataset].format(split=split), x=x[order], y=y[order])
    spec = DominoSpec(n_pool=10, n_val=4)
    from_hub = make_dominoes(spec, 5, hub_source, use_cache=False)
    from_folder = make_dominoes(spec, 5, ImageSource(data_dir=folder), use_cache=False)
    assert len(from_hub.train) == 2 * (PER_CLASS["train"] - 7) and len(from_hub.test) == 2 * PER_CLASS["test"]
    for name in ("train", "test", "pool", "val"):
        first, second = getattr(from_hub, name), getattr(from_folder, name)
        assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y), name
    for name, split in from_hub.extra_tests.items():
        assert torch.equal(split.x, from_folder.extra_tests[name].x), name


def test_repository_and_revision_are_configurable(tmp_path: Path, subset: dict,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    revision = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("SBBENCH_MNIST_REPO", "someone/mnist-mirror")
    monkeypatch.setenv("SBBENCH_MNIST_REVISION", revision)
    monkeypatch.delenv("SBBENCH_DATA_DIR", raising=False)
    source = ImageSource.from_env()
    assert source.hub["mnist"].repo_id == "someone/mnist-mirror" and source.hub["mnist"].revision == revision
    assert source.hub["cifar10"] == DEFAULT_HUB["cifar10"]
    build_cache(tmp_path / "hub", subset, source.hub)
    source = source.model_copy(update={"hub_cache": tmp_path / "hub", "allow_download": False})
    assert len(build_halves(DominoSpec(), 0, source)["train"]) == 2 * PER_CLASS["train"]


def test_a_missing_dataset_gives_one_message_that_says_how_to_get_it(tmp_path: Path) -> None:
    source = ImageSource(hub_cache=tmp_path / "empty", allow_download=False)
    with pytest.raises(DatasetUnavailable) as caught:
        load_classes(source, "cifar10", "train", (1, 9))
    message = str(caught.value)
    assert "sbbench images fetch" in message and "--data-dir" in message and "SBBENCH_DATA_DIR" in message
    assert "uoft-cs/cifar10" in message
