"""The neutral C build helper: compile, cache by content hash of exactly the given sources and headers, load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leanml.errors import LeanmlError
from leanml.native_build import compile_library, find_host_compiler, library_key, load_library

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
SOURCE = {"f.c": '#include "twice.h"\nint f(int x) { return TWICE(x) + 1; }\n'}


def test_builds_loads_and_reuses_the_cached_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANML_CACHE", str(tmp_path / "cache"))
    header = tmp_path / "inc" / "twice.h"
    header.parent.mkdir()
    header.write_text("#define TWICE(x) (2 * (x))\n")
    lib = load_library(SOURCE, [header], prefix="demo")
    assert lib.f(20) == 41
    first = compile_library(SOURCE, [header], prefix="demo")
    assert first.parent == tmp_path / "cache" and first.name.startswith("demo_")
    assert compile_library(SOURCE, [header], prefix="demo") == first  # cached: same key, no rebuild
    header.write_text("#define TWICE(x) (3 * (x))\n")  # a header in the include set changes the key
    assert compile_library(SOURCE, [header], prefix="demo") != first


def test_the_key_covers_exactly_the_given_files_and_flags(tmp_path: Path) -> None:
    h = tmp_path / "a.h"
    h.write_text("/* a */")
    other = tmp_path / "b.h"
    other.write_text("/* b */")
    base = library_key(SOURCE, [h], "cc", ["-O2"])
    assert library_key(SOURCE, [h], "cc", ["-O2"]) == base
    assert library_key(SOURCE, [h], "cc", ["-O3"]) != base
    assert library_key(SOURCE, [h, other], "cc", ["-O2"]) != base
    other.write_text("/* changed */")  # not in the include set: no effect
    assert library_key(SOURCE, [h], "cc", ["-O2"]) == base


def test_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANML_CACHE", str(tmp_path))
    with pytest.raises(LeanmlError, match="C compilation failed"):
        compile_library({"bad.c": "int f(void) { return }"})
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LeanmlError, match="no C compiler found") as e:
        find_host_compiler()
    assert "apt-get install gcc" in str(e.value)
