"""Figures for papers: what one trained model does on a task's test set (needs matplotlib).

Three figures, each a matplotlib :class:`~matplotlib.figure.Figure` (no pyplot, no global
state), saved as SVG and PNG by :func:`save`:

* :func:`logit_histograms`: the margin ``logit_1 - logit_0`` per class, on the standard test
  set and with S or S^c randomized. A model that uses only S loses all separation when S is
  randomized and none when S^c is.
* :func:`decision_boundary`: P(y = 1) over the plane of the canonical S coordinate and one
  S^c coordinate, every other coordinate held at one test example's value.
* :func:`reliance_profile`: per canonical coordinate, the AUC lost when it alone is
  randomized and the accuracy when it alone is swapped with the other class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor, nn

from sbbench.data.features import FeatureSpace
from sbbench.metrics.classification import margin_scores, predict_logits, roc_auc
from sbbench.metrics.randomization import coordinate_dependence, randomize_block
from sbbench.seeding import derive_seed

CLASS_COLORS = ("#0072B2", "#E69F00")
S_COLOR, SC_COLOR = "#D55E00", "#56B4E9"
FORMATS = ("svg", "png")


def logit_histograms(model: nn.Module, x: Tensor, y: Tensor, space: FeatureSpace, seed: int = 0,
                     title: str = "") -> Figure:
    """Histograms of ``logit_1 - logit_0`` by class: standard, S randomized, S^c randomized."""
    panels = [("standard", x)]
    for block, label in (("S", "S randomized"), ("Sc", "S$^c$ randomized")):
        generator = torch.Generator().manual_seed(derive_seed(seed, f"plot_{block}"))
        panels.append((label, randomize_block(x, space, block, generator)))
    margins = [margin_scores(predict_logits(model, inputs)).cpu() for _, inputs in panels]
    labels = y.cpu()
    low = min(float(m.min()) for m in margins)
    high = max(float(m.max()) for m in margins)
    bins = np.linspace(low, high, 61)
    figure = Figure(figsize=(10.5, 3.2), layout="constrained")
    axes = figure.subplots(1, 3, sharex=True, sharey=True)
    for ax, (label, _), margin in zip(axes, panels, margins, strict=True):
        for cls in (0, 1):
            ax.hist(margin[labels == cls].numpy(), bins=bins, color=CLASS_COLORS[cls], alpha=0.6, label=f"y = {cls}")
        ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(f"{label} (AUC {roc_auc(margin, labels):.3f})")
        ax.set_xlabel("logit$_1$ - logit$_0$")
    axes[0].set_ylabel("test examples")
    axes[0].legend(frameon=False)
    if title:
        figure.suptitle(title)
    return figure


def decision_boundary(model: nn.Module, x: Tensor, y: Tensor, space: FeatureSpace, *, s_coord: int,
                      sc_coord: int, anchor: int = 0, resolution: int = 200, title: str = "") -> Figure:
    """P(y = 1) over canonical coordinates ``(s_coord, sc_coord)``, the others fixed at test example ``anchor``.

    The test points are drawn at their own values of the two coordinates (a projection).
    """
    if not 0 <= anchor < len(x):
        raise ValueError(f"anchor must index a test example (0 .. {len(x) - 1}), got {anchor}")
    z = space.to_canonical(x).cpu()
    spans = [_span(z[:, c]) for c in (s_coord, sc_coord)]
    grid_s, grid_c = (torch.linspace(low, high, resolution) for low, high in spans)
    mesh_c, mesh_s = torch.meshgrid(grid_c, grid_s, indexing="ij")
    points = z[anchor].repeat(resolution * resolution, 1)
    points[:, s_coord] = mesh_s.reshape(-1)
    points[:, sc_coord] = mesh_c.reshape(-1)
    device = next(model.parameters(), torch.empty(0)).device
    logits = predict_logits(model, space.from_canonical(points).to(device))
    probability = torch.softmax(logits.float(), dim=1)[:, 1].reshape(resolution, resolution).cpu().numpy()
    figure = Figure(figsize=(5.6, 4.6), layout="constrained")
    ax = figure.subplots()
    filled = ax.contourf(mesh_s.numpy(), mesh_c.numpy(), probability, levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                         alpha=0.75)
    ax.contour(mesh_s.numpy(), mesh_c.numpy(), probability, levels=[0.5], colors="black", linewidths=1.5)
    shown = torch.arange(len(z))[: min(len(z), 1500)]
    labels = y.cpu()[shown]
    for cls in (0, 1):
        chosen = shown[labels == cls]
        ax.scatter(z[chosen, s_coord], z[chosen, sc_coord], s=5, color=CLASS_COLORS[cls], edgecolors="none",
                   label=f"test, y = {cls}")
    ax.set_xlabel(f"canonical coordinate {s_coord} (S)")
    ax.set_ylabel(f"canonical coordinate {sc_coord} (S$^c$)")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    figure.colorbar(filled, ax=ax, label="P(y = 1)")
    ax.set_title(title or f"decision boundary; other coordinates from test example {anchor}", fontsize=10)
    return figure


def reliance_profile(model: nn.Module, x: Tensor, y: Tensor, space: FeatureSpace, seed: int = 0,
                     title: str = "") -> Figure:
    """Per canonical coordinate: AUC lost when it is randomized, accuracy when it is swapped."""
    auc = roc_auc(margin_scores(predict_logits(model, x)), y)
    drop = auc - coordinate_dependence(model, x, y, space, mode="random", seed=derive_seed(seed, "coord_random_auc"))
    swapped = coordinate_dependence(model, x, y, space, mode="swap", seed=derive_seed(seed, "coord_swap_acc"))
    simple = set(space.blocks.get("S", ()))
    colors = [S_COLOR if c in simple else SC_COLOR for c in range(space.n_features)]
    coordinates = np.arange(space.n_features)
    figure = Figure(figsize=(10.5, 4.8), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.bar(coordinates, drop.numpy(), color=colors)
    top.axhline(0.0, color="black", linewidth=0.8)
    top.set_ylabel("AUC drop\n(coordinate randomized)")
    bottom.bar(coordinates, swapped.numpy(), color=colors)
    bottom.axhline(0.5, color="black", linewidth=0.8, linestyle="--")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("accuracy\n(coordinate swapped)")
    bottom.set_xlabel("canonical coordinate")
    handles = [Patch(color=S_COLOR, label="S"), Patch(color=SC_COLOR, label="S$^c$")]
    top.legend(handles=handles, frameon=False)
    if title:
        figure.suptitle(title)
    return figure


def save(figure: Figure, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``stem.<format>`` for each format (reproducible bytes: no dates, fixed SVG ids)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown figure format {fmt!r}; use {' or '.join(FORMATS)}")
        path = stem.with_name(f"{stem.name}.{fmt}")
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        with mpl.rc_context({"svg.hashsalt": "sbbench", "svg.fonttype": "none"}):
            figure.savefig(path, format=fmt, dpi=150, metadata=metadata)
        written.append(path)
    return written


def _span(values: Tensor) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low or 1.0)
    return low - pad, high + pad
