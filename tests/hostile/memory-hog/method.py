"""Break 9: stay under a per-process memory limit while the processes ``fit`` starts use more together."""

import subprocess
import sys
import time

from torch import nn

from sbbench.methods import HParams, Method, TrainContext

HOLD = "import sys, time; block = bytearray(int(sys.argv[1]) * 1024 * 1024); time.sleep(120)"


class HogHParams(HParams):
    megabytes: int = 700
    processes: int = 3


class MemoryHog(Method):
    name = "hostile-memory-hog"
    HParams = HogHParams

    def fit(self, ctx: TrainContext) -> nn.Module:
        for _ in range(self.hparams.processes):
            subprocess.Popen([sys.executable, "-c", HOLD, str(self.hparams.megabytes)])
        time.sleep(8)
        model, _ = ctx.fit_model()
        return model
