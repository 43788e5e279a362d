"""`sbbench data`: export the benchmark's datasets for any framework."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from sbbench.cli.common import app, console, task_named

data_app = typer.Typer(no_args_is_help=True, help="Export the benchmark's datasets.")
app.add_typer(data_app, name="data")


@data_app.command("export")
def export_command(
    task: Annotated[str, typer.Argument(help="task name")],
    out: Annotated[Path, typer.Option(help="output .npz file")],
    seed: Annotated[int, typer.Option(help="data seed")] = 0,
) -> None:
    """Write a task's data for one seed as .npz (see docs/data-format.md)."""
    data = task_named(task).build(seed)
    rotation = data.space.rotation
    np.savez_compressed(
        out,
        x_train=data.train.x.numpy(), y_train=data.train.y.numpy(),
        x_test=data.test.x.numpy(), y_test=data.test.y.numpy(),
        rotation=np.eye(data.space.n_features, dtype=np.float32) if rotation is None else rotation.numpy(),
        block_S=np.asarray(data.space.blocks["S"]), block_Sc=np.asarray(data.space.blocks["Sc"]),
    )
    console.print(f"wrote {out} ({len(data.train)} train, {len(data.test)} test, d={data.space.n_features})")
