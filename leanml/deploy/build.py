"""Compile generated C with the system compiler, cache it by content hash, and run it through ctypes.

The build and its cache are :mod:`leanml.native_build`'s (the shared library's name is the SHA-256 of its
sources, the deploy kernel headers, the compiler and flags, and the CPU); this module adds the deploy engine's
kernel include set, the Cortex-M cross targets, section sizes and the ctypes model wrapper.

Example:
    >>> lib = compile_shared({"f.c": "int twice(int x) { return 2 * x; }"})  # doctest: +SKIP
    >>> ctypes.CDLL(str(lib)).twice(21)  # doctest: +SKIP
    42
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from leanml.errors import LeanmlError
from leanml.native_build import WARN_FLAGS, compile_library, find_host_compiler

CSRC = Path(__file__).resolve().parent / "csrc"
OPT_FLAGS = ("-O3", "-march=native")  # the kernels pick their AVX-512 VNNI / AVX2 / scalar path at compile time
# microcontroller targets: the same C, cross-compiled with Debian's gcc-arm-none-eabi. The one place the Cortex-M
# flags are set (sizes here, QEMU runs in leanml.deploy.mcu): soft-float as TFLM's cortex_m_qemu reference build
# (the int8 entry point run_q uses no float), DSP instructions through ACLE where the core has them.
CROSS_TARGETS: dict[str, tuple[str, ...]] = {
    "cortex-m4": ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft", "-O2"),
    "cortex-m7": ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=soft", "-O2"),
}
CROSS_CC, CROSS_SIZE, CROSS_PACKAGE = "arm-none-eabi-gcc", "arm-none-eabi-size", "gcc-arm-none-eabi"


def find_compiler(cc: str | None = None) -> str:
    """Path of the C compiler (``cc`` if given, else ``$CC``, else ``cc``/``gcc``); missing is a clear error."""
    if cc == CROSS_CC:
        found = shutil.which(cc)
        if found is None:
            raise LeanmlError(f"the cross compiler {cc} is missing", f"install it: `apt-get install {CROSS_PACKAGE}`")
        return found
    return find_host_compiler(cc)


def compile_shared(sources: dict[str, str], flags: tuple[str, ...] = OPT_FLAGS, cc: str | None = None) -> Path:
    """Compile C ``sources`` (file name -> text; the kernel headers are on the include path) into a cached .so.

    Built by :func:`leanml.native_build.compile_library` with the deploy kernel headers as the include set (the
    cache key covers the sources, those headers, the compiler and flags, and the CPU).
    """
    return compile_library(sources, sorted(CSRC.glob("*.h")), flags, find_compiler(cc), prefix="lm")


class CompiledModel:
    """A generated model loaded from its shared library: call it like the integer reference.

    ``run_int8(q)`` takes int8 values (N, C, H, W) as the reference's ``run_int8`` does and returns
    the output codes in the reference's layout; ``__call__`` takes float inputs and returns floats.
    """

    def __init__(self, library: Path, prefix: str, input_chw: tuple[int, int, int], output_size: int,
                 output_perm: np.ndarray | None, output_scale: float, output_zp: int) -> None:  # fmt: skip
        self.library = library
        self._lib = ctypes.CDLL(str(library))
        self._run_q = getattr(self._lib, f"{prefix}_run_q")
        self._run_q.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._run_q.restype = ctypes.c_int
        self._run_q_batch = getattr(self._lib, f"{prefix}_run_q_batch")
        self._run_q_batch.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self._run_q_batch.restype = ctypes.c_int
        self._run_f = getattr(self._lib, f"{prefix}_run")
        self._run_f.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._run_f.restype = ctypes.c_int
        self.input_chw = input_chw
        self.output_size = output_size
        self.output_perm = output_perm
        self.output_scale = output_scale
        self.output_zp = output_zp

    def _to_reference_order(self, out: np.ndarray) -> np.ndarray:  # (N, F) in C order → reference order
        return out if self.output_perm is None else out[:, self.output_perm]

    def run_int8(self, q: np.ndarray) -> np.ndarray:
        """int8 input codes (N, C, H, W) → int8 output codes (N, F) as int64, in the reference's order."""
        q = np.asarray(q)
        if q.shape[1:] != self.input_chw:
            raise LeanmlError(f"input shape {tuple(q.shape[1:])} does not match the model's {self.input_chw}")
        hwc = np.ascontiguousarray(q.transpose(0, 2, 3, 1), dtype=np.int8)  # (N, H, W, C)
        out = np.zeros((len(q), self.output_size), dtype=np.int8)
        self._run_q_batch(hwc.ctypes.data, len(q), out.ctypes.data)  # hwc, out: C-contiguous, alive for the call
        return self._to_reference_order(out.astype(np.int64))

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """float input (N, C, H, W) → dequantized float outputs (N, F), quantization done in C."""
        xf = np.asarray(x, dtype=np.float32)
        if xf.shape[1:] != self.input_chw:
            raise LeanmlError(f"input shape {tuple(xf.shape[1:])} does not match the model's {self.input_chw}")
        hwc = np.ascontiguousarray(xf.transpose(0, 2, 3, 1))
        out = np.zeros((len(xf), self.output_size), dtype=np.float32)
        for i in range(len(xf)):
            self._run_f(hwc[i].ctypes.data, out[i].ctypes.data)
        return torch.from_numpy(self._to_reference_order(out))


def section_sizes(sources: dict[str, str], flags: tuple[str, ...] = OPT_FLAGS, cc: str | None = None,
                  size_tool: str = "size") -> dict[str, int]:  # fmt: skip
    """Bytes of ``.text``, ``.rodata``, ``.data`` and ``.bss`` of the compiled C sources (one object each, summed).

    Flash = text + rodata + data; static SRAM = data + bss (the arena is in bss).
    """
    compiler = find_compiler(cc)
    tool = shutil.which(size_tool)
    if tool is None:
        package = CROSS_PACKAGE if size_tool == CROSS_SIZE else "binutils"
        raise LeanmlError(f"{size_tool!r} not found", f"install it: `apt-get install {package}`")
    totals = {".text": 0, ".rodata": 0, ".data": 0, ".bss": 0}
    with tempfile.TemporaryDirectory(prefix="leanml-size-") as tmp:
        for name, text in sources.items():
            (Path(tmp) / name).write_text(text)
        for name in sources:
            if not name.endswith(".c"):
                continue
            obj = Path(tmp) / (name + ".o")
            cmd = [compiler, *WARN_FLAGS, *flags, f"-I{CSRC}", f"-I{tmp}", "-c", str(Path(tmp) / name), "-o", str(obj)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise LeanmlError(f"C compilation failed: {proc.stderr.strip()[:2000]}")
            listing = subprocess.run([tool, "-A", "-d", str(obj)], capture_output=True, text=True, check=True).stdout
            for line in listing.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    for section in totals:
                        if parts[0] == section or parts[0].startswith(section + "."):
                            totals[section] += int(parts[1])
    return {k.lstrip("."): v for k, v in totals.items()}


def target_section_sizes(sources: dict[str, str], target: str) -> dict[str, int]:
    """Section sizes of the model compiled for ``target`` (``host`` or a Cortex-M core).

    Example:
        >>> target_section_sizes({"m.c": "const int w[4] = {1, 2, 3, 4};"}, "host")["rodata"] >= 16  # doctest: +SKIP
        True
    """
    if target == "host":
        return section_sizes(sources)
    if target not in CROSS_TARGETS:
        raise LeanmlError(f"unknown target {target!r}", f"choose host or one of: {', '.join(CROSS_TARGETS)}")
    return section_sizes(sources, CROSS_TARGETS[target], cc=CROSS_CC, size_tool=CROSS_SIZE)
