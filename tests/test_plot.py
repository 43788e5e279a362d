"""`sbbench plot`: figures of one trained model, checked against what ERM is known to do.

ERM on LMS-5 relies on the linear coordinate S alone, so its figures must show: separated
logits that collapse when S is randomized and stay when S^c is, a decision boundary at S = 0
whatever the S^c coordinate, and an AUC drop on coordinate 0 only.
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import TINY_TASK
from torch import nn
from typer.testing import CliRunner

from sbbench import plots
from sbbench.cli import app
from sbbench.cli.common import UserError
from sbbench.data.dataset import Dataset
from sbbench.methods.base import Track
from sbbench.methods.erm import ERM
from sbbench.runner import build_data, train_context
from sbbench.tasks import TASKS

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, Dataset]:
    data = build_data(TINY_TASK, 0)
    torch.manual_seed(0)
    model = ERM().fit(train_context(TINY_TASK, data, Track.T0, 0, CPU, lambda message: None))
    return model.eval(), data


@pytest.fixture
def tiny_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setitem(TASKS, TINY_TASK.name, TINY_TASK)
    yield TINY_TASK.name


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_logit_histograms_collapse_when_s_is_randomized_and_not_when_sc_is(trained) -> None:
    model, data = trained
    figure = plots.logit_histograms(model, data.test.x, data.test.y, data.space, seed=0)
    aucs = [float(ax.get_title().split("AUC ")[1].rstrip(")")) for ax in figure.axes]
    assert aucs[0] > 0.97 and aucs[2] > 0.97
    assert aucs[1] < 0.7
    counts = [sum(patch.get_height() for patch in ax.patches) for ax in figure.axes]
    assert counts == [len(data.test)] * 3, "every test example is in each panel's two histograms"


def test_decision_boundary_of_erm_is_the_line_s_equals_zero(trained) -> None:
    model, data = trained
    figure = plots.decision_boundary(model, data.test.x, data.test.y, data.space, s_coord=0, sc_coord=1, anchor=3)
    ax = figure.axes[0]
    boundary = next(c for c in ax.collections if list(getattr(c, "levels", [])) == [0.5])
    vertices = torch.tensor([v for path in boundary.get_paths() for v in path.vertices.tolist()])
    assert len(vertices) > 10
    span_sc = vertices[:, 1].max() - vertices[:, 1].min()
    assert span_sc > 1.5, "the boundary crosses the whole S^c range"
    assert vertices[:, 0].abs().max() < 0.25, "and stays at S = 0"
    with pytest.raises(ValueError, match="anchor must index a test example"):
        plots.decision_boundary(model, data.test.x, data.test.y, data.space, s_coord=0, sc_coord=1, anchor=10**6)


def test_reliance_profile_shows_the_auc_drop_on_s_only(trained) -> None:
    model, data = trained
    figure = plots.reliance_profile(model, data.test.x, data.test.y, data.space, seed=0)
    drops = [patch.get_height() for patch in figure.axes[0].patches]
    swapped = [patch.get_height() for patch in figure.axes[1].patches]
    assert len(drops) == len(swapped) == data.space.n_features
    assert drops[0] > 0.3 and max(abs(d) for d in drops[1:]) < 0.05
    assert swapped[0] < 0.1 and min(swapped[1:]) > 0.9
    assert [patch.get_facecolor() for patch in figure.axes[0].patches[:2]] == [
        pytest.approx((*_rgb(plots.S_COLOR), 1.0)), pytest.approx((*_rgb(plots.SC_COLOR), 1.0))]


def test_saved_figures_are_valid_and_byte_for_byte_reproducible(trained, tmp_path: Path) -> None:
    model, data = trained
    first, second = (plots.save(plots.reliance_profile(model, data.test.x, data.test.y, data.space, seed=0),
                                tmp_path / folder / "profile") for folder in ("a", "b"))
    assert [p.name for p in first] == ["profile.svg", "profile.png"]
    for one, other in zip(first, second, strict=True):
        assert one.read_bytes() == other.read_bytes()
    assert ElementTree.parse(first[0]).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert png_size(first[1]) == (1575, 720)
    with pytest.raises(ValueError, match="unknown figure format 'pdf'"):
        plots.save(plots.reliance_profile(model, data.test.x, data.test.y, data.space), tmp_path / "c", ["pdf"])


def test_cli_trains_and_writes_three_figures_in_both_formats(tiny_registered: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plot", "erm", "--task", tiny_registered, "--seed", "1", "--out",
                                      str(tmp_path)], standalone_mode=False)
    assert result.exception is None, result.output
    stems = [f"erm_{tiny_registered}_seed1_{kind}" for kind in ("boundary", "logits", "profile")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.{f}" for s in stems for f in ("png", "svg"))
    for stem in stems:
        width, height = png_size(tmp_path / f"{stem}.png")
        assert width > 600 and height > 400
        ElementTree.parse(tmp_path / f"{stem}.svg")


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "pdf"], "--format must be svg or png, got pdf"),
    (["--sc-coord", "0"], "--sc-coord must be an S^c coordinate of tiny-lms5 (1 .. 9), got 0"),
    (["--anchor", "500"], "--anchor must index a test example (0 .. 499), got 500"),
    (["--seed", "-1"], "--seed must be non-negative, got -1"),
])
def test_cli_rejects_bad_options_before_training(tiny_registered: str, tmp_path: Path, args: list[str],
                                                 message: str) -> None:
    result = CliRunner().invoke(app, ["plot", "erm", "--task", tiny_registered, "--out", str(tmp_path), *args],
                                standalone_mode=False)
    assert isinstance(result.exception, UserError) and str(result.exception) == message
    assert not any(tmp_path.iterdir())


def _rgb(color: str) -> tuple[float, float, float]:
    return tuple(int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
