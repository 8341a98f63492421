"""Progress bars (rich) that can be switched off for tests and pipes.

Example:
    >>> sum(track(range(3), total=3, description="demo", enabled=False))
    3
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def make_console() -> Console:
    """The console leanml prints to (stderr, so ``--json`` output on stdout stays clean)."""
    return Console(stderr=True)


def track(iterable: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr when ``enabled`` (and stderr is a terminal)."""
    if not enabled:
        yield from iterable
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=make_console(), transient=True) as bar:
        task = bar.add_task(description, total=total, status="")
        for item in iterable:
            yield item
            bar.advance(task)
