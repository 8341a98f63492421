"""Fixtures the CLI tests share with the packages they drive, and the in-process CLI runner.

``cli(*args)`` runs ``leanml`` through its console entry point (:func:`leanml.cli.main`) in this process, so a
LeanmlError is printed as ``error: ...`` and exits non-zero exactly as a user sees it, in milliseconds instead of a
subprocess start; any other exception propagates (a traceback is a failed test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from leanml.cli import main
from tests.nas.conftest import tiny_supernet  # noqa: F401  (a trained tiny supernet, for tests/cli/test_nas.py)


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured output of one in-process ``leanml`` run."""

    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``leanml ARGS...`` in-process; returns its exit code, stdout and stderr."""

    def run(*args: object) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    """A user error: non-zero exit, no traceback, the last stderr line is ``error: ...`` holding every needle."""
    assert result.code != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    for needle in needles:
        assert needle in last, last
