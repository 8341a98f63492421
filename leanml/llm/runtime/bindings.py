"""The one ctypes binding table of the LLM runtime library (``leanml/llm/runtime/csrc``): its build, the structs
C and Python share, and every entry point's signature (kernels, thread pool, timing harnesses, the model, the
packed-file check).

The library is compiled on first use by :func:`leanml.native_build.load_library` from the ``csrc`` sources alone
(content-hash cache, ``-O3 -march=native``: the SIMD path, AVX-512 VNNI or AVX2, is chosen at compile time; the
scalar ``_ref`` kernels are always in it). :func:`load_library` sets every signature of :data:`SIGNATURES` and
checks the structs' sizes against C.

Example:
    >>> sorted(VARIANTS)
    ['ref', 'simd', 'unroll']
    >>> lib = load_library()  # doctest: +SKIP
    >>> lib.lmq_simd_name().decode()  # doctest: +SKIP
    'avx512vnni'
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

from leanml.errors import LeanmlError
from leanml.native_build import load_library as build_and_load

CSRC = Path(__file__).resolve().parent / "csrc"
BUILD_FLAGS = ("-O3", "-march=native", "-pthread")
SANITIZE_FLAGS = ("-O1", "-g", "-march=native", "-pthread", "-fsanitize=address,undefined",
                  "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")  # fmt: skip
VARIANTS = {"ref": 0, "unroll": 1, "simd": 2}
ERR_LEN = 256


class QMat(ctypes.Structure):
    """``lmq_qmat`` of ``csrc/lmq.h`` (field for field; :func:`load_library` checks the size)."""

    _fields_ = [
        ("q", ctypes.c_void_p), ("scales", ctypes.c_void_p), ("zeros", ctypes.c_void_p), ("bias", ctypes.c_void_p),
        ("q_bytes", ctypes.c_int64), ("scales_bytes", ctypes.c_int64), ("zeros_bytes", ctypes.c_int64),
        ("bias_bytes", ctypes.c_int64), ("n", ctypes.c_int32), ("k", ctypes.c_int32), ("bits", ctypes.c_int32),
        ("group", ctypes.c_int32),
    ]  # fmt: skip


class LayerDesc(ctypes.Structure):
    """``lmq_layer_desc`` of ``csrc/lmq.h``."""

    _fields_ = [
        ("attn_norm", ctypes.c_void_p), ("mlp_norm", ctypes.c_void_p), ("attn_norm_bytes", ctypes.c_int64),
        ("mlp_norm_bytes", ctypes.c_int64), ("q", QMat), ("k", QMat), ("v", QMat), ("o", QMat),
        ("gate", QMat), ("up", QMat), ("down", QMat),
    ]  # fmt: skip


class ModelDesc(ctypes.Structure):
    """``lmq_model_desc`` of ``csrc/lmq.h``."""

    _fields_ = [
        *[(n, ctypes.c_int32) for n in ("n_layers", "hidden", "n_heads", "n_kv_heads", "head_dim", "inter", "vocab",
                                        "n_ctx", "threads")],
        ("rms_eps", ctypes.c_float), ("rope_theta", ctypes.c_float), ("embed", ctypes.c_void_p),
        ("final_norm", ctypes.c_void_p), ("head_f32", ctypes.c_void_p), ("embed_bytes", ctypes.c_int64),
        ("final_norm_bytes", ctypes.c_int64), ("head_f32_bytes", ctypes.c_int64), ("head_q", QMat),
        ("layers", ctypes.c_void_p), ("layers_bytes", ctypes.c_int64),
    ]  # fmt: skip


_vp, _i32, _i64, _sz, _cp, _int = (ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_size_t,
                                   ctypes.c_char_p, ctypes.c_int)  # fmt: skip
_qm = ctypes.POINTER(QMat)
SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    # build and structs
    "lmq_simd_level": (_int, []),
    "lmq_simd_name": (_cp, []),
    "lmq_sizeof": (_sz, [_int]),
    # thread pool
    "lmq_pool_create": (_vp, [_int]),
    "lmq_pool_free": (None, [_vp]),
    # kernels (tests, benchmarks)
    "lmq_k_gemm": (_int, [_vp, _int, _qm, _vp, _i32, _vp, _cp, _sz]),
    "lmq_k_quantize": (_int, [_int, _vp, _i32, _i32, _vp, _vp, _vp]),
    "lmq_k_fgemm": (_int, [_vp, _int, _vp, _i32, _i32, _vp, _i32, _vp]),
    "lmq_k_dot_f16": (_int, [_int, _vp, _vp, _i32, _i32, _vp]),
    "lmq_k_axpy_f16": (_int, [_int, _vp, _vp, _i32, _i32, _vp]),
    "lmq_k_attend": (_int, [_int, _vp, _vp, _vp, _i32, _i32, ctypes.c_float, _vp]),
    "lmq_k_pool_check": (_i64, [_vp, _i32, _i32, _vp]),
    # timing harnesses: raw per-repeat nanoseconds into a caller's int64 array
    "lmq_k_bench_gemm": (_int, [_vp, _int, _qm, _vp, _i32, _vp, _i32, _i32, _i32, _vp, _cp, _sz]),
    "lmq_k_bench_fgemm": (_int, [_vp, _int, _vp, _i32, _i32, _vp, _i32, _vp, _i32, _i32, _i32, _vp]),
    "lmq_k_bench_read": (_int, [_vp, _vp, _i64, _i32, _vp]),
    # the model
    "lmq_create": (_vp, [ctypes.POINTER(ModelDesc), _cp, _sz]),
    "lmq_free": (None, [_vp]),
    "lmq_reset": (None, [_vp]),
    "lmq_position": (_i32, [_vp]),
    "lmq_forward": (_int, [_vp, _vp, _i32, _vp, _i32, _cp, _sz]),
    # the packed file
    "lmq_crc32": (ctypes.c_uint32, [ctypes.c_uint32, _vp, _i64]),
    "lmq_crc32_ref": (ctypes.c_uint32, [ctypes.c_uint32, _vp, _i64]),
    "lmq_check_file": (_int, [_vp, _i64, _i64, _i64, _vp, _i32, ctypes.c_uint32, _i32, _cp, _sz]),
}
STRUCTS: tuple[tuple[str, type[ctypes.Structure]], ...] = (
    ("lmq_qmat", QMat),
    ("lmq_layer_desc", LayerDesc),
    ("lmq_model_desc", ModelDesc),
)  # lmq_sizeof(0), (1), (2)


def c_sources() -> dict[str, str]:
    """Every C source and header of ``csrc`` (name → text): the library's whole input.

    Example:
        >>> "lmq.h" in c_sources()
        True
    """
    return {p.name: p.read_text() for p in sorted(CSRC.iterdir()) if p.suffix in (".c", ".h")}


def load_library(flags: tuple[str, ...] = BUILD_FLAGS) -> ctypes.CDLL:
    """Compile (or reuse from the cache) and load the runtime library with ``flags``; every signature is set.

    Example:
        >>> lib = load_library()  # doctest: +SKIP
        >>> lib.lmq_simd_name().decode()  # doctest: +SKIP
        'avx512vnni'
    """
    lib = build_and_load(c_sources(), flags=flags, prefix="lmq")
    for name, (res, args) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    for which, (c_name, struct) in enumerate(STRUCTS):
        if lib.lmq_sizeof(which) != ctypes.sizeof(struct):
            raise LeanmlError(f"{c_name} differs between C and Python", "this is a leanml bug: please report it")
    return lib
