"""`sbbench plot`: train a method on one task and seed, then draw figures of the model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sbbench.api import TrainedModel, TrainingFailed, train
from sbbench.cli.common import (
    UserError,
    app,
    configure,
    console,
    errors,
    method_named,
    parse_overrides,
    task_named,
)
from sbbench.methods.registry import MethodInfo
from sbbench.runner import build_data
from sbbench.tasks import Task


@app.command("plot")
def plot_command(
    method: Annotated[str, typer.Argument(help="method name or submission folder")],
    task: Annotated[str, typer.Option(help="task name (see `sbbench tasks`)")] = "lms5",
    seed: Annotated[int, typer.Option(help="seed of the data draw and the training run")] = 0,
    out: Annotated[Path, typer.Option(help="folder for the figures")] = Path("figures"),
    hp: Annotated[list[str] | None, typer.Option(help="hyperparameter override key=value (repeatable)")] = None,
    sc_coord: Annotated[int | None, typer.Option(help="S^c coordinate of the boundary plot (default: first)")]
    = None,
    anchor: Annotated[int, typer.Option(help="test example whose other coordinates the boundary plot keeps")] = 0,
    format: Annotated[list[str] | None, typer.Option(help="svg and/or png (repeatable; default both)")] = None,
) -> None:
    """Train a method on one task and seed, then write figures of it on the test split (SVG and PNG)."""
    try:
        from sbbench import plots
    except ImportError as error:
        raise UserError(f"`sbbench plot` needs matplotlib ({error}): pip install 'sbbench[plot]'") from None
    formats = format or list(plots.FORMATS)
    if bad := [f for f in formats if f not in plots.FORMATS]:
        raise UserError(f"--format must be svg or png, got {', '.join(bad)}")
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")
    task_spec = task_named(task)
    info = method_named(method)
    hparams = configure(info, parse_overrides(hp or []))
    data = build_data(task_spec, seed)
    space = data.space
    simple, complex_ = space.blocks["S"], space.blocks["Sc"]
    sc = complex_[0] if sc_coord is None else sc_coord
    if sc not in complex_:
        raise UserError(f"--sc-coord must be an S^c coordinate of {task} ({complex_[0]} .. {complex_[-1]}), got {sc}")
    if not 0 <= anchor < len(data.test):
        raise UserError(f"--anchor must index a test example (0 .. {len(data.test) - 1}), got {anchor}")
    trained = _train(info, hparams, task_spec, seed)
    model = trained.model
    x, y = data.test.x.to(trained.device), data.test.y.to(trained.device)
    label = f"{info.name} on {task_spec.name}, seed {seed}"
    figures = {
        "logits": plots.logit_histograms(model, x, y, space, seed=seed, title=label),
        "boundary": plots.decision_boundary(model, x, y, space, s_coord=simple[0], sc_coord=sc, anchor=anchor,
                                            title=f"{label}: P(y = 1) in the S / S$^c$ plane"),
        "profile": plots.reliance_profile(model, x, y, space, seed=seed, title=f"{label}: reliance per coordinate"),
    }
    for kind, figure in figures.items():
        for path in plots.save(figure, out / f"{info.name}_{task_spec.name}_seed{seed}_{kind}", formats):
            console.print(f"wrote {path}", markup=False, soft_wrap=True)


def _train(info: MethodInfo, hparams: dict[str, object], task: Task, seed: int) -> TrainedModel:
    """Fit the method on the task's draw for ``seed`` exactly as a scored job does (:func:`sbbench.api.train`:
    in a fit process, without the test split), showing its progress; a failure is one :class:`UserError` line."""
    with errors.status(f"training {info.name} on {task.name}, seed {seed}") as status:
        try:
            return train(info, task, seed, hparams=hparams,
                         log=lambda message: status.update(f"training {info.name} on {task.name}: {message}"))
        except TrainingFailed as error:
            raise UserError(f"{info.name}: {error.reason}") from None
