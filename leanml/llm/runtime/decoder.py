"""The C runtime for packed Llama-family models: one C call per prompt (prefill) and one per generated token.

:class:`CRuntime` reads a ``.lmq`` file through :class:`~leanml.llm.io.packed_file.PackedFile` (header checked there,
every shape checked here, then again in C), puts the quantized linears in the C runtime layout
(:mod:`leanml.llm.runtime.kernels`),
converts norms and embeddings to float32, quantizes the head (int8 per group of 128, or float32 on request), and
hands C pointers to these arrays (it keeps them alive). C holds a persistent thread pool and a float16 KV cache
for ``n_ctx`` positions; activations are quantized to int8 per block of 32 before every matrix product (W4A8).

2..4-bit linears run on the int4 kernel, 5..8-bit ones on the int8 kernel (exact: the same codes, scales and zeros);
linears the quantizer skipped (stored float) and the float head are quantized at load to int8, group 128,
symmetric (zero 128), their float16 scale rounded up like the file's.

Example:
    >>> rt = CRuntime("smollm2-rtn-w4g128.lmq", n_ctx=512, threads=2)  # doctest: +SKIP
    >>> logits = rt.prefill([1, 504, 3458])  # (vocab,) of the last token  # doctest: +SKIP
    >>> logits = rt.decode(int(logits.argmax()))  # doctest: +SKIP
    >>> rt.position  # doctest: +SKIP
    4
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leanml.errors import LeanmlError
from leanml.llm.io.packed_file import PackedFile, recreate_hint, verify_default
from leanml.llm.quant.groupquant import quantize_linear_weight
from leanml.llm.runtime import kernels as ck
from leanml.llm.runtime.bindings import ERR_LEN, LayerDesc, ModelDesc, QMat, load_library

HEADS = ("int8", "int4", "float32")
HEAD_GROUP = 128
DEFAULT_CTX = 4096
"""KV cache positions when none are asked for (and the model does not say a smaller context): the CLI's default too."""
ARCH_HINT = "the C runtime runs Llama-family models (llama, mistral without sliding window); use --engine torch"
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj")  # fmt: skip


def rope_theta(cfg: dict[str, Any]) -> float:
    """RoPE base of an HF config (``rope_parameters`` or the older ``rope_theta``); any scaling is refused.

    Example:
        >>> rope_theta({"rope_parameters": {"rope_type": "default", "rope_theta": 1e5}})
        100000.0
        >>> rope_theta({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: RoPE scaling 'llama3' is not supported by the C runtime (...)
    """
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise LeanmlError(f"RoPE scaling {kind!r} is not supported by the C runtime", "use --engine torch")
    return float(params.get("rope_theta") or cfg.get("rope_theta") or 10000.0)


def check_config(cfg: dict[str, Any]) -> None:
    """Refuse configs the C decoder does not implement (architecture, activation, sliding window, RoPE scaling).

    Example:
        >>> check_config({"model_type": "gpt2"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: model type 'gpt2' ... (the C runtime runs Llama-family models ...)
    """
    if cfg.get("model_type") not in ("llama", "mistral"):
        raise LeanmlError(f"model type {cfg.get('model_type')!r} is not a Llama-family model", ARCH_HINT)
    if cfg.get("hidden_act", "silu") != "silu":
        raise LeanmlError(f"activation {cfg.get('hidden_act')!r} is not SiLU", ARCH_HINT)
    if cfg.get("sliding_window") not in (None, 0):
        raise LeanmlError("sliding-window attention is not supported by the C runtime", ARCH_HINT)
    rope_theta(cfg)


def unsupported(header: dict[str, Any]) -> str | None:
    """Why the C runtime cannot run a packed file with this header, or None when it can.

    Example:
        >>> unsupported({"config": {"model_type": "llama"}, "linears": {"a": {"bits": 4, "group_size": 48}}})
        'a: group size 48 is not a multiple of 32'
    """
    try:
        check_config(header["config"])
    except LeanmlError as e:
        return e.message
    for name, lin in header["linears"].items():
        if int(lin["group_size"]) % ck.BLOCK:
            return f"{name}: group size {lin['group_size']} is not a multiple of 32"
        if not 2 <= int(lin["bits"]) <= 8:
            return f"{name}: {lin['bits']}-bit codes"
    return None


def int8_matrix(w: np.ndarray, group: int = HEAD_GROUP) -> ck.CMatrix:
    """A float matrix (n, k) as int8 codes: symmetric per (row, group), zero 128, float16 scales rounded up.

    Example:
        >>> m = int8_matrix(np.array([[1.0, -2.0, 0.5]], np.float32))
        >>> m.bits, int(m.zeros[0, 0]), m.codes[0, :3].tolist()
        (8, 128, [191, 1, 160])
    """
    n, k = w.shape
    g = -(-k // group)
    padded = np.zeros((n, g * group), np.float32)  # (n, G * group)
    padded[:, :k] = w
    amax = np.abs(padded.reshape(n, g, group)).max(-1).astype(np.float64)  # (n, G)
    scale = np.maximum(amax / 127.0, 2.0**-24)
    half = scale.astype(np.float16)
    half = np.where(half.astype(np.float64) < scale, np.nextafter(half, np.float16(np.inf)), half)  # round up
    s = np.repeat(half.astype(np.float32), group, 1)[:, :k]  # (n, k)
    codes = (np.clip(np.round(w / s), -127, 127) + 128).astype(np.uint8)  # (n, k)
    return ck.CMatrix.from_codes(codes, half, np.full((n, g), 128, np.uint8), 8, group)


def int4_matrix(w: np.ndarray, group: int = HEAD_GROUP) -> ck.CMatrix:
    """A float matrix (n, k) as int4 codes with leanml's group quantizer (asymmetric, float16 scales; the linears'
    convention, ``docs/llm_format.md``).

    Example:
        >>> int4_matrix(np.ones((2, 40), np.float32)).bits
        4
    """
    gq = quantize_linear_weight(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)), 4, group, "lm_head")
    return ck.CMatrix.from_codes(gq.q.numpy(), gq.scale.numpy().astype(np.float16), gq.zero.numpy(), 4, group)


class CRuntime:
    """A packed model loaded into leanml's C runtime (see the module): prefill, decode, reset.

    ``n_ctx`` positions of KV cache (at most the model's ``max_position_embeddings``; default the smaller of that
    and :data:`DEFAULT_CTX`), ``threads`` >= 1 (the pool is created once; default: every core), ``head`` one of
    :data:`HEADS` (``int8``: symmetric per group of 128; ``int4``: leanml's asymmetric group quantizer, group 128;
    ``float32``),
    ``library`` a loaded build (default: the optimized one), ``verify`` whether C checks the data CRC (default:
    :func:`~leanml.llm.io.packed_file.verify_default`; the table is always checked, in Python and in C).

    Example:
        >>> rt = CRuntime("model.lmq", n_ctx=256, threads=1)  # doctest: +SKIP
        >>> rt.prefill([1, 2, 3]).shape  # doctest: +SKIP
        torch.Size([49152])
    """

    def __init__(self, path: str | Path, n_ctx: int | None = None, threads: int | None = None, head: str = "int8",
                 library: ctypes.CDLL | None = None, verify: bool | None = None) -> None:  # fmt: skip
        self._model: int | None = None
        self.path = Path(path)
        self.file = PackedFile(self.path, verify=False)  # the header and table checked in Python; the CRC in C
        self.header = self.file.header
        cfg = self.header["config"]
        limit = int(cfg.get("max_position_embeddings") or DEFAULT_CTX)
        n_ctx = min(DEFAULT_CTX, limit) if n_ctx is None else n_ctx
        threads = (os.cpu_count() or 1) if threads is None else threads
        for name, value in (("n_ctx", n_ctx), ("threads", threads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LeanmlError(f"{name} must be a positive integer, got {value!r}", f"pass e.g. {name}=2")
        if head not in HEADS:
            raise LeanmlError(f"unknown head kind {head!r}", f"choose one of: {', '.join(HEADS)}")
        check_config(cfg)
        if n_ctx > limit:
            raise LeanmlError(f"n_ctx {n_ctx} exceeds the model's context of {limit} tokens", f"pass n_ctx <= {limit}")
        self.n_ctx, self.threads, self.head = n_ctx, threads, head
        self.lib = library if library is not None else load_library()
        self._keep: list[Any] = []  # every array C points into
        self._check_in_c(verify_default() if verify is None else verify)
        with self.file:
            desc = self._describe(self.file, cfg)  # copies out of the file
        err = ctypes.create_string_buffer(ERR_LEN)
        handle = self.lib.lmq_create(ctypes.byref(desc), err, ERR_LEN)
        if not handle:
            raise LeanmlError(f"the C runtime refused {self.path}: {err.value.decode()}", "re-create the file")
        self._model = handle
        self.vocab = int(desc.vocab)

    # ---------------------------------------------------------------- loading
    def _check_in_c(self, verify: bool) -> None:
        """The C loader's own check of the mapped file: table against the file, alignment, overlap, data CRC."""
        header, table = self.header, self.file.table
        spans = np.array(sorted((t["offset"], t["nbytes"]) for t in table.values()), np.int64).reshape(-1, 2)
        raw = np.memmap(self.path, dtype=np.uint8, mode="r")
        err = ctypes.create_string_buffer(ERR_LEN)
        rc = self.lib.lmq_check_file(raw.ctypes.data, raw.size, self.file.data_start, header["data_bytes"],
                                     spans.ctypes.data, len(spans), header["data_crc32"], int(verify), err,
                                     ERR_LEN)  # fmt: skip
        del raw
        if rc:
            raise LeanmlError(f"the C runtime refused {self.path}: {err.value.decode()}", recreate_hint(self.path))

    def _keep_f32(self, a: np.ndarray) -> tuple[int, int]:
        a = np.ascontiguousarray(a, dtype=np.float32)
        self._keep.append(a)
        return a.ctypes.data, a.nbytes

    def _matrix(self, t: PackedFile, name: str, n: int, k: int) -> ck.CMatrix:
        lin = self.header["linears"].get(name)
        if lin is None:  # left in float by the quantizer: int8 here
            return int8_matrix(t.float32(f"{name}.weight", (n, k)))
        if (lin["out"], lin["in"]) != (n, k):
            raise LeanmlError(f"{name} is ({lin['out']}, {lin['in']}), expected ({n}, {k})", "re-create the file")
        bits, group = int(lin["bits"]), int(lin["group_size"])
        if group % ck.BLOCK:
            raise LeanmlError(
                f"{name}: group size {group} is not a multiple of 32", "re-quantize with --group-size 128"
            )
        g = -(-k // group)
        codes = ck.file_codes(t.array(f"{name}.qweight", (n, -(-k * bits // 8))), bits, k)
        bias = t.float32(f"{name}.bias", (n,)) if lin.get("bias") else None
        scales, zeros = np.array(t.array(f"{name}.scales", (n, g))), np.array(t.array(f"{name}.zeros", (n, g)))
        return ck.CMatrix.from_codes(codes, scales, zeros, bits, group, bias)

    def _describe(self, t: PackedFile, cfg: dict[str, Any]) -> ModelDesc:
        try:
            layers, hidden = int(cfg["num_hidden_layers"]), int(cfg["hidden_size"])
            heads, inter, vocab = int(cfg["num_attention_heads"]), int(cfg["intermediate_size"]), int(cfg["vocab_size"])
            kv = int(cfg.get("num_key_value_heads") or heads)
            hd = int(cfg.get("head_dim") or hidden // heads)
            eps = float(cfg.get("rms_norm_eps", 1e-6))
        except (KeyError, TypeError, ValueError) as e:
            raise LeanmlError(f"{self.path}: incomplete model config ({e!r})", "re-create the file") from e
        shapes = [(heads * hd, hidden), (kv * hd, hidden), (kv * hd, hidden), (hidden, heads * hd),
                  (inter, hidden), (inter, hidden), (hidden, inter)]  # fmt: skip
        mats = [[self._matrix(t, f"model.layers.{i}.{lin}", n, k) for lin, (n, k) in zip(LINEARS, shapes, strict=True)]
                for i in range(layers)]  # fmt: skip
        embed = t.float32("model.embed_tokens.weight", (vocab, hidden))
        head, hf, hb = None, None, 0
        if "lm_head" in self.header["linears"]:
            head = self._matrix(t, "lm_head", vocab, hidden)
        else:
            w = embed if cfg.get("tie_word_embeddings") else t.float32("lm_head.weight", (vocab, hidden))
            if self.head == "float32":
                hf, hb = self._keep_f32(w)
            else:
                head = int4_matrix(w) if self.head == "int4" else int8_matrix(w)
        every = [m for layer in mats for m in layer] + ([head] if head is not None else [])
        self._arena = ck.pack_arena(every)  # one buffer in the order a decode step reads it
        self._keep.extend(every)
        descs = (LayerDesc * layers)()
        for i in range(layers):
            p = f"model.layers.{i}."
            an, ab = self._keep_f32(t.float32(p + "input_layernorm.weight", (hidden,)))
            mn, mb = self._keep_f32(t.float32(p + "post_attention_layernorm.weight", (hidden,)))
            descs[i] = LayerDesc(an, mn, ab, mb, *[m.struct() for m in mats[i]])
        self._keep.append(descs)
        en, eb = self._keep_f32(embed)
        fn, fb = self._keep_f32(t.float32("model.norm.weight", (hidden,)))
        head_q = head.struct() if head is not None else QMat()
        return ModelDesc(layers, hidden, heads, kv, hd, inter, vocab, self.n_ctx, self.threads, eps, rope_theta(cfg),
                         en, fn, hf, eb, fb, hb, head_q, ctypes.addressof(descs), ctypes.sizeof(descs))  # fmt: skip

    # ---------------------------------------------------------------- running
    @property
    def position(self) -> int:
        """Tokens in the KV cache."""
        return int(self.lib.lmq_position(self._handle()))

    def _handle(self) -> int:
        if self._model is None:
            raise LeanmlError("this C runtime was closed", "create a new CRuntime")
        return self._model

    def forward(self, ids: Sequence[int] | torch.Tensor, all_logits: bool = False) -> torch.Tensor:
        """Append ``ids`` after the cached positions; logits (len(ids), vocab), or (vocab,) of the last token.

        Example:
            >>> rt.forward([5, 6], all_logits=True).shape  # doctest: +SKIP
            torch.Size([2, 49152])
        """
        arr = np.ascontiguousarray(torch.as_tensor(ids, dtype=torch.long).flatten().numpy(), dtype=np.int64)
        n = len(arr)
        if n == 0:
            raise LeanmlError("no tokens to run", "pass at least one token id")
        if self.position + n > self.n_ctx:
            raise LeanmlError(f"{self.position} cached + {n} new tokens exceed the context of {self.n_ctx}",
                              "create the runtime with a larger n_ctx (--ctx), or reset it")  # fmt: skip
        if arr.min() < 0 or arr.max() >= self.vocab:
            raise LeanmlError(f"token ids outside the vocabulary of {self.vocab}", "encode with the model's tokenizer")
        ids32 = arr.astype(np.int32)
        out = np.empty((n if all_logits else 1, self.vocab), np.float32)
        err = ctypes.create_string_buffer(ERR_LEN)
        if self.lib.lmq_forward(self._handle(), ids32.ctypes.data, n, out.ctypes.data, int(all_logits), err,
                                ERR_LEN):  # fmt: skip
            raise LeanmlError(f"the C runtime failed: {err.value.decode()}")
        return torch.from_numpy(out if all_logits else out[0])

    def prefill(self, ids: Sequence[int] | torch.Tensor, all_logits: bool = False) -> torch.Tensor:
        """Start a new sequence with ``ids`` (the cache is reset): logits of the last token, (vocab,).

        Example:
            >>> rt.prefill([1, 2, 3]).shape  # doctest: +SKIP
            torch.Size([49152])
        """
        self.reset()
        return self.forward(ids, all_logits)

    def decode(self, token: int) -> torch.Tensor:
        """Append one token: its logits (vocab,).

        Example:
            >>> rt.decode(42).shape  # doctest: +SKIP
            torch.Size([49152])
        """
        return self.forward([int(token)])

    def reset(self) -> None:
        """Forget the cached positions.

        Example:
            >>> rt.reset(); rt.position  # doctest: +SKIP
            0
        """
        self.lib.lmq_reset(self._handle())

    def weight_bytes(self) -> int:
        """Bytes of weights read per decoded token (linears, norms, head; the embedding row is negligible).

        Example:
            >>> rt.weight_bytes() / 1e6  # doctest: +SKIP
            86.2
        """
        total = 0
        for a in self._keep:
            if isinstance(a, ck.CMatrix):
                total += a.codes.nbytes + a.scales.nbytes + a.zeros.nbytes
            elif isinstance(a, np.ndarray) and a.shape != (self.vocab, int(self.header["config"]["hidden_size"])):
                total += a.nbytes
        if self.head == "float32" and "lm_head" not in self.header["linears"]:
            total += self.vocab * int(self.header["config"]["hidden_size"]) * 4
        return total

    def close(self) -> None:
        """Free the C model and its threads (idempotent)."""
        if self._model is not None:
            self.lib.lmq_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()
