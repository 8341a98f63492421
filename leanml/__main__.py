"""``python -m leanml`` runs the CLI."""

from leanml.cli import main

main()
