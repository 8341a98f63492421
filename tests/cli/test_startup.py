"""``leanml --help`` and ``--version`` start without torch; every verb's help works; errors keep their text; Ctrl-C says
how to resume."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import leanml
from leanml.cli import VERBS, app, resume_command, verb_command

HELP_IMPORTS = """
import sys
from leanml.cli import main
try:
    main(["--help"])
except SystemExit as e:
    assert e.code == 0, e.code
print(sorted(m for m in ("torch", "numpy", "transformers") if m in sys.modules))
"""


def test_root_help_imports_no_torch() -> None:
    proc = subprocess.run([sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "[]", lines[-1]  # nothing heavy was imported
    for name, verb in VERBS.items():
        assert any(f" {name} " in line and verb.help in line for line in lines), name


def test_bare_import_is_lazy() -> None:
    code = "import sys, leanml; assert 'torch' not in sys.modules; leanml.build_model('vgg'); print(leanml.train)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "<function train" in proc.stdout


@pytest.mark.parametrize("name", list(VERBS))
def test_every_verb_has_help_matching_the_table(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    command = verb_command(name)
    assert (command.help or "").split("\n")[0].strip() == VERBS[name].help


def test_unknown_verb_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["compile"])
    assert result.exit_code == 2


def test_version_prints_without_torch() -> None:
    code = HELP_IMPORTS.replace('main(["--help"])', 'main(["--version"])')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"leanml {leanml.__version__}", "[]"]


def test_error_text_keeps_square_brackets() -> None:
    code = "from leanml.cli import main; main(['eval', 'runs/missing[llm]'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    assert proc.returncode == 2
    assert "runs/missing[llm]" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--out", "runs/my vgg"], "leanml train --out 'runs/my vgg' --resume"),
        (["train", "--overwrite", "--resume"], "leanml train --resume"),
        (["nas", "sample", "--no-resume", "--out", "s"], "leanml nas sample --out s --resume"),
        (["compress", "mcu", "--set", "train.epochs=1"], "leanml compress mcu --set train.epochs=1"),
        (["profile", "runs/vgg"], None),
        (["nas"], None),
        (["bogus"], None),
    ],
)
def test_resume_command(argv: list[str], expected: str | None) -> None:
    assert resume_command(argv, typer.main.get_command(app)) == expected


INTERRUPT = """
import os, signal, sys, threading, time
from pathlib import Path
from leanml.cli import main


def interrupt_once_training(out: Path) -> None:  # after the first checkpoint: torch is imported, the run resumable
    while not any(out.parent.glob(out.name + ".*")):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=interrupt_once_training, args=(Path(sys.argv[1]),), daemon=True).start()
main(sys.argv[2:])
"""


def test_ctrl_c_says_how_to_resume(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (200, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(200) % 4)
    out = tmp_path / "run"
    argv = ["train", "--model", "vgg", "--data", f"npz:{tmp_path / 'd.npz'}", "--epochs", "10000", "--out", str(out),
            "--no-progress"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", INTERRUPT, str(out), *argv], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "1000"})  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"interrupted; resume with: leanml {shlex.join(argv)} --resume"
