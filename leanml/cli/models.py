"""``leanml models``: list the reference models.

Example:
    $ leanml models
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False)


@app.command("models")
def models_cmd() -> None:
    """List the reference models."""
    from leanml.models import available_models

    for name, summary in available_models().items():
        print(f"{name:14s} {summary}")
