"""Progress on stderr: rich bars on a terminal, plain throttled lines in logs and pipes, off for tests.

:func:`track` wraps a loop of known length; :func:`phase` wraps one long step (loading, compiling,
writing) that has no count. Both write to stderr, so ``--json`` output on stdout stays clean, and both
take ``enabled`` (the verbs' ``--progress/--no-progress``).

When stderr is not a terminal (``make demo | tee log``, CI), :func:`track` prints a plain line each time
another 10 % is done, at most one every :data:`PLAIN_INTERVAL_SECONDS`, and always a last line:

    sensitivity scan: 12/40 (30 %), 42.1 s
    sensitivity scan: 40/40 done in 2 min 3 s

Example:
    >>> sum(track(range(3), total=3, description="demo", enabled=False))
    3
    >>> with phase("compiling", enabled=False):
    ...     pass
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

PLAIN_INTERVAL_SECONDS = 5.0
"""Plain progress lines are at least this far apart (the last line excepted)."""

PLAIN_STEP = 0.1
"""A plain progress line when at least this fraction more of the work is done."""


def make_console() -> Console:
    """The console leanml prints to (stderr, so ``--json`` output on stdout stays clean)."""
    return Console(stderr=True)


def interactive(console: Console) -> bool:
    """Whether ``console`` can show a live bar (a terminal or a notebook), not a log or a pipe.

    Example:
        >>> import io
        >>> interactive(Console(file=io.StringIO()))
        False
    """
    return console.is_terminal or console.is_jupyter


def duration(seconds: float) -> str:
    """Seconds for people: ``"12.3 s"`` under a minute, ``"2 min 3 s"``, ``"1 h 2 min"``.

    Example:
        >>> duration(12.34), duration(123.4), duration(3725.0)
        ('12.3 s', '2 min 3 s', '1 h 2 min')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def track(iterable: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate with progress on stderr when ``enabled``: a rich bar on a terminal, else :func:`plain_track` lines.

    Example:
        >>> list(track("ab", total=2, description="letters", enabled=False))
        ['a', 'b']
    """
    if not enabled:
        yield from iterable
        return
    console = make_console()
    if not interactive(console):
        yield from plain_track(iterable, total, description, sys.stderr)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total, status="")
        for item in iterable:
            yield item
            bar.advance(task)


def plain_track(
    iterable: Iterable[T],
    total: int,
    description: str,
    stream: TextIO,
    interval: float = PLAIN_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[T]:
    """Iterate, writing ``description: n/total (p %), elapsed`` lines to ``stream`` for logs: one each time another
    :data:`PLAIN_STEP` of ``total`` is done and ``interval`` seconds have passed since the last, and a last line
    ``description: n/total done in elapsed`` when the loop ends (not when it is abandoned or fails).

    Example:
        >>> import io
        >>> log = io.StringIO()
        >>> sum(plain_track(range(4), 4, "demo", log, clock=lambda: 0.0))
        6
        >>> log.getvalue()
        'demo: 4/4 done in 0.0 s\\n'
    """
    start = last = clock()
    next_fraction = PLAIN_STEP
    n = 0
    for item in iterable:
        yield item
        n += 1
        now = clock()
        if total > 0 and n < total and n / total >= next_fraction and now - last >= interval:
            print(f"{description}: {n}/{total} ({n / total:.0%}), {duration(now - start)}", file=stream, flush=True)
            last = now
            next_fraction = (int(n / total / PLAIN_STEP + 1e-9) + 1) * PLAIN_STEP
    count = f"{n}/{total}" if total > 0 else str(n)
    print(f"{description}: {count} done in {duration(clock() - start)}", file=stream, flush=True)


@contextmanager
def phase(
    description: str,
    enabled: bool = True,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Announce one long step with no count: ``description…`` when it starts and ``description done in 12.3 s``
    when it ends (nothing more if it raises: the error speaks). Plain lines on ``stream`` (default stderr),
    terminal or not; no live display, so a :func:`track` bar may run inside it.

    Example:
        >>> import io
        >>> log = io.StringIO()
        >>> with phase("compiling kernels", stream=log, clock=lambda: 0.0):
        ...     pass
        >>> print(log.getvalue(), end="")
        compiling kernels…
        compiling kernels done in 0.0 s
    """
    if not enabled:
        yield
        return
    out = stream or sys.stderr
    print(f"{description}…", file=out, flush=True)
    start = clock()
    yield
    print(f"{description} done in {duration(clock() - start)}", file=out, flush=True)
