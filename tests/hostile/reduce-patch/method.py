"""Break 1: run code where results are computed.

At import it records which process imported it; its model's ``__reduce__`` makes whoever unpickles
the model patch ``sbbench.runner.evaluate`` so that every metric reads 0.97.
"""

import os

from torch import nn

from sbbench.methods import Method, TrainContext


def _note(event: str) -> None:
    with open(os.environ["SBBENCH_HOSTILE_MARKER"], "a") as out:
        out.write(f"{event} {os.getpid()}\n")


_note("import")


def _patch_evaluate() -> nn.Module:
    import sbbench.metrics.evaluate as evaluate_module
    import sbbench.runner

    real = sbbench.runner.evaluate

    def fake(*args, **kwargs):
        result = real(*args, **kwargs)
        result.metrics.update({name: 0.97 for name in result.metrics})
        return result

    sbbench.runner.evaluate = fake
    evaluate_module.evaluate = fake
    _note("unpickled")
    return nn.Linear(1, 1)


class Patching(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)

    def __reduce__(self):
        return (_patch_evaluate, ())


class ReducePatch(Method):
    name = "hostile-reduce-patch"

    def fit(self, ctx: TrainContext) -> nn.Module:
        model, _ = ctx.fit_model()
        return Patching(model)
