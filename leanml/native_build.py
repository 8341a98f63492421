"""Build C with the system compiler into a shared library, cached by content hash, and load it with ctypes.

The one build helper of the package's compiled code (the deploy engine's generated models, the LLM runtime): a
library is its C ``sources`` (file name → text, written to a scratch folder on the include path) plus an explicit
set of ``headers`` (files whose folders go on the include path). Its cache name is the SHA-256 of exactly those
sources and header files, the compiler and flags, and the CPU signature (``-march=native`` code is only valid on
this kind of CPU), under ``$LEANML_CACHE`` or ``~/.cache/leanml``: the same library compiles once. The compiler is
``$CC`` or ``cc``; a missing compiler is a clear error naming the Debian package.

Example:
    >>> lib = load_library({"f.c": "int twice(int x) { return 2 * x; }"})  # doctest: +SKIP
    >>> lib.twice(21)  # doctest: +SKIP
    42
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from leanml.errors import LeanmlError

WARN_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror")


def cpu_signature() -> str:
    """The CPU model and feature flags (Linux), so a cached native build is never reused on another CPU.

    Example:
        >>> isinstance(cpu_signature(), str)
        True
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + platform.processor()
    keep = [line for line in info.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def cache_dir() -> Path:
    """Where compiled libraries are kept: ``$LEANML_CACHE`` or ``~/.cache/leanml``.

    Example:
        >>> isinstance(cache_dir(), Path)
        True
    """
    root = os.environ.get("LEANML_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "leanml"


def find_host_compiler(cc: str | None = None) -> str:
    """Path of the host C compiler (``cc`` if given, else ``$CC``, else ``cc``/``gcc``); missing is a clear error.

    Example:
        >>> Path(find_host_compiler()).is_file()  # doctest: +SKIP
        True
    """
    for name in (cc, os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return str(shutil.which(name))
    raise LeanmlError(f"no C compiler found{f' ({cc})' if cc else ''}",
                      "install one: `apt-get install gcc` (or set $CC)")  # fmt: skip


def library_key(sources: Mapping[str, str], headers: Sequence[Path], compiler: str, args: Sequence[str]) -> str:
    """The cache key of a build: SHA-256 of the sources (sorted by name), the header files (in the given order),
    the compiler and its arguments, and :func:`cpu_signature`.

    Example:
        >>> len(library_key({"f.c": "int x;"}, [], "cc", ["-O2"]))
        64
    """
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    for header in headers:
        digest.update(header.read_bytes())
    digest.update(" ".join((compiler, *args)).encode())
    digest.update(cpu_signature().encode())
    return digest.hexdigest()


def compile_library(
    sources: Mapping[str, str],
    headers: Sequence[Path] = (),
    flags: Sequence[str] = ("-O2",),
    compiler: str | None = None,
    prefix: str = "lib",
) -> Path:
    """Compile C ``sources`` (file name → text) with ``headers`` on the include path into a cached shared library
    ``<cache>/<prefix>_<key>.so`` (see the module); returns its path.

    Example:
        >>> compile_library({"f.c": "int f(void) { return 1; }"}, prefix="demo").suffix  # doctest: +SKIP
        '.so'
    """
    cc = compiler or find_host_compiler()
    args = (*WARN_FLAGS, *flags, "-fPIC", "-shared")
    out = cache_dir() / f"{prefix}_{library_key(sources, headers, cc, args)[:24]}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    include_dirs = list(dict.fromkeys(str(h.parent) for h in headers))
    with tempfile.TemporaryDirectory(prefix="leanml-build-") as tmp:
        c_files = []
        for name, text in sources.items():
            (Path(tmp) / name).write_text(text)
            if name.endswith(".c"):
                c_files.append(str(Path(tmp) / name))
        lib = Path(tmp) / "lib.so"
        cmd = [cc, *args, *(f"-I{d}" for d in include_dirs), f"-I{tmp}", *c_files, "-o", str(lib), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LeanmlError(f"C compilation failed: {proc.stderr.strip()[:2000]}",
                              "this is a leanml bug: please report it with the model")  # fmt: skip
        staged = out.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(lib, staged)
        os.replace(staged, out)  # atomic: a concurrent build never sees half a library
    return out


def load_library(
    sources: Mapping[str, str],
    headers: Sequence[Path] = (),
    flags: Sequence[str] = ("-O2",),
    compiler: str | None = None,
    prefix: str = "lib",
) -> ctypes.CDLL:
    """:func:`compile_library` (or reuse the cached build), then load it with ctypes.

    Example:
        >>> load_library({"f.c": "int twice(int x) { return 2 * x; }"}).twice(21)  # doctest: +SKIP
        42
    """
    return ctypes.CDLL(str(compile_library(sources, headers, flags, compiler, prefix)))
