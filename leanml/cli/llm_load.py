"""MODEL as every ``leanml llm`` command loads it, and the options the LLM commands share.

MODEL is anything :func:`leanml.llm.io.model_loader.load_llm` takes (``smollm2``, an HF model folder or a ``.gguf``
file) or a packed ``.lmq`` file written by ``leanml llm quantize``; :func:`load_model_arg` is the one place that maps
it to a model, :func:`load_on_engine` puts it on the C runtime or torch.

Example:
    >>> torch_dtype("bfloat16")
    torch.bfloat16
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from leanml.errors import LeanmlError
from leanml.progress import make_console

if TYPE_CHECKING:
    import torch

    from leanml.llm.io.model_info import LoadedLLM

DTYPES = ("float32", "bfloat16", "float16")

ModelArg = Annotated[str, typer.Argument(help="'smollm2', an HF model folder, a .gguf file or a packed .lmq file")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="weight dtype in memory: float32, bfloat16 or float16")]


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype named ``name`` (one of :data:`DTYPES`).

    Example:
        >>> torch_dtype("float16")
        torch.float16
    """
    import torch

    if name not in DTYPES:
        raise LeanmlError(f"unknown dtype {name!r}", f"choose one of: {', '.join(DTYPES)}")
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def load_model_arg(model: str, dtype: torch.dtype, progress: bool = True) -> LoadedLLM:
    """Load MODEL for every ``leanml llm`` command on torch, and say what was loaded on stderr.

    The one place that maps the MODEL argument to a model: add new kinds of MODEL here (a packed quantized
    model file from ``leanml llm quantize`` is detected by its header before falling back to :func:`load_llm`;
    its model is the unpacked HF module, so ``eval``, ``generate`` and ``chat`` work on it unchanged).

    Example:
        >>> llm = load_model_arg("smollm2", torch_dtype("float32"), progress=False)  # doctest: +SKIP
    """
    from leanml.llm.io.model_loader import load_llm
    from leanml.llm.io.packed_file import is_packed_file
    from leanml.llm.io.packed_model import load_packed

    llm = load_packed(model, dtype=dtype) if is_packed_file(model) else load_llm(model, dtype=dtype, progress=progress)
    i = llm.info
    make_console().print(
        f"loaded {i.source} ({i.format}, {i.architecture}, {i.params / 1e6:.1f} M params, {i.dtype}) "
        f"in {llm.load_seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    return llm


def load_on_engine(model: str, engine: str | None, dtype: torch.dtype, progress: bool, threads: int | None,
                   ctx: int | None) -> LoadedLLM:  # fmt: skip
    """MODEL on the chosen engine: ``c`` runs a packed file in leanml's C runtime (the default for packed files the C
    runtime supports; others fall back to torch, saying why), ``torch`` goes through :func:`load_model_arg`.
    ``ctx`` KV cache positions (``None``: :data:`leanml.llm.runtime.decoder.DEFAULT_CTX`, at most the model's; below 1
    is refused before anything is loaded). The parameter count printed is the float model's (embeddings included, a
    tied head once), the same on every engine.

    Example:
        >>> llm = load_on_engine("model.lmq", None, torch_dtype("float32"), False, 2, None)  # doctest: +SKIP
    """
    from leanml.llm.io.packed_file import is_packed_file, read_header
    from leanml.llm.runtime.decoder import unsupported

    if ctx is not None and (isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 1):
        raise LeanmlError(f"--ctx must be a positive number of KV cache positions, got {ctx!r}", "pass e.g. --ctx 512")
    packed = is_packed_file(model)
    if engine is None and packed and (why := unsupported(read_header(model)[0])):
        make_console().print(f"[dim]the C runtime cannot run {model} ({why}): using torch[/]", highlight=False)
        engine = "torch"
    engine = engine or ("c" if packed else "torch")
    if engine == "torch":
        return load_model_arg(model, dtype, progress)
    if engine != "c":
        raise LeanmlError(f"unknown engine {engine!r}", "choose c or torch")
    if not packed:
        raise LeanmlError(f"the C engine runs packed .lmq files; {model} is not one",
                          "make one with leanml llm quantize, or pass --engine torch")  # fmt: skip
    from leanml.llm.runtime.causal_lm import load_c_engine

    llm = load_c_engine(model, n_ctx=ctx, threads=threads)  # None: the runtime's DEFAULT_CTX, at most the model's
    i, rt = llm.info, getattr(llm.model, "runtime", None)
    make_console().print(f"loaded {i.source} into the C runtime ({i.dtype}, {i.params / 1e6:.1f} M params, "
                         f"{getattr(rt, 'threads', '?')} threads) in {llm.load_seconds:.1f} s",
                         highlight=False, soft_wrap=True)  # fmt: skip
    return llm
