"""The ``sbbench`` command line (typer + rich). Each module registers one command or command group on ``app``."""

# Importing a module registers its commands, in this order in `sbbench --help`.
from sbbench.cli import catalog, score, data, leaderboard, compare, plot, sweep, verify, suite, images  # noqa: F401, I001
from sbbench.cli.common import app, main

__all__ = ["app", "main"]
