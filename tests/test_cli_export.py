"""`sbbench data export`: the .npz a participant gets for a synthetic task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from sbbench.cli import app

EXPECTED_KEYS = {"x_train", "y_train", "x_test", "y_test", "rotation", "block_S", "block_Sc"}


def test_export_lms5_writes_rotated_data_whose_first_canonical_coordinate_predicts_y(tmp_path: Path) -> None:
    out = tmp_path / "d.npz"
    result = CliRunner().invoke(app, ["data", "export", "lms5", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out) as archive:
        assert set(archive.files) == EXPECTED_KEYS
        data = {key: archive[key] for key in archive.files}
    assert data["x_train"].shape == (100_000, 50) and data["x_train"].dtype == np.float32
    assert data["x_test"].shape == (10_000, 50) and data["x_test"].dtype == np.float32
    assert data["y_train"].shape == (100_000,) and data["y_test"].shape == (10_000,)
    assert set(np.unique(data["y_train"])) == {0, 1}
    assert data["rotation"].shape == (50, 50)
    np.testing.assert_allclose(data["rotation"] @ data["rotation"].T, np.eye(50), atol=1e-5)
    np.testing.assert_array_equal(data["block_S"], [0])
    np.testing.assert_array_equal(data["block_Sc"], np.arange(1, 50))
    assert not np.allclose(data["x_train"][:, 0] > 0, data["y_train"] == 1), "inputs are rotated"
    for split in ("train", "test"):
        canonical = data[f"x_{split}"] @ data["rotation"].T
        np.testing.assert_array_equal(canonical[:, 0] > 0, data[f"y_{split}"] == 1)


def test_export_rejects_unknown_task(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "export", "no-such-task", "--out", str(tmp_path / "x.npz")])
    assert result.exit_code != 0
    assert not (tmp_path / "x.npz").exists()
