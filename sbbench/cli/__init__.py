"""The ``sbbench`` command line (typer + rich). Each module registers its commands on ``app``."""

from sbbench.cli import board, core  # noqa: F401  (importing registers the commands)
from sbbench.cli.common import app, main

__all__ = ["app", "main"]
