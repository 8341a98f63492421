"""``leanml --help`` starts without torch, lists every verb with its one-line help, and every verb's help works."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from leanml.cli import VERBS, app, verb_command

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
