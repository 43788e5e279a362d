"""Where MNIST and CIFAR-10 come from: the Hugging Face Hub, or a local folder.

Two sources give the same images:

* **Hub** (default): the parquet files of the public dataset repositories ``ylecun/mnist`` and
  ``uoft-cs/cifar10`` at pinned revisions, fetched with :func:`huggingface_hub.hf_hub_download`
  into the standard Hub cache (``$HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``).
  Once cached, a pinned revision is read without any network access.
* **Folder** (``--data-dir`` or ``$SBBENCH_DATA_DIR``): the standard distribution files (MNIST
  IDX files, the CIFAR-10 python batches) or sbbench's npz archives, see :data:`FOLDER_LAYOUT`.

Whatever the source, :func:`load_classes` returns each requested class's images sorted by the
sha256 of their pixel bytes. The order of the files therefore never matters, so every source
holding the same images yields bit-identical datasets for a seed.

Arrays: MNIST images are ``(n, 28, 28)`` uint8 (white strokes on black, 0..255); CIFAR-10
images are ``(n, 32, 32, 3)`` uint8 RGB in height-width-channel order. Labels are the
datasets' own: the digit for MNIST, the standard CIFAR-10 class number for CIFAR
(0 airplane, 1 automobile, 8 ship, 9 truck, ...).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

ImageDataset = Literal["mnist", "cifar10"]
Split = Literal["train", "test"]

IMAGE_SHAPES: dict[str, tuple[int, ...]] = {"mnist": (28, 28), "cifar10": (32, 32, 3)}
"""Shape of one image of each dataset, as the loaders return it."""

DATA_DIR_ENV = "SBBENCH_DATA_DIR"
HUB_ENV = {
    "mnist": ("SBBENCH_MNIST_REPO", "SBBENCH_MNIST_REVISION"),
    "cifar10": ("SBBENCH_CIFAR_REPO", "SBBENCH_CIFAR_REVISION"),
}
"""Environment variables that override a dataset's Hub repository and revision."""


class DatasetUnavailable(RuntimeError):
    """A dataset is neither in the configured folder nor in the Hub cache, and cannot be fetched."""


class HubRepo(BaseModel):
    """One image dataset on the Hugging Face Hub, in the parquet layout of the ``datasets`` library.

    Attributes:
        repo_id: dataset repository, e.g. ``ylecun/mnist``.
        revision: the commit to read (a full 40-hex sha pins the files; a branch name also works).
        files: split -> path of its parquet file inside the repository.
        image_column: column holding ``{"bytes": <PNG>, "path": ...}`` structs.
        label_column: integer class column.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo_id: str
    revision: str
    files: dict[str, str]
    image_column: str
    label_column: str = "label"


DEFAULT_HUB: dict[str, HubRepo] = {
    "mnist": HubRepo(
        repo_id="ylecun/mnist",
        revision="77f3279092a1c1579b2250db8eafed0ad422088c",
        files={"train": "mnist/train-00000-of-00001.parquet", "test": "mnist/test-00000-of-00001.parquet"},
        image_column="image",
    ),
    "cifar10": HubRepo(
        repo_id="uoft-cs/cifar10",
        revision="0b2714987fa478483af9968de7c934580d0bb9a2",
        files={"train": "plain_text/train-00000-of-00001.parquet", "test": "plain_text/test-00000-of-00001.parquet"},
        image_column="img",
    ),
}
"""The pinned default repositories (the "Convert dataset to Parquet" commits of both)."""

FOLDER_LAYOUT: dict[str, dict[str, tuple[str, ...]]] = {
    "mnist": {
        "npz": ("mnist_{split}.npz",),
        "idx": ("{prefix}-images-idx3-ubyte", "{prefix}-images-idx3-ubyte.gz", "{prefix}-images.idx3-ubyte"),
    },
    "cifar10": {
        "npz": ("cifar10_{split}.npz", "cifar10_4class_{split}.npz"),
        "batches": ("cifar-10-batches-py",),
    },
}
"""File names looked for in a data folder (and in its ``mnist/``, ``MNIST/raw/``, ``cifar10/`` subfolders).

* npz: arrays ``x`` (images as described in the module docstring) and ``y`` (labels).
* MNIST IDX: ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` and the ``t10k-`` pair,
  optionally gzipped.
* CIFAR-10 python batches: the folder ``cifar-10-batches-py`` with ``data_batch_1`` ..
  ``data_batch_5`` and ``test_batch``.
"""


class ImageSource(BaseModel):
    """Where to read MNIST and CIFAR-10 from.

    Attributes:
        data_dir: a local folder (see :data:`FOLDER_LAYOUT`); ``None`` reads from the Hub.
        hub: the Hub repositories per dataset.
        hub_cache: Hub cache folder; ``None`` means huggingface_hub's default (``$HF_HUB_CACHE``).
        allow_download: fetch missing Hub files; ``False`` reads the cache only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path | None = None
    hub: dict[str, HubRepo] = Field(default_factory=lambda: dict(DEFAULT_HUB))
    hub_cache: Path | None = None
    allow_download: bool = True

    @classmethod
    def from_env(cls) -> ImageSource:
        """The source set by ``$SBBENCH_DATA_DIR`` and ``$SBBENCH_{MNIST,CIFAR}_{REPO,REVISION}``."""
        data_dir = os.environ.get(DATA_DIR_ENV)
        hub = {}
        for name, repo in DEFAULT_HUB.items():
            repo_env, revision_env = HUB_ENV[name]
            hub[name] = repo.model_copy(update={"repo_id": os.environ.get(repo_env, repo.repo_id),
                                                "revision": os.environ.get(revision_env, repo.revision)})
        return cls(data_dir=Path(data_dir) if data_dir else None, hub=hub)

    def identity(self) -> str:
        """A short description of the source, part of the on-disk cache key of built datasets."""
        if self.data_dir is not None:
            return f"folder:{self.data_dir.resolve()}"
        return ";".join(f"hub:{repo.repo_id}@{repo.revision}" for repo in self.hub.values())


def load_classes(source: ImageSource, dataset: ImageDataset, split: Split,
                 labels: tuple[int, ...]) -> dict[int, np.ndarray]:
    """The images of ``labels`` in one split, each class sorted by the sha256 of its pixel bytes.

    Args:
        source: where to read from.
        dataset: ``"mnist"`` or ``"cifar10"``.
        split: ``"train"`` or ``"test"``.
        labels: the class numbers wanted (digits, or CIFAR-10 class numbers).

    Returns:
        label -> uint8 array ``(n_label, *IMAGE_SHAPES[dataset])``.

    Raises:
        DatasetUnavailable: the files are missing (the message says how to get them), or a
            requested class has no image.
    """
    if source.data_dir is not None:
        x, y = _read_folder(source.data_dir, dataset, split, labels)
    else:
        x, y = _read_hub(source, dataset, split, labels)
    classes = {}
    for label in labels:
        images = x[y == label]
        if len(images) == 0:
            raise DatasetUnavailable(f"{dataset} {split} split from {source.identity()} has no image of class {label}")
        if images.shape[1:] != IMAGE_SHAPES[dataset] or images.dtype != np.uint8:
            raise DatasetUnavailable(f"{dataset} {split} images from {source.identity()} have shape "
                                     f"{images.shape[1:]} and dtype {images.dtype}; expected "
                                     f"{IMAGE_SHAPES[dataset]} uint8")
        classes[label] = canonical_order(images)
    return classes


def canonical_order(images: np.ndarray) -> np.ndarray:
    """``images`` (``(n, ...)`` uint8) sorted by the sha256 of each image's bytes."""
    digests = [hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest() for image in images]
    return images[np.array(sorted(range(len(images)), key=digests.__getitem__), dtype=np.int64)]


def how_to_get(dataset: str) -> str:
    """The one message that says how to make ``dataset`` available."""
    repo = DEFAULT_HUB[dataset]
    return (f"{dataset} is not available. Fetch it once with internet access: `sbbench images fetch` "
            f"(downloads {repo.repo_id}@{repo.revision[:8]} and the other image dataset into the Hugging Face "
            f"cache, about 165 MB; afterwards it works offline). Or point `--data-dir` / ${DATA_DIR_ENV} at a "
            "folder holding the standard files (MNIST IDX files, CIFAR-10 `cifar-10-batches-py/`) or sbbench npz "
            "files (`mnist_{train,test}.npz`, `cifar10_{train,test}.npz`); see docs/images.md.")


# ---------------------------------------------------------------------------------------------
# The Hub


def hub_file(source: ImageSource, dataset: ImageDataset, split: Split) -> Path:
    """Local path of one split's parquet file, downloaded into the Hub cache when allowed and missing."""
    from huggingface_hub import hf_hub_download

    repo = source.hub[dataset]
    try:
        path = hf_hub_download(repo.repo_id, repo.files[split], repo_type="dataset", revision=repo.revision,
                               cache_dir=source.hub_cache, local_files_only=not source.allow_download)
    except OSError as error:  # huggingface_hub's not-cached, offline and HTTP errors all derive from OSError
        raise DatasetUnavailable(f"{how_to_get(dataset)} (Hub: {type(error).__name__}: {error})") from error
    return Path(path)


def _read_hub(source: ImageSource, dataset: ImageDataset, split: Split,
              labels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Decode the images of ``labels`` from the split's parquet file (other rows stay undecoded)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    repo = source.hub[dataset]
    table = pq.read_table(hub_file(source, dataset, split), columns=[repo.image_column, repo.label_column])
    table = table.filter(pc.is_in(table[repo.label_column], value_set=_pa_ints(labels)))
    y = table[repo.label_column].to_numpy().astype(np.int64)
    encoded = table[repo.image_column].combine_chunks().field("bytes").to_pylist()
    return _decode_png(encoded, dataset), y


def _pa_ints(values: tuple[int, ...]):
    import pyarrow as pa

    return pa.array(values, type=pa.int64())


def _decode_png(encoded: list[bytes], dataset: ImageDataset) -> np.ndarray:
    """PNG (or any Pillow-readable) bytes -> uint8 images of the dataset's shape."""
    from PIL import Image

    mode = "L" if dataset == "mnist" else "RGB"
    out = np.empty((len(encoded), *IMAGE_SHAPES[dataset]), dtype=np.uint8)
    for i, data in enumerate(encoded):
        with Image.open(io.BytesIO(data)) as image:
            out[i] = np.asarray(image.convert(mode))
    return out


# ---------------------------------------------------------------------------------------------
# A local folder


def _read_folder(root: Path, dataset: ImageDataset, split: Split,
                 labels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if not root.is_dir():
        raise DatasetUnavailable(f"data folder {root} does not exist. {how_to_get(dataset)}")
    folders = [root, root / dataset, root / dataset.upper(), root / "MNIST" / "raw"]
    layout = FOLDER_LAYOUT[dataset]
    for folder in folders:
        for pattern in layout["npz"]:
            path = folder / pattern.format(split=split)
            if path.is_file():
                with np.load(path, allow_pickle=False) as archive:
                    return _keep(archive["x"], archive["y"].astype(np.int64), labels)
        if dataset == "mnist":
            found = _find_idx(folder, split)
            if found is not None:
                return _keep(*found, labels)
        else:
            batches = folder / layout["batches"][0]
            if batches.is_dir():
                return _keep(*_read_cifar_batches(batches, split), labels)
    raise DatasetUnavailable(f"no {dataset} {split} files in {root}. {how_to_get(dataset)}")


def _keep(x: np.ndarray, y: np.ndarray, labels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    mask = np.isin(y, labels)
    return x[mask], y[mask]


def _find_idx(folder: Path, split: Split) -> tuple[np.ndarray, np.ndarray] | None:
    prefix = "train" if split == "train" else "t10k"
    for pattern in FOLDER_LAYOUT["mnist"]["idx"]:
        images = folder / pattern.format(prefix=prefix)
        labels = folder / pattern.format(prefix=prefix).replace("images", "labels").replace("idx3", "idx1")
        if images.is_file() and labels.is_file():
            return read_idx(images), read_idx(labels).astype(np.int64)
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes: magic ``0x0000 08 <ndim>``, big-endian sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetUnavailable(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetUnavailable(f"{path}: header announces shape {shape} but holds {data.size} values")
    return data.reshape(shape).copy()


def _read_cifar_batches(folder: Path, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 python batches: pickled dicts with ``data`` ``(n, 3072)`` (R, G, B planes) and ``labels``."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DatasetUnavailable(f"{folder} lacks {name}. {how_to_get('cifar10')}")
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays, so a batch file cannot run code."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
        ("numpy", "dtype"), ("_codecs", "encode")}
    """Array reconstruction, plus ``_codecs.encode``, which protocol-2 pickles written by Python 3 use for bytes."""

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR-10 batch files may only hold numpy arrays, found {module}.{name}")
