"""``python -m flows.cli``: the ``seedfield`` command."""

from flows.cli import main

main()
