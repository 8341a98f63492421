"""The one benchmark row runner: plan the rows, reuse each row's cached JSON, run the missing ones, write each new
row's JSON atomically and re-render the results markdown after every row.

Every benchmark script (pruning, quantization, deploy, LLM quality and speed) is a list of rows: a key and the
function that measures it. A script says what its rows are and how its results file reads; this module does the
rest the same way for all of them: the cache folder (one ``<key><suffix>`` JSON file a row), which rows are cached,
the fields every fresh row is stamped with (wall seconds, or the load average around it), the progress log, and the
atomic rewrite of the results file after every row, so a killed run resumes and the file is never half-written.
Its ``log`` (progress lines) and ``write_text`` (atomic text files) serve the stage-based scripts too (NAS, the
baselines, the LLM kernel ladder).

Example (from benchmarks/):
    >>> import tempfile
    >>> from _rows import Row, RowRunner
    >>> tmp = Path(tempfile.mkdtemp())
    >>> runner = RowRunner(tmp / "cache", tmp / "out.md", lambda rows: f"{len(rows)} row(s)\\n")
    >>> rows = runner.run([Row("a", lambda rows: {"x": 1.5})], runner.cached())
    >>> rows["a"]["x"], sorted(p.name for p in (tmp / "cache").iterdir()), (tmp / "out.md").read_text()
    (1.5, ['a.json'], '1 row(s)\\n')
    >>> list(RowRunner(tmp / "cache", tmp / "out.md", lambda rows: "").cached())
    ['a']
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanml.artifact import atomic_write
from leanml.profile.machine import load_averages

Rows = dict[str, dict[str, Any]]


def log(msg: str) -> None:
    """One timestamped progress line on stderr with the 1-minute load average: ``[12:00:00 load 1.05] msg``.

    Example:
        >>> log("vgg: running")  # doctest: +SKIP
        [12:00:00 load 1.05] vgg: running
    """
    print(f"[{time.strftime('%H:%M:%S')} load {load_averages()[0]:.2f}] {msg}", file=sys.stderr, flush=True)


def recorded(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``, or for a peer that cannot run the row ``{"error": "<type>: <message>"}``: recorded in the
    results, not fatal to the benchmark.

    Example:
        >>> recorded(lambda: {"acc": 0.9}), recorded(lambda: 1 / 0)
        ({'acc': 0.9}, {'error': 'ZeroDivisionError: division by zero'})
    """
    try:
        return measure()
    except Exception as e:  # a peer that cannot run is recorded in its row, not fatal
        return {"error": f"{type(e).__name__}: {e}".strip()[:2000]}


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (a killed run never leaves a half-written file)."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


@dataclass(frozen=True)
class Measured:
    """What the runner saw of one fresh row: wall seconds, the 1-minute load average before and after, and when
    it finished (``YYYY-MM-DD HH:MM``)."""

    seconds: float
    load_average: tuple[float, float]
    finished: str


def wall_seconds(**settings: Any) -> Callable[[Measured], dict[str, Any]]:
    """The usual stamp of a fresh row: ``settings`` (what a cached row is valid for), then its wall seconds.

    Example:
        >>> wall_seconds(threads=2)(Measured(2.5, (0.1, 0.2), "2026-01-01 12:00"))
        {'threads': 2, 'seconds': 2.5}
    """
    return lambda m: {**settings, "seconds": m.seconds}


def names(value: str, known: Sequence[str], what: str) -> list[str]:
    """The comma-separated names in ``value`` (a command-line option), each one of ``known``; exits naming the others.

    Example:
        >>> names("vgg,resnet", ("vgg", "resnet", "mobilenetv2"), "model")
        ['vgg', 'resnet']
    """
    chosen = [n for n in value.split(",") if n]
    if bad := [n for n in chosen if n not in known]:
        sys.exit(f"unknown {what}(s) {bad}; choose from {list(known)}")
    return chosen


@dataclass(frozen=True)
class Row:
    """One planned row: its key (the cache file's name), the function that measures it (given the rows so far,
    e.g. the baseline it is compared with), and whether a missing row is measured (``False``: it is reported only
    when cached)."""

    key: str
    measure: Callable[[Rows], dict[str, Any]]
    wanted: bool = True


class RowRunner:
    """Runs a benchmark's planned rows through one cache folder into one results file.

    ``render`` turns the rows (planned ones in plan order first, then any other cached ones) into the results
    markdown; ``stamp`` adds fields to every fresh row (default: its wall seconds); exceptions of a type in
    ``skip`` leave a row out (logged), any other stops the run.
    """

    def __init__(
        self,
        cache: Path,
        out: Path,
        render: Callable[[Rows], str],
        *,
        suffix: str = ".json",
        indent: int = 2,
        stamp: Callable[[Measured], dict[str, Any]] | None = None,
        skip: tuple[type[Exception], ...] = (),
    ) -> None:
        self.cache, self.out, self.render = Path(cache), Path(out), render
        self.suffix, self.indent, self.stamp, self.skip = suffix, indent, stamp or wall_seconds(), skip

    def path(self, key: str) -> Path:
        """The cache file of row ``key``."""
        return self.cache / f"{key}{self.suffix}"

    def cached(self, keep: Callable[[str, dict[str, Any]], bool] = lambda key, row: True) -> Rows:
        """The rows in the cache folder (by file name) that ``keep(key, row)`` accepts."""
        rows: Rows = {}
        for path in sorted(self.cache.glob(f"*{self.suffix}")):
            key, row = path.name.removesuffix(self.suffix), json.loads(path.read_text())
            if keep(key, row):
                rows[key] = row
        return rows

    def run(self, plan: Sequence[Row], rows: Mapping[str, dict[str, Any]]) -> Rows:
        """Measure every wanted row of ``plan`` missing from ``rows``; after each one write its JSON and re-render the
        results file, which is written once more at the end. Returns all the rows, planned ones in plan order first.
        """
        done: Rows = dict(rows)
        for i, row in enumerate(plan, 1):
            tag = f"({i}/{len(plan)}) {row.key}"
            if row.key in done:
                log(f"{tag}: cached")
                continue
            if not row.wanted:
                continue
            log(f"{tag}: running")
            before, t0 = load_averages()[0], time.perf_counter()
            try:
                result = row.measure(done)
            except self.skip as e:
                log(f"{tag}: skipped ({e})")
                continue
            seconds, after = time.perf_counter() - t0, load_averages()[0]
            result.update(self.stamp(Measured(seconds, (before, after), time.strftime("%Y-%m-%d %H:%M"))))
            done[row.key] = result
            write_text(self.path(row.key), json.dumps(result, indent=self.indent, default=str))
            summary = {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}
            log(f"{tag}: done in {seconds:.0f} s {summary} {result.get('error', '')}".rstrip())
            self._write(self._ordered(plan, done))
        ordered = self._ordered(plan, done)
        self._write(ordered)
        log(f"wrote {self.out}")
        return ordered

    @staticmethod
    def _ordered(plan: Sequence[Row], rows: Rows) -> Rows:
        planned = {row.key: rows[row.key] for row in plan if row.key in rows}
        return planned | {key: row for key, row in rows.items() if key not in planned}

    def _write(self, rows: Rows) -> None:
        write_text(self.out, self.render(rows))
