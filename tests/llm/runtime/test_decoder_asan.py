"""The C runtime and its kernels under AddressSanitizer + UndefinedBehaviorSanitizer.

The library is built with ``bindings.SANITIZE_FLAGS`` (-fsanitize=address,undefined -fno-sanitize-recover=all) and
loaded into a Python subprocess that has libasan preloaded (Python itself is not instrumented). The script runs every
kernel variant on odd shapes, a tiny model's chunked prefill, decode up to the end of the context, and the C-side
refusals (called directly, past the Python checks), the packed-file check on bad tables and the CRC on odd lengths;
any sanitizer report fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.llm.runtime.test_decoder import make_packed

pytest.importorskip("transformers")

SCRIPT = r"""
import ctypes, sys
import numpy as np, torch
from leanml.llm.runtime import kernels as ck
from leanml.llm.runtime.bindings import SANITIZE_FLAGS, VARIANTS, load_library
from leanml.llm.runtime.decoder import CRuntime

lib = load_library(SANITIZE_FLAGS)
rng = np.random.default_rng(0)
with ck.Pool(lib, 2) as pool:
    for n, k, bits, g in [(5, 80, 4, 32), (7, 576, 4, 128), (3, 47, 8, 32), (9, 200, 4, 96), (1, 32, 4, 32)]:
        G = -(-k // g)
        mat = ck.CMatrix.from_codes(rng.integers(0, 2**bits, (n, k)).astype(np.uint8),
                                    (rng.random((n, G)) + 0.1).astype(np.float16),
                                    rng.integers(0, 2**bits, (n, G)).astype(np.uint8), bits, g)
        for m in (1, 3):
            x = rng.standard_normal((m, k)).astype(np.float32)
            for v in VARIANTS:
                ck.gemm(pool, mat, x, v)
                ck.quantize(lib, x, v)
        w = rng.standard_normal((n, k)).astype(np.float32)
        for v in VARIANTS:
            ck.fgemm(pool, w, rng.standard_normal((2, k)).astype(np.float32), v)
    q = rng.standard_normal(20).astype(np.float32)
    keys = rng.standard_normal((3, 20)).astype(np.float16)
    for v in ("ref", "simd"):
        ck.dot_f16(lib, q, keys, v)
        ck.axpy_f16(lib, np.ones(3, np.float32), keys, np.zeros((3, 20), np.float32), v)

for head, threads in (("int8", 2), ("float32", 1)):
    rt = CRuntime(sys.argv[1], n_ctx=160, threads=threads, head=head, library=lib)
    ids = torch.randint(3, 90, (150,), generator=torch.Generator().manual_seed(0))
    rt.prefill(ids, all_logits=True)  # chunks of 128 + 22
    while rt.position < 160:
        rt.decode(5)
    err = ctypes.create_string_buffer(256)
    out = np.empty((4, rt.vocab), np.float32)
    bad = np.array([3, 4], np.int32)
    assert rt.lib.lmq_forward(rt._handle(), bad.ctypes.data, 2, out.ctypes.data, 1, err, 256) == -1  # context full
    rt.reset()
    bad = np.array([3, 128], np.int32)
    assert rt.lib.lmq_forward(rt._handle(), bad.ctypes.data, 2, out.ctypes.data, 1, err, 256) == -1  # bad id
    assert rt.lib.lmq_forward(rt._handle(), bad.ctypes.data, 0, out.ctypes.data, 1, err, 256) == -1  # no tokens
    rt.prefill([3, 4, 5])
    rt.close()
data = np.zeros(64 * 5, np.uint8)  # the packed-file check: bad tables refused without reading past the buffer
for spans in ([(0, 64), (72, 8)], [(192, 65)], [(0, 128), (64, 8)], [(2**62, 2**62)], [(0, -1)], [(256, 0)]):
    t = np.array(spans, np.int64)
    rc = lib.lmq_check_file(data.ctypes.data, data.size, 64, 256, t.ctypes.data, len(t), 0, 0, err, 256)
    assert rc == (0 if spans == [(256, 0)] else -1), spans
for n in (0, 1, 7, 9, 255):
    assert lib.lmq_crc32(0, data.ctypes.data + 1, n) == lib.lmq_crc32_ref(0, data.ctypes.data + 1, n)
print("clean")
"""


def _asan_runtime() -> str | None:
    path = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return path if path and Path(path).is_file() else None


def test_runtime_and_kernels_are_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    libasan = _asan_runtime()
    if libasan is None:
        pytest.skip("gcc has no AddressSanitizer runtime here")
    model = make_packed(tmp_path / "tiny.lmq", 4, 32, hidden_size=80, intermediate_size=112)
    script = tmp_path / "asan_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1"}  # fmt: skip
    proc = subprocess.run([sys.executable, str(script), str(model)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert proc.stdout.strip().endswith("clean")
    assert "AddressSanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr[-4000:]
