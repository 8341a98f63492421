"""Prefill and decode speed of a packed model: leanml's C runtime or the PyTorch reference path, same protocol.

Each repeat starts an empty KV cache, prefills ``prompt_tokens`` seeded random token ids (one call) and then decodes
``gen_tokens`` tokens one call at a time, feeding back the argmax of the last logits (greedy, as a generation loop
would; ``argmax`` is inside the timing, sampling and text decoding are not), each phase timed by
:func:`leanml.profile.timing.time_calls`. One untimed warm-up repeat first.
Reported: tokens per second of each phase (:class:`leanml.profile.timing.Throughput`: median over the repeats with
the min-max spread), the thread count, the file size and the weight bytes read per decoded token.

Example:
    >>> r = bench_speed("smollm2-rtn-w4g128.lmq", threads=2, prompt_tokens=128, gen_tokens=128)  # doctest: +SKIP
    >>> print(r.summary())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from leanml.errors import LeanmlError
from leanml.llm.io.packed_file import is_packed_file, read_header
from leanml.llm.io.packed_model import load_packed
from leanml.llm.runtime.decoder import CRuntime
from leanml.profile.timing import Throughput, time_calls
from leanml.threads import torch_threads

ENGINES = ("c", "torch")


@dataclass(frozen=True)
class BenchResult:
    """What :func:`bench_speed` measured (see the module), with the setup that produced it."""

    model: str
    engine: str
    threads: int
    head: str
    prompt_tokens: int
    gen_tokens: int
    repeats: int
    file_bytes: int
    weight_bytes_per_token: int
    prefill: Throughput  # tokens/s
    decode: Throughput  # tokens/s
    simd: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON-safe)."""
        return asdict(self)

    def summary(self) -> str:
        """Three lines for a terminal.

        Example:
            >>> print(r.summary())  # doctest: +SKIP
        """
        return (
            f"{self.model}: engine {self.engine} ({self.simd}), {self.threads} threads, head {self.head}; "
            f"file {self.file_bytes / 1e6:.1f} MB, {self.weight_bytes_per_token / 1e6:.1f} MB of weights per token\n"
            f"  prefill ({self.prompt_tokens} tokens): {_tokens_per_s(self.prefill)}\n"
            f"  decode ({self.gen_tokens} tokens after the prompt): {_tokens_per_s(self.decode)}"
            f"  [{self.repeats} repeats]"
        )


def _tokens_per_s(t: Throughput) -> str:
    return f"{t.median:.1f} tok/s (min {t.low:.1f}, max {t.high:.1f})"


def _check(name: str, value: int, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise LeanmlError(f"{name} must be an integer >= {least}, got {value!r}", f"pass e.g. --{name} 128")


def _torch_steps(path: Path) -> tuple[Callable[[list[int]], torch.Tensor], Callable[[int], torch.Tensor], int, str]:
    """prefill and decode closures over the PyTorch reference path (PackedLinear, float32, DynamicCache)."""
    from transformers import DynamicCache

    model: Any = load_packed(path).model
    state: dict[str, Any] = {}

    @torch.no_grad()
    def prefill(ids: list[int]) -> torch.Tensor:
        state["cache"], state["pos"] = DynamicCache(config=model.config), len(ids)
        out = model(input_ids=torch.tensor([ids]), past_key_values=state["cache"], use_cache=True, logits_to_keep=1)
        return out.logits[0, -1]

    @torch.no_grad()
    def decode(token: int) -> torch.Tensor:
        pos = torch.tensor([[state["pos"]]])
        out = model(input_ids=torch.tensor([[token]]), position_ids=pos, past_key_values=state["cache"],
                    use_cache=True, logits_to_keep=1)  # fmt: skip
        state["pos"] += 1
        return out.logits[0, -1]

    weights = sum(b.numel() * b.element_size() for n, b in model.named_buffers() if "embed" not in n)
    weights += sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "embed" not in n)
    return prefill, decode, weights, "torch"


def bench_speed(
    path: str | Path,
    engine: str = "c",
    threads: int = 1,
    prompt_tokens: int = 128,
    gen_tokens: int = 128,
    repeats: int = 5,
    head: str = "int8",
    seed: int = 0,
) -> BenchResult:
    """Measure prefill and decode tokens/s of the packed model at ``path`` (see the module).

    Example:
        >>> bench_speed("model.lmq", engine="c", threads=2, repeats=3).decode.median  # doctest: +SKIP
        171.4
    """
    if engine not in ENGINES:
        raise LeanmlError(f"unknown engine {engine!r}", f"choose one of: {', '.join(ENGINES)}")
    for name, value, least in (("threads", threads, 1), ("prompt-tokens", prompt_tokens, 1),
                               ("gen-tokens", gen_tokens, 1), ("repeats", repeats, 1)):  # fmt: skip
        _check(name, value, least)
    p = Path(path)
    if not is_packed_file(p):
        raise LeanmlError(f"{p} is not a packed model file", "make one with leanml llm quantize ... --out MODEL.lmq")
    header, _ = read_header(p)
    vocab = int(header["config"]["vocab_size"])
    prefill: Callable[[list[int]], torch.Tensor]
    decode: Callable[[int], torch.Tensor]
    if engine == "c":
        rt = CRuntime(p, n_ctx=prompt_tokens + gen_tokens, threads=threads, head=head)
        prefill, decode, weights, simd = rt.prefill, rt.decode, rt.weight_bytes(), rt.lib.lmq_simd_name().decode()
    else:
        prefill, decode, weights, simd = _torch_steps(p)
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (prompt_tokens,), generator=gen).tolist()
    last = [0]  # the token the prefill picked, where the decode phase starts

    def run_prefill() -> None:
        last[0] = int(prefill(prompt).argmax())

    def run_decode() -> None:
        token = last[0]
        for _ in range(gen_tokens):
            token = int(decode(token).argmax())

    pre, dec = [], []
    with torch_threads(threads if engine == "torch" else None):
        for r in range(repeats + 1):  # the first repeat warms up; each times one prefill, then the decode steps
            (pre_ms,), (dec_ms,) = time_calls(run_prefill, 0, 1), time_calls(run_decode, 0, 1)
            if r:
                pre.append(prompt_tokens / (pre_ms / 1e3))
                dec.append(gen_tokens / (dec_ms / 1e3))
    return BenchResult(str(p), engine, threads, head if engine == "c" else "float32", prompt_tokens, gen_tokens,
                       repeats, p.stat().st_size, weights, Throughput.of(pre), Throughput.of(dec), simd)  # fmt: skip
