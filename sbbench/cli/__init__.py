"""The ``sbbench`` command line (typer + rich). Each module registers its commands on ``app``."""

from sbbench.cli import board, core, site, sweep  # noqa: F401  (importing registers the commands)
from sbbench.cli import images as _images  # noqa: F401  (registers `sbbench images`)
from sbbench.cli import verify as _verify  # noqa: F401  (registers `sbbench verify`)
from sbbench.cli.common import app, main

__all__ = ["app", "main"]
