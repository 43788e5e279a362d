"""Break 1 (the pipe): send the scoring process a pickle that runs code when it is loaded.

The fit process writes its messages to a pipe whose descriptor is in its command line; this
method writes a pickled object there itself, as a message, then fails.
"""

import sys
from multiprocessing.connection import Connection

from torch import nn

from sbbench.methods import Method, TrainContext

NOTE = "import os; open(os.environ['SBBENCH_HOSTILE_MARKER'], 'a').write(f'unpickled {os.getpid()}\\n')"


class Payload:
    """Whoever unpickles it runs ``NOTE`` (``exec`` is pickled by reference, so any process can load it)."""

    def __reduce__(self):
        return (exec, (NOTE,))


class PickleMessage(Method):
    name = "hostile-pickle-message"

    def fit(self, ctx: TrainContext) -> nn.Module:
        Connection(int(sys.argv[2]), readable=False).send(("model", Payload()))
        raise RuntimeError("the payload was sent")
