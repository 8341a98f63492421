"""Progress in logs and pipes: plain lines, throttled by work done and by time; phases announce start and end."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys

import pytest

from leanml.progress import duration, phase, plain_track, track


def lines_of(total: int, seconds_per_item: float, interval: float = 5.0) -> list[str]:
    ticks = itertools.count()
    log = io.StringIO()
    items = list(plain_track(range(total), total, "scan", log, interval, clock=lambda: next(ticks) * seconds_per_item))
    assert items == list(range(total))
    return log.getvalue().splitlines()


def test_slow_loop_prints_every_ten_percent() -> None:
    lines = lines_of(20, seconds_per_item=10.0)
    assert lines[0] == "scan: 2/20 (10%), 20.0 s"
    assert lines[1] == "scan: 4/20 (20%), 40.0 s"
    assert len(lines) == 10  # 10 %, 20 %, ..., 90 %, then the last line
    assert lines[-1] == "scan: 20/20 done in 3 min 30 s"


def test_fast_loop_prints_only_when_seconds_have_passed() -> None:
    assert lines_of(1000, seconds_per_item=0.001) == ["scan: 1000/1000 done in 1.0 s"]
    lines = lines_of(1000, seconds_per_item=0.02)  # 20 s in all: one line per 5 s, not per 10 %
    assert len(lines) == 3 + 1, lines
    assert lines[0] == "scan: 250/1000 (25%), 5.0 s"


def test_track_writes_plain_lines_when_stderr_is_not_a_terminal() -> None:
    code = "from leanml.progress import track\nfor _ in track(range(3), 3, 'loading'):\n    pass\nprint('out')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "out\n"
    assert proc.stderr.startswith("loading: 3/3 done in ")


def test_track_disabled_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(track(range(3), 3, "quiet", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_phase_announces_start_and_end(capsys: pytest.CaptureFixture[str]) -> None:
    with phase("writing report"):
        pass
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "writing report…"
    assert err[1].startswith("writing report done in ")


def test_failed_phase_does_not_say_done() -> None:
    log = io.StringIO()
    with pytest.raises(ValueError), phase("compiling", stream=log):
        raise ValueError("bad")
    assert log.getvalue() == "compiling…\n"


def test_duration() -> None:
    assert [duration(s) for s in (0.04, 59.9, 60.0, 7199.0)] == ["0.0 s", "59.9 s", "1 min 0 s", "1 h 59 min"]
