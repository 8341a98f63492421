"""The run's stage table and verdicts on the terminal (the HTML report holds the full picture).

Example:
    >>> fmt_kib(2048)
    '2.0'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from leanml.progress import make_console


def fmt_kib(n: float | None) -> str:
    """Bytes as KiB with one decimal, or an em dash."""
    return "—" if n is None else f"{n / 1024:,.1f}"


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def stage_table(record: dict[str, Any]) -> Table:
    """One row per stage plus the unpruned int8 reference: accuracy, params, MACs, flash, SRAM, latency, time."""
    table = Table(title=record.get("name", "compress"))
    for col in ("stage", "what", "accuracy", "params", "MACs", "flash KiB", "SRAM KiB", "latency ms", "time s"):
        table.add_column(col, justify="left" if col in ("stage", "what") else "right")
    rows = list(record.get("stages", []))
    int8 = record.get("int8_baseline")
    for row in rows[:1] + ([int8] if int8 else []) + rows[1:]:
        acc = row.get("accuracy")
        table.add_row(
            row["stage"] + (" (cached)" if row.get("cached") else ""),
            row.get("label", ""),
            "—" if acc is None else f"{100 * acc:.2f}%",
            _fmt(row.get("params"), ","),
            _fmt(row.get("macs"), ","),
            fmt_kib(row.get("flash_bytes")),
            fmt_kib(row.get("sram_bytes")),
            _fmt(row.get("latency_ms"), ".3f"),
            f"{row.get('seconds', 0):.1f}",
        )
    return table


def print_run(record: dict[str, Any], report: Path) -> None:
    """Print the stage table, each target's verdict and where the report is."""
    console = make_console()
    console.print(stage_table(record))
    for v in record.get("verdicts", []):
        mark = "[green]met[/green]" if v["met"] else "[red]missed[/red]"
        console.print(f"{v['target']}: {mark} (goal {v['goal']}, reached {v['reached']}): {v['note']}", highlight=False)
    ver = record.get("verify")
    if ver:
        verdict = "bit-exact" if ver["mismatched"] == 0 else f"{ver['mismatched']} mismatched codes"
        console.print(f"C engine vs integer reference on {ver['images']:,} test images: {verdict}")
    console.print(f"report: {report}")
