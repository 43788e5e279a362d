"""Break 2: a T0 method looking for the task (and so for which block is S) through its context.

It searches the backbone factory's closure and attributes for a ``Task``, and tries to regenerate
its job's data from the public generator with ``ctx.seed``. It records what it found.
"""

import os

import torch
from torch import nn

from sbbench.methods import Method, TrainContext
from sbbench.tasks import TASKS, Task


def _note(event: str) -> None:
    with open(os.environ["SBBENCH_HOSTILE_MARKER"], "a") as out:
        out.write(f"{event}\n")


def _reachable_tasks(factory) -> list:
    found = []
    for cell in getattr(factory, "__closure__", None) or ():
        if isinstance(cell.cell_contents, Task):
            found.append(cell.cell_contents)
    for value in getattr(factory, "__dict__", {}).values():
        if isinstance(value, Task):
            found.append(value)
    return found


class PeekTask(Method):
    name = "hostile-peek-task"

    def fit(self, ctx: TrainContext) -> nn.Module:
        _note(f"task-in-factory {bool(_reachable_tasks(ctx.make_backbone))}")
        data = TASKS["lms5-smoke"].build(ctx.seed)  # the task it is scored on (any public task works alike)
        regenerated = data.train.x.shape == ctx.train.x.shape and torch.equal(data.train.x, ctx.train.x.cpu())
        _note(f"regenerated-data {regenerated}")
        model, _ = ctx.fit_model()
        return model
