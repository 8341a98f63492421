"""The two table shapes ``leanml profile`` prints, in one place: a per-layer table and a two-column totals table.

Example:
    >>> layer_table("layers", ("layer", "MACs"), 1, [["conv", "1,024"]]).row_count
    1
    >>> totals_table("totals", [("params", "10")]).row_count
    1
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.table import Table


def layer_table(title: str, columns: Sequence[str], left: int, rows: Iterable[Sequence[str]]) -> Table:
    """A table of ``columns`` (the first ``left`` left-aligned, the rest numbers, right-aligned) holding ``rows``."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < left else "right")
    for row in rows:
        table.add_row(*row)
    return table


def totals_table(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    """A headerless (what, value) table with right-aligned values."""
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in rows:
        table.add_row(what, value)
    return table
