"""``python -m lab.cli``: the ``dsrlab`` command without the installed entry point."""

from lab.cli import main

main()
