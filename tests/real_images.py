"""Where the real MNIST / CIFAR-10 files of ``../shared/data`` are, for the real-image tests."""

from __future__ import annotations

from pathlib import Path

import pytest

CANDIDATES = (Path(__file__).resolve().parents[1].parent / "shared" / "data", Path("/work/shared/data"))


def shared_data_dir() -> Path:
    """The folder holding ``mnist_train.npz`` and ``cifar10_4class_train.npz``; skips the test if none does."""
    for folder in CANDIDATES:
        if (folder / "mnist_train.npz").is_file() and (folder / "cifar10_4class_train.npz").is_file():
            return folder
    pytest.skip("the real MNIST/CIFAR-10 npz files are absent (looked in ../shared/data relative to the "
                "repository root and /work/shared/data)")
