"""``python -m sbbench``: the same as the ``sbbench`` command."""

from sbbench.cli import main

main()
