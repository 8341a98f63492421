"""``leanml llm eval|generate|chat``: perplexity, streamed generation and an interactive chat on a Llama-family LM.

MODEL is anything :func:`leanml.llm.load_llm` takes (``smollm2``, an HF model folder or a ``.gguf`` file)
or a packed ``.lmq`` file written by ``leanml llm quantize``, loaded by :mod:`leanml.cli.llm_load`.
Generated text streams to stdout; load times, speeds and progress bars go to stderr.

Example:
    $ leanml llm quantize smollm2 --method awq --bits 4 --group-size 128 --out smollm2-w4g128.lmq
    $ leanml llm eval smollm2-w4g128.lmq --ctx 512 --max-chunks 8
    $ leanml llm generate smollm2 --prompt "Write a haiku about the sea." --max-new-tokens 48
    $ leanml llm chat smollm2 --system "You are a concise assistant."
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.markup import escape

from leanml.cli.llm_load import DtypeOpt, ModelArg, load_model_arg, load_on_engine, torch_dtype
from leanml.cli.llm_quantize import QuantizeJob, run_quantize
from leanml.cli.options import (
    ConfigOpt,
    JsonOpt,
    OverwriteOpt,
    ProgressOpt,
    ThreadsOpt,
    config_from,
    default_of,  # fmt: skip
)
from leanml.errors import LeanmlError
from leanml.llm.eval.generate import GenerateConfig
from leanml.llm.quant.config import LLMQuantConfig
from leanml.llm.runtime.decoder import DEFAULT_CTX
from leanml.progress import make_console

if TYPE_CHECKING:
    from leanml.llm.eval.generate import GenerationResult

app = typer.Typer(
    help="LLMs (Llama family): RTN/AWQ quantization, perplexity, generation with a KV cache, chat, bench (C runtime "
    "speed).",
    no_args_is_help=True,
    add_completion=False,
)

MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", help="most tokens to generate")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="0 = greedy; else sampling temperature")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="nucleus sampling mass in (0, 1]; 1 = off")]
TopKOpt = Annotated[int, typer.Option("--top-k", help="sample among the k most likely tokens; 0 = off")]
SeedOpt = Annotated[int, typer.Option("--seed", help="sampling seed")]
PenaltyOpt = Annotated[float, typer.Option("--repetition-penalty", help="CTRL repetition penalty; 1 = off")]
EosOpt = Annotated[bool, typer.Option("--stop-at-eos/--ignore-eos", help="stop at the end-of-sequence token")]
EngineOpt = Annotated[
    str | None, typer.Option("--engine", help="c (leanml's C runtime; default for packed .lmq files) or torch")
]
CtxOpt = Annotated[
    int | None, typer.Option("--ctx", help=f"C engine: KV cache positions >= 1 (default: min(model, {DEFAULT_CTX}))")
]
CHAT_MAX_NEW_TOKENS: Final = 256
"""``leanml llm chat``'s default reply length (a chat turn runs longer than :class:`GenerateConfig`'s default)."""


@app.command("quantize")
def quantize_cmd(
    context: typer.Context,
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="the packed model file to write (.lmq)")],
    method: Annotated[str, typer.Option("--method", help="rtn or awq")] = default_of(LLMQuantConfig, "method"),
    bits: Annotated[int, typer.Option("--bits", help="weight bits (4 or 3; 2..8 work)")] = default_of(
        LLMQuantConfig, "bits"
    ),
    group_size: Annotated[int, typer.Option("--group-size", help="input channels per scale")] = default_of(
        LLMQuantConfig, "group_size"
    ),
    calib_text: Annotated[
        Path | None, typer.Option("--calib-text", help="UTF-8 calibration text (default: built-in calibration half)")
    ] = None,
    calib_samples: Annotated[int, typer.Option("--calib-samples", help="AWQ: calibration blocks")] = default_of(
        LLMQuantConfig, "calib_samples"
    ),
    calib_seq_len: Annotated[int, typer.Option("--calib-seq-len", help="AWQ: tokens per block")] = default_of(
        LLMQuantConfig, "calib_seq_len"
    ),
    duo_scaling: Annotated[bool, typer.Option("--duo-scaling", help="AWQ: AutoAWQ's s = x^a / w^(1-a)")] = default_of(
        LLMQuantConfig, "duo_scaling"
    ),
    clip: Annotated[bool, typer.Option("--clip/--no-clip", help="AWQ: weight-clipping search")] = default_of(
        LLMQuantConfig, "clip"
    ),
    search: Annotated[
        Path | None, typer.Option("--search", help="AWQ: reuse this saved search result instead of searching")
    ] = None,
    save_search: Annotated[
        Path | None, typer.Option("--save-search", help="AWQ: write the search result (scales, clips) here")
    ] = None,
    float_dtype: Annotated[
        str, typer.Option("--float-dtype", help="unquantized tensors: float16 or float32")
    ] = default_of(QuantizeJob, "float_dtype"),
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    progress: ProgressOpt = True,
    threads: ThreadsOpt = None,
) -> None:
    """Quantize the decoder linears (RTN or AWQ, group-wise) and write a packed model file."""
    flags = {"method": method, "bits": bits, "group_size": group_size, "calib_samples": calib_samples,
             "calib_seq_len": calib_seq_len, "duo_scaling": duo_scaling, "clip": clip}  # fmt: skip
    cfg = config_from(context, LLMQuantConfig, config, flags)
    job = QuantizeJob(model, out, calib_text, search, save_search, float_dtype, overwrite, progress, threads)
    run_quantize(cfg, job)


@app.command("eval")
def eval_cmd(
    model: ModelArg,
    text: Annotated[
        Path | None, typer.Option("--text", help="UTF-8 text file, used whole (default: the built-in eval half)")
    ] = None,
    ctx: Annotated[int, typer.Option("--ctx", help="context length of each window")] = 512,
    stride: Annotated[
        int | None, typer.Option("--stride", help="sliding-window stride (default: --ctx, no overlap)")
    ] = None,
    max_chunks: Annotated[int | None, typer.Option("--max-chunks", help="evaluate the first N*ctx tokens only")] = None,
    as_json: JsonOpt = False,
    dtype: DtypeOpt = "float32",
    progress: ProgressOpt = True,
    threads: ThreadsOpt = None,
) -> None:
    """Perplexity on a text, in both conventions: sliding window (HF) and llama-perplexity's chunks."""
    from leanml.llm.eval.corpus import BUILTIN, added_bos, load_text, min_tokens, text_fingerprint, tokenize_text
    from leanml.llm.eval.perplexity import perplexity
    from leanml.threads import torch_threads

    min_tokens(ctx)  # validate --ctx before loading anything
    source = BUILTIN if text is None else str(text)
    body = load_text(source, "eval")
    llm = load_model_arg(model, torch_dtype(dtype), progress)
    with torch_threads(threads):
        ids = tokenize_text(llm.tokenizer, body, ctx)
        r = perplexity(llm.model, ids, ctx=ctx, stride=stride, progress=progress,
                       bos_id=added_bos(llm.tokenizer), max_chunks=max_chunks)  # fmt: skip
    if as_json:
        doc = {"model": llm.info.to_dict(), "text": {"source": source, **text_fingerprint(body)}, **r.to_dict()}
        print(json.dumps(doc, indent=2))
        return
    name = "the built-in corpus (eval half)" if text is None else str(text)
    print(f"perplexity of {model} on {name}: {r.n_tokens} tokens, ctx {r.ctx}")
    s, c = r.sliding, r.llama_cpp
    print(f"  sliding window (stride {r.stride}): PPL {s.ppl:.4f} over {s.tokens} tokens, {s.windows} windows")
    print(f"  llama.cpp chunks: PPL {c.ppl:.4f} ± {c.ppl_stderr:.4f} over {c.tokens} tokens, {c.windows} chunks")
    make_console().print(f"{r.forward_passes} forward passes in {r.seconds:.1f} s", highlight=False, soft_wrap=True)


def _write(piece: str) -> None:
    """Stream a piece of generated text to stdout, flushed."""
    typer.echo(piece, nl=False)


def _report(result: GenerationResult) -> None:
    """Prefill and decode speeds on stderr."""
    r = result
    make_console().print(
        f"[dim]prompt {r.prompt_tokens} tokens: prefill {r.prefill_seconds:.3f} s ({r.prefill_tokens_per_s:.1f} tok/s)"
        f"; {r.new_tokens} new tokens: decode {r.decode_seconds:.3f} s ({r.decode_tokens_per_s:.1f} tok/s)"
        f"; stop: {r.stop_reason}[/]",
        highlight=False,
        soft_wrap=True,
    )


@app.command("generate")
def generate_cmd(
    context: typer.Context,
    model: ModelArg,
    prompt: Annotated[str, typer.Option("--prompt", help="the prompt text")],
    max_new_tokens: MaxNewOpt = default_of(GenerateConfig, "max_new_tokens"),
    temperature: TemperatureOpt = default_of(GenerateConfig, "temperature"),
    top_p: TopPOpt = default_of(GenerateConfig, "top_p"),
    top_k: TopKOpt = default_of(GenerateConfig, "top_k"),
    seed: SeedOpt = default_of(GenerateConfig, "seed"),
    repetition_penalty: PenaltyOpt = default_of(GenerateConfig, "repetition_penalty"),
    stop_at_eos: EosOpt = default_of(GenerateConfig, "stop_at_eos"),
    chat: Annotated[
        bool | None,
        typer.Option("--chat/--no-chat", help="wrap the prompt in the chat template (default: if the model has one)"),
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="system message (with --chat)")] = None,
    config: ConfigOpt = None,
    engine: EngineOpt = None,
    ctx: CtxOpt = None,
    dtype: DtypeOpt = "float32",
    progress: ProgressOpt = True,
    threads: ThreadsOpt = None,
) -> None:
    """Generate text after a prompt, streaming tokens to stdout; speeds on stderr."""
    from leanml.llm.eval.chat import chat_prompt_ids, has_chat_template
    from leanml.llm.eval.generate import generate
    from leanml.threads import torch_threads

    flags = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
             "seed": seed, "stop_at_eos": stop_at_eos, "repetition_penalty": repetition_penalty}  # fmt: skip
    cfg = config_from(context, GenerateConfig, config, flags)
    if not prompt:
        raise LeanmlError("the prompt is empty", 'pass --prompt "some text"')
    if system is not None and chat is False:
        raise LeanmlError("--system needs the chat template", "drop --no-chat")
    llm = load_on_engine(model, engine, torch_dtype(dtype), progress, threads, ctx)
    use_chat = has_chat_template(llm.tokenizer) if chat is None else chat
    if use_chat:
        messages = [{"role": "system", "content": system}] if system else []
        ids = chat_prompt_ids(llm.tokenizer, [*messages, {"role": "user", "content": prompt}])
    elif system is not None:
        raise LeanmlError("--system needs a chat template, and the tokenizer has none", "drop --system")
    else:
        ids = [int(i) for i in llm.tokenizer.encode(prompt, add_special_tokens=True)]
    with torch_threads(threads):
        result = generate(llm.model, llm.tokenizer, ids, cfg, on_token=_write)
    typer.echo("")
    _report(result)


@app.command("chat")
def chat_cmd(
    context: typer.Context,
    model: ModelArg,
    system: Annotated[str | None, typer.Option("--system", help="system message")] = None,
    template: Annotated[
        bool, typer.Option("--template/--no-template", help="use the chat template (else plain 'role: text' lines)")
    ] = True,
    max_new_tokens: MaxNewOpt = CHAT_MAX_NEW_TOKENS,
    temperature: TemperatureOpt = default_of(GenerateConfig, "temperature"),
    top_p: TopPOpt = default_of(GenerateConfig, "top_p"),
    top_k: TopKOpt = default_of(GenerateConfig, "top_k"),
    seed: SeedOpt = default_of(GenerateConfig, "seed"),
    repetition_penalty: PenaltyOpt = default_of(GenerateConfig, "repetition_penalty"),
    config: ConfigOpt = None,
    engine: EngineOpt = None,
    ctx: CtxOpt = None,
    dtype: DtypeOpt = "float32",
    progress: ProgressOpt = True,
    threads: ThreadsOpt = None,
) -> None:
    """Chat on stdin: one message per line; an empty line, /exit or end of input quits, /reset forgets.

    Each turn re-prefills the whole conversation. In a terminal a failed turn (e.g. the conversation outgrew
    the context) is reported and the chat goes on; with piped input it ends the command with an error.
    """
    from leanml.llm.eval.chat import ChatSession
    from leanml.threads import torch_threads

    flags = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
             "seed": seed, "repetition_penalty": repetition_penalty}  # fmt: skip
    cfg = config_from(context, GenerateConfig, config, flags)
    llm = load_on_engine(model, engine, torch_dtype(dtype), progress, threads, ctx)
    session = ChatSession(llm.model, llm.tokenizer, cfg, system=system, template=template)
    console = make_console()
    interactive = sys.stdin.isatty()
    if interactive:
        console.print("[dim]one message per line; empty line, /exit or Ctrl-D quits; /reset forgets[/]")
    with torch_threads(threads):
        while True:
            if interactive:
                console.print("[bold]you>[/] ", end="")
            line = sys.stdin.readline()
            text = line.strip()
            if not line or text in ("", "/exit"):
                break
            if text == "/reset":
                session.reset()
                console.print("[dim]conversation cleared[/]")
                continue
            try:
                result = session.ask(text, on_token=_write)
            except LeanmlError as e:
                if not interactive:
                    raise
                console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
                continue
            typer.echo("")
            _report(result)


@app.command("bench")
def bench_cmd(
    model: Annotated[str, typer.Argument(help="a packed .lmq file from leanml llm quantize")],
    threads: Annotated[int, typer.Option("--threads", help="threads (C pool or torch)")] = 1,
    prompt_tokens: Annotated[int, typer.Option("--prompt-tokens", help="prompt length (random token ids)")] = 128,
    gen_tokens: Annotated[int, typer.Option("--gen-tokens", help="tokens decoded after the prompt")] = 128,
    repeats: Annotated[int, typer.Option("--repeats", help="timed repeats (after one warm-up)")] = 5,
    engine: Annotated[str, typer.Option("--engine", help="c or torch")] = "c",
    head: Annotated[str, typer.Option("--head", help="C engine head: int8, int4 or float32")] = "int8",
    as_json: JsonOpt = False,
) -> None:
    """Prefill and decode tokens/s (median, min-max over repeats), threads and model size."""
    from leanml.llm.eval.speed_bench import bench_speed

    r = bench_speed(model, engine, threads, prompt_tokens, gen_tokens, repeats, head)
    print(json.dumps(r.to_dict(), indent=2) if as_json else r.summary())
