"""The README's tour runs as written: every command between the tour markers, in order, from a fresh folder.

The commands are read from README.md (the bash blocks between ``<!-- tour:start -->`` and ``<!-- tour:end -->``),
so the README cannot drift from the code: a renamed flag, a path nothing creates, or a command that fails makes
this test fail, naming the command. They run in a fresh temporary folder that holds only links to this
checkout's ``.venv`` and ``benchmarks/`` (the committed baselines), the way a new user runs them from a clone;
``../shared`` (the reference ``.tflite`` models beside the checkout) is linked beside it when it exists, and the
commands that read it are skipped, and listed, when it does not.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOUR = re.compile(r"<!-- tour:start -->(.*?)<!-- tour:end -->", re.S)
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)
RUNNABLE = (".venv/bin/leanml", "make -C")


def tour_commands(readme: str) -> list[str]:
    """The tour's shell commands in order: each line of a bash block that starts with a runnable prefix (comments
    dropped), and each python block as one ``.venv/bin/python -c`` command.

    Example:
        >>> text = "<!-- tour:start -->\\n```bash\\n.venv/bin/leanml models   # list\\n```\\n<!-- tour:end -->"
        >>> tour_commands(text)
        ['.venv/bin/leanml models']
    """
    commands = []
    for section in TOUR.findall(readme):
        for language, block in BLOCK.findall(section):
            if language == "python":
                commands.append(shlex.join([".venv/bin/python", "-c", block]))
                continue
            for line in block.splitlines():
                if line.startswith(RUNNABLE):
                    commands.append(shlex.join(shlex.split(line, comments=True)))
    return commands


def test_the_tour_is_marked_and_not_empty() -> None:
    commands = tour_commands((ROOT / "README.md").read_text())
    assert len(commands) >= 10, commands


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    if not (ROOT / ".venv/bin/leanml").exists():
        pytest.skip("the tour runs the installed .venv/bin/leanml (make setup)")
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in (".venv", "benchmarks"):
        (clone / name).symlink_to(ROOT / name)
    shared = ROOT.parent / "shared"  # the reference .tflite models sit beside the clone, as in a checkout here
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    log = []
    for command in tour_commands((ROOT / "README.md").read_text()):
        if "../shared/" in command and not shared.is_dir():
            log.append(f"skipped (no {shared}): {command}")
            continue
        start = time.perf_counter()
        done = subprocess.run(
            command, shell=True, cwd=clone, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900
        )
        log.append(f"{time.perf_counter() - start:7.1f} s  {command}")
        output = done.stdout[-2000:] + done.stderr[-3000:]
        assert done.returncode == 0, f"README tour command failed: {command}\n{output}"
    print("\n".join(log), file=sys.stderr)
