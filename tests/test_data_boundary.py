"""Algorithms take data, never fetch it: prune, quant, nas and deploy neither import Fashion-MNIST nor load splits.

Only ``leanml.data`` knows where images come from (DESIGN.md, shared idea 6); the CLI verbs load data and
pass it in. (a) scans the packages' source for the names; (b) imports every module of them in a fresh
interpreter and checks that ``leanml.data.fashion_mnist`` was never loaded, directly or through anything
they import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import leanml

PACKAGES = ("prune", "quant", "nas", "deploy")
FORBIDDEN = ("fashion_mnist", "load_split")
ROOT = Path(leanml.__file__).resolve().parent


def offending_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every import of ``leanml.data.fashion_mnist`` / ``load_split`` and every use of them.

    Example:
        >>> offending_names(ast.parse("from leanml.data import load_split"))
        [(1, 'from leanml.data import load_split')]
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [a.name for a in node.names]
            if any(f in module for f in FORBIDDEN) or any(n in FORBIDDEN for n in names):
                found.append((node.lineno, f"from {module} import {', '.join(names)}"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if any(f in a.name for f in FORBIDDEN)]
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN:
            found.append((node.lineno, f"attribute .{node.attr}"))
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN:
            found.append((node.lineno, f"name {node.id}"))
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and "leanml.data.fashion_mnist" in node.value
        ):
            found.append((node.lineno, f"string {node.value!r}"))
    return found


def test_the_sources_never_import_fashion_mnist_or_call_load_split() -> None:
    offenders = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            offenders += [f"{path.relative_to(ROOT.parent)}:{line}: {what}" for line, what in offending_names(tree)]
    assert not offenders, "algorithms must take data as arguments:\n" + "\n".join(offenders)


def test_the_scan_sees_every_form() -> None:
    src = (
        "import leanml.data.fashion_mnist\nfrom leanml.data.fashion_mnist import MEAN\n"
        "from leanml.data import load_split\nimport leanml.data as d\nd.load_split('val')\n"
    )
    assert [line for line, _ in offending_names(ast.parse(src))] == [1, 2, 3, 5]
    assert offending_names(ast.parse("from leanml.data import ImageSet, batches")) == []


IMPORT_ALL = """
import importlib, pkgutil, sys
import leanml
for pkg in {packages!r}:
    package = importlib.import_module("leanml." + pkg)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
        if "leanml.data.fashion_mnist" in sys.modules:
            print("LOADED-BY", info.name)
            raise SystemExit(1)
print("OK")
"""


def test_importing_every_module_never_loads_fashion_mnist() -> None:
    code = IMPORT_ALL.format(packages=PACKAGES)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout + proc.stderr[-3000:]
