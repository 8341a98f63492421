"""The C kernels of the LLM runtime: the weight layout C reads, the thread pool, and the kernel and timing entry
points (the library and its signatures are :mod:`leanml.llm.runtime.bindings`'s).

Quantized matrices are handed to C in the *C runtime layout* (``docs/llm_format.md``):
rows zero padded to a multiple of 32 codes; 2..4-bit codes held as int4, reordered by :func:`pack_rows` so one SIMD
load splits into consecutive codes; 5..8-bit codes as int8 in order.

Example:
    >>> codes = np.arange(64, dtype=np.uint8).reshape(1, 64) % 16
    >>> packed = pack_rows(codes, 4)
    >>> packed.shape, bool(packed[0, 0] == codes[0, 0] | codes[0, 32] << 4)
    ((1, 32), True)
    >>> np.array_equal(unpack_rows(packed, 4, 64), codes)
    True
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import torch

from leanml.errors import LeanmlError
from leanml.llm.runtime.bindings import ERR_LEN, VARIANTS, QMat
from leanml.profile.timing import Throughput
from leanml.quant.code_packing import unpack_codes

BLOCK = 32


def padded(k: int) -> int:
    """``k`` rounded up to a multiple of 32 (one activation block).

    Example:
        >>> padded(576), padded(80)
        (576, 96)
    """
    return -(-k // BLOCK) * BLOCK


def _units(kp: int, bits: int = 4) -> list[tuple[int, int]]:
    """(start, size) in codes of the units of a padded row: int4 128-code units (int8: 64), then at most one of 64
    and one of 32."""
    big = 128 if bits == 4 else 64
    units = [(big * i, big) for i in range(kp // big)]
    start = big * (kp // big)
    for size in (64, 32):
        if size < big and kp - start >= size:
            units.append((start, size))
            start += size
    return units


def _tiles(rows: np.ndarray, kp: int, bits: int, inverse: bool = False) -> np.ndarray:
    """Row-major unit bytes (n, rb) -> the tiled order: rows in tiles of 4 (the last may be short), each tile unit by
    unit, each unit row by row; ``inverse`` undoes it."""
    n, rb = rows.shape
    out = np.empty_like(rows)
    full = n // 4 * 4
    for first, count, r in ((0, full // 4, 4), (full, 1 if n % 4 else 0, n % 4)):
        if count == 0:
            continue
        span = slice(first * rb, (first + count * r) * rb)
        tiled = (rows if inverse else out).reshape(-1)[span].reshape(count, r * rb)  # (tiles, r * rb) views
        plain = (out if inverse else rows).reshape(-1)[span].reshape(count, r, rb)  # (tiles, r, rb)
        for start, u in _units(kp, bits):
            ub, usz = start * bits // 8, u * bits // 8
            if inverse:
                plain[:, :, ub : ub + usz] = tiled[:, ub * r : (ub + usz) * r].reshape(count, r, usz)
            else:
                tiled[:, ub * r : (ub + usz) * r] = plain[:, :, ub : ub + usz].reshape(count, r * usz)
    return out


def kernel_bits(bits: int) -> int:
    """The C kernel that runs ``bits``-bit codes: 4 (for 2..4 bits) or 8 (for 5..8 bits), exact either way.

    Example:
        >>> kernel_bits(3), kernel_bits(6)
        (4, 8)
    """
    if not 2 <= bits <= 8:
        raise LeanmlError(f"the C runtime runs 2..8-bit codes, not {bits}-bit", "re-quantize with --bits 4")
    return 4 if bits <= 4 else 8


def pack_rows(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes (n, k) uint8 → the C runtime layout, (n, kp * bits / 8) bytes for ``bits`` 4 or 8 (kp = :func:`padded` k).

    Each padded row is cut into units (int4: 128 codes, then at most one unit of 64 and one of 32; int8: 64, then at
    most one of 32); an int4 unit of u codes takes u/2 bytes, byte j = code j | code (j + u/2) << 4. Rows are stored in
    tiles of 4 (the last tile holds n % 4 rows), each tile unit by unit and each unit row by row, so a 4-row kernel
    reads one contiguous, 64-byte-aligned stream. The array keeps shape (n, row bytes) only for its size.

    Example:
        >>> pack_rows(np.array([[1, 2, 3]], dtype=np.uint8), 8).shape
        (1, 32)
    """
    if bits not in (4, 8) or codes.ndim != 2 or codes.dtype != np.uint8:
        raise LeanmlError(f"pack_rows takes (n, k) uint8 codes and 4 or 8 bits, got {codes.dtype} {codes.shape}")
    n, k = codes.shape
    kp = padded(k)
    full = np.zeros((n, kp), dtype=np.uint8)  # (n, kp): zero padded
    full[:, :k] = codes
    if bits == 8:
        return _tiles(full, kp, 8)
    if int(codes.max(initial=0)) > 15:
        raise LeanmlError("a code does not fit 4 bits", "quantize with --bits 4 or fewer")
    rows = np.empty((n, kp // 2), dtype=np.uint8)  # (n, kp/2): each row's units in order
    for start, u in _units(kp):
        h = u // 2
        rows[:, start // 2 : start // 2 + h] = full[:, start : start + h] | (full[:, start + h : start + u] << 4)
    return _tiles(rows, kp, 4)


def unpack_rows(packed: np.ndarray, bits: int, k: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: (n, kp * bits / 8) → codes (n, k) uint8.

    Example:
        >>> unpack_rows(pack_rows(np.array([[7, 9]], dtype=np.uint8), 4), 4, 2).tolist()
        [[7, 9]]
    """
    kp = padded(k)
    rows = _tiles(packed, kp, bits, inverse=True)
    if bits == 8:
        return np.ascontiguousarray(rows[:, :k])
    full = np.empty((packed.shape[0], kp), dtype=np.uint8)  # (n, kp)
    for start, u in _units(kp):
        h = u // 2
        seg = rows[:, start // 2 : start // 2 + h]
        full[:, start : start + h], full[:, start + h : start + u] = seg & 15, seg >> 4
    return full[:, :k]


def file_codes(qweight: np.ndarray, bits: int, k: int) -> np.ndarray:
    """Codes (n, k) from a ``.lmq`` file's qweight (n, ceil(k * bits / 8)) little-endian bit stream.

    Example:
        >>> file_codes(np.array([[0x21, 0xF3]], dtype=np.uint8), 4, 4).tolist()
        [[1, 2, 3, 15]]
    """
    if bits == 8:
        return np.ascontiguousarray(qweight[:, :k])
    if bits == 4:
        out = np.empty((qweight.shape[0], qweight.shape[1] * 2), dtype=np.uint8)  # (n, 2 * bytes)
        out[:, 0::2], out[:, 1::2] = qweight & 15, qweight >> 4
        return out[:, :k]
    rows = [unpack_codes(torch.from_numpy(np.array(qweight[i : i + 256])), bits, k).numpy()
            for i in range(0, qweight.shape[0], 256)]  # fmt: skip
    return np.concatenate(rows)


@dataclass
class CMatrix:
    """A quantized matrix in the C runtime layout: ``codes`` (n, kp * bits / 8) uint8, ``scales`` (n, G) float16
    bits as uint16, ``zeros`` (n, G) uint8, optional ``bias`` (n,) float32; ``bits`` 4 or 8 (the kernel).

    The arrays must outlive every :meth:`struct` handed to C.
    """

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    bias: np.ndarray | None
    n: int
    k: int
    bits: int
    group: int

    @classmethod
    def from_codes(cls, codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray, bits: int, group: int,
                   bias: np.ndarray | None = None) -> CMatrix:  # fmt: skip
        """From unpacked codes (n, k) uint8 of ``bits`` bits, scales (n, G) float16 (or their uint16 bits), zeros.

        Example:
            >>> m = CMatrix.from_codes(np.zeros((2, 40), np.uint8), np.ones((2, 2), np.float16),
            ...                        np.zeros((2, 2), np.uint8), bits=3, group=32)
            >>> m.bits, m.codes.shape
            (4, (2, 32))
        """
        kb = kernel_bits(bits)
        n, k = codes.shape
        return cls(pack_rows(codes, kb), np.ascontiguousarray(scales).view(np.uint16), np.ascontiguousarray(zeros),
                   None if bias is None else np.ascontiguousarray(bias, dtype=np.float32), n, k, kb, group)  # fmt: skip

    def struct(self) -> QMat:
        """The ``lmq_qmat`` pointing at these arrays (sizes included, so C can check them)."""
        bias = self.bias
        return QMat(self.codes.ctypes.data, self.scales.ctypes.data, self.zeros.ctypes.data,
                    None if bias is None else bias.ctypes.data, self.codes.nbytes, self.scales.nbytes,
                    self.zeros.nbytes, 0 if bias is None else bias.nbytes, self.n, self.k, self.bits,
                    self.group)  # fmt: skip


def pack_arena(mats: list[CMatrix]) -> np.ndarray:
    """Copy the matrices' arrays into one buffer, in list order, each 64-byte aligned, and point them at it.

    One large allocation (numpy asks Linux for transparent huge pages from 4 MB up), laid out in the order the
    decoder reads the weights: a decode step streams through it from start to end. Returns the buffer (keep it).

    Example:
        >>> m = CMatrix.from_codes(np.zeros((2, 32), np.uint8), np.ones((2, 1), np.float16),
        ...                        np.zeros((2, 1), np.uint8), 4, 32)
        >>> arena = pack_arena([m])
        >>> arena.nbytes, m.codes.base is not None
        (192, True)
    """
    parts = [a for m in mats for a in (m.codes, m.scales, m.zeros, m.bias) if a is not None]
    total = sum(-(-a.nbytes // 64) * 64 for a in parts)
    arena = np.empty(total, np.uint8)
    offset = 0
    for m in mats:
        for field in ("codes", "scales", "zeros", "bias"):
            a = getattr(m, field)
            if a is None:
                continue
            view = arena[offset : offset + a.nbytes].view(a.dtype).reshape(a.shape)
            view[...] = a
            setattr(m, field, view)
            offset += -(-a.nbytes // 64) * 64
    return arena


class Pool:
    """A persistent C thread pool of ``threads`` threads (the caller's included); a context manager.

    Example:
        >>> with Pool(load_library(), 2) as pool:  # doctest: +SKIP
        ...     y = gemm(lib, pool, mat, x)
    """

    def __init__(self, lib: ctypes.CDLL, threads: int) -> None:
        self.handle: int | None = None
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise LeanmlError(f"threads must be a positive integer, got {threads!r}", "pass e.g. --threads 2")
        self.lib = lib
        self.threads = threads
        self.handle = lib.lmq_pool_create(threads)
        if not self.handle:
            raise LeanmlError(f"could not start a pool of {threads} threads", "pass fewer threads")

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self.handle:
            self.lib.lmq_pool_free(self.handle)
            self.handle = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def gemm(pool: Pool, mat: CMatrix, x: np.ndarray, variant: str = "simd") -> np.ndarray:
    """y (m, n) = W x for activations x (m, k) quantized on the fly, with kernel ``variant`` (ref, unroll, simd).

    Example:
        >>> y = gemm(pool, mat, np.ones((1, mat.k), np.float32))  # doctest: +SKIP
    """
    x = _f32(x)
    if x.ndim != 2 or x.shape[1] != mat.k:
        raise LeanmlError(f"activations of shape {x.shape} do not match a matrix with k = {mat.k}")
    y = np.empty((x.shape[0], mat.n), dtype=np.float32)
    err = ctypes.create_string_buffer(ERR_LEN)
    s = mat.struct()
    rc = pool.lib.lmq_k_gemm(pool.handle, VARIANTS[variant], ctypes.byref(s), x.ctypes.data, x.shape[0],
                             y.ctypes.data, err, ERR_LEN)  # fmt: skip
    if rc:
        raise LeanmlError(f"C kernel refused: {err.value.decode()}")
    return y


def quantize(lib: ctypes.CDLL, x: np.ndarray, variant: str = "simd") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activation quantization of x (m, k): codes (m, kp) int8, block scales (m, kp/32), block code sums.

    Example:
        >>> q, d, s = quantize(lib, np.full((1, 4), 2.0, np.float32))  # doctest: +SKIP
        >>> q[0, :5].tolist(), float(d[0, 0]) * 127  # doctest: +SKIP
        ([127, 127, 127, 127, 0], 2.0)
    """
    x = _f32(x)
    m, k = x.shape
    kp = padded(k)
    q = np.empty((m, kp), np.int8)
    d = np.empty((m, kp // BLOCK), np.float32)
    s = np.empty((m, kp // BLOCK), np.int32)
    if lib.lmq_k_quantize(VARIANTS[variant], x.ctypes.data, m, k, q.ctypes.data, d.ctypes.data, s.ctypes.data):
        raise LeanmlError("activation quantization failed")
    return q, d, s


def fgemm(pool: Pool, w: np.ndarray, x: np.ndarray, variant: str = "simd") -> np.ndarray:
    """Float y (m, n) = x (m, k) W^T for W (n, k) float32.

    Example:
        >>> fgemm(pool, np.eye(3, dtype=np.float32), np.ones((1, 3), np.float32))  # doctest: +SKIP
        array([[1., 1., 1.]], dtype=float32)
    """
    w, x = _f32(w), _f32(x)
    y = np.empty((x.shape[0], w.shape[0]), np.float32)
    if pool.lib.lmq_k_fgemm(pool.handle, VARIANTS[variant], w.ctypes.data, w.shape[0], w.shape[1], x.ctypes.data,
                            x.shape[0], y.ctypes.data):  # fmt: skip
        raise LeanmlError("float GEMM refused its arguments")
    return y


def dot_f16(lib: ctypes.CDLL, q: np.ndarray, k: np.ndarray, variant: str = "simd") -> np.ndarray:
    """Attention scores: out[t] = q (n,) . k[t] for k (count, n) float16.

    Example:
        >>> dot_f16(lib, np.ones(3, np.float32), np.ones((2, 3), np.float16), "ref")  # doctest: +SKIP
        array([3., 3.], dtype=float32)
    """
    q, k = _f32(q), np.ascontiguousarray(k, dtype=np.float16)
    count, n = k.shape
    if q.shape != (n,):
        raise LeanmlError(f"query of shape {q.shape} does not match keys of shape {k.shape}")
    out = np.empty(count, np.float32)
    if lib.lmq_k_dot_f16(VARIANTS[variant], q.ctypes.data, k.ctypes.data, n, count, out.ctypes.data):
        raise LeanmlError("dot_f16 refused its arguments")
    return out


def axpy_f16(lib: ctypes.CDLL, p: np.ndarray, v: np.ndarray, out: np.ndarray, variant: str = "simd") -> np.ndarray:
    """Attention values: a copy of out (count, n) with out[t] += p[t] * v[t] for v (count, n) float16.

    Example:
        >>> p, v, out = np.ones(1, np.float32), np.ones((1, 2), np.float16), np.zeros((1, 2), np.float32)
        >>> axpy_f16(lib, p, v, out)  # doctest: +SKIP
        array([[1., 1.]], dtype=float32)
    """
    p, v, res = _f32(p), np.ascontiguousarray(v, dtype=np.float16), _f32(out).copy()
    count, n = v.shape
    if p.shape != (count,) or res.shape != v.shape:
        raise LeanmlError(f"axpy shapes do not match: p {p.shape}, v {v.shape}, out {res.shape}")
    if lib.lmq_k_axpy_f16(VARIANTS[variant], p.ctypes.data, v.ctypes.data, n, count, res.ctypes.data):
        raise LeanmlError("axpy_f16 refused its arguments")
    return res


def attend(lib: ctypes.CDLL, q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
           variant: str = "simd") -> np.ndarray:  # fmt: skip
    """One attention head: softmax(q . k_j * scale) . v_j for q (hd,), keys and values (n, hd) float16 → (hd,).

    Example:
        >>> kv = np.ones((3, 4), np.float16)
        >>> attend(lib, np.ones(4, np.float32), kv, kv, 0.5)  # doctest: +SKIP
        array([1., 1., 1., 1.], dtype=float32)
    """
    q = _f32(q)
    k, v = np.ascontiguousarray(k, dtype=np.float16), np.ascontiguousarray(v, dtype=np.float16)
    n, hd = k.shape
    if q.shape != (hd,) or v.shape != (n, hd):
        raise LeanmlError(f"attention shapes do not match: q {q.shape}, k {k.shape}, v {v.shape}")
    out = np.empty(hd, np.float32)
    if lib.lmq_k_attend(VARIANTS[variant], q.ctypes.data, k.ctypes.data, v.ctypes.data, n, hd, scale,
                        out.ctypes.data):  # fmt: skip
        raise LeanmlError("attend refused its arguments")
    return out


def bench_gemm(pool: Pool, mat: CMatrix, x: np.ndarray, variant: str = "simd", calls: int = 1, warmup: int = 1,
               repeats: int = 5) -> np.ndarray:  # fmt: skip
    """Raw samples of the GEMM y = W x (x (m, k) quantized once, outside the timing), timed in C: ``warmup``
    untimed batches, then nanoseconds of each of ``repeats`` batches of ``calls`` back-to-back calls, (repeats,)
    int64 (statistics: :meth:`leanml.profile.timing.LatencyStats.from_samples`).

    Example:
        >>> ns = bench_gemm(pool, mat, np.ones((1, mat.k), np.float32), calls=10, repeats=5)  # doctest: +SKIP
        >>> LatencyStats.from_samples(ns / 10 / 1e6, threads=pool.threads).median_ms  # doctest: +SKIP
        0.012
    """
    x = _f32(x)
    if x.ndim != 2 or x.shape[1] != mat.k:
        raise LeanmlError(f"activations of shape {x.shape} do not match a matrix with k = {mat.k}")
    y = np.empty((x.shape[0], mat.n), dtype=np.float32)
    ns = np.zeros(max(repeats, 1), np.int64)
    err = ctypes.create_string_buffer(ERR_LEN)
    s = mat.struct()
    if pool.lib.lmq_k_bench_gemm(pool.handle, VARIANTS[variant], ctypes.byref(s), x.ctypes.data, x.shape[0],
                                 y.ctypes.data, calls, warmup, repeats, ns.ctypes.data, err, ERR_LEN):  # fmt: skip
        raise LeanmlError(f"C kernel refused: {err.value.decode()}")
    return ns


def bench_fgemm(pool: Pool, w: np.ndarray, x: np.ndarray, variant: str = "simd", calls: int = 1, warmup: int = 1,
                repeats: int = 5) -> np.ndarray:  # fmt: skip
    """Raw samples of the float GEMM x (m, k) W^T for W (n, k), as :func:`bench_gemm` takes them: (repeats,) ns.

    Example:
        >>> bench_fgemm(pool, np.eye(3, dtype=np.float32), np.ones((1, 3), np.float32)).shape  # doctest: +SKIP
        (5,)
    """
    w, x = _f32(w), _f32(x)
    y = np.empty((x.shape[0], w.shape[0]), np.float32)
    ns = np.zeros(max(repeats, 1), np.int64)
    if pool.lib.lmq_k_bench_fgemm(pool.handle, VARIANTS[variant], w.ctypes.data, w.shape[0], w.shape[1],
                                  x.ctypes.data, x.shape[0], y.ctypes.data, calls, warmup, repeats,
                                  ns.ctypes.data):  # fmt: skip
        raise LeanmlError("float GEMM timing refused its arguments", "pass calls >= 1, warmup >= 0, repeats >= 1")
    return ns


def memory_bandwidth(pool: Pool, mbytes: int = 256, repeats: int = 5) -> float:
    """Measured read bandwidth in bytes/s: the best of ``repeats`` passes over a ``mbytes`` MB buffer, split over the
    pool's threads (the bound of a memory-bound decode step). C returns each pass's nanoseconds; the rates go through
    :class:`leanml.profile.timing.Throughput` (its ``high``: the fastest pass).

    Example:
        >>> memory_bandwidth(pool) / 1e9  # doctest: +SKIP
        14.2
    """
    buf = np.ones(mbytes << 20, np.uint8)
    ns = np.zeros(max(repeats, 1), np.int64)
    if pool.lib.lmq_k_bench_read(pool.handle, buf.ctypes.data, buf.nbytes, repeats, ns.ctypes.data):
        raise LeanmlError("bandwidth probe refused its arguments")
    return Throughput.of([buf.nbytes / (int(t) / 1e9) for t in ns]).high


def pool_check(pool: Pool, runs: int = 20000, max_chunks: int = 8) -> int:
    """Run ``runs`` back-to-back parallel regions of 1..``max_chunks`` chunks on ``pool`` and return how many chunks
    did not run exactly once (0 for a correct pool; a stress test of the hand-over between regions).

    Example:
        >>> pool_check(pool, runs=1000)  # doctest: +SKIP
        0
    """
    counts = np.zeros(max_chunks, np.int32)
    wrong = int(pool.lib.lmq_k_pool_check(pool.handle, runs, max_chunks, counts.ctypes.data))
    if wrong < 0:
        raise LeanmlError("pool check refused its arguments", "pass runs >= 1 and max_chunks >= 1")
    return wrong
