"""Options shared by every ``leanml`` sub-command, defined once.

Example:
    >>> from leanml.cli_options import DataOpt, ThreadsOpt  # use as ``data: DataOpt = None`` in a command
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Fashion-MNIST folder (default: $LEANML_DATA or Debian's path)")
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="torch threads (default: all)")]
