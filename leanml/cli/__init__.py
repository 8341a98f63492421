"""The ``leanml`` command: one sub-command per workflow, each in its own module, user errors as one line.

The verbs are imported only when one is run (:data:`VERBS` holds each verb's module and one-line help), so
``leanml --help`` starts without torch.

Example:
    $ leanml train --model vgg --epochs 1 --out runs/vgg
    $ leanml profile runs/vgg
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Final

import typer
from typer._click import Command, Context, HelpFormatter
from typer.core import TyperCommand, TyperGroup

from leanml.errors import LeanmlError
from leanml.progress import make_console


@dataclass(frozen=True)
class Verb:
    """A ``leanml`` verb: the module whose ``app`` (a :class:`typer.Typer`) runs it, and its one-line help."""

    module: str
    help: str


VERBS: Final[dict[str, Verb]] = {
    "compress": Verb(
        "leanml.cli.compress",
        "Train or load → prune → fine-tune → quantize → deploy → verify → report, resumable, to the recipe's budget.",
    ),
    "models": Verb("leanml.cli.models", "List the reference models."),
    "train": Verb(
        "leanml.cli.train",
        "Train a model on image data (Fashion-MNIST by default); checkpoint every epoch (resumable).",
    ),
    "eval": Verb("leanml.cli.eval", "Accuracy of a checkpoint on a split of its own dataset (or of --data)."),
    "profile": Verb(
        "leanml.cli.profile",
        "Per-layer table and totals: params, MACs, size per bit width, peak activation memory, latency.",
    ),
    "prune": Verb(
        "leanml.cli.prune",
        "Prune a checkpoint: sensitivity scan, fine-grained magnitude pruning (+ N:M), channel pruning.",
    ),
    "quantize": Verb(
        "leanml.cli.quantize", "Quantize a checkpoint: linear int8 (PTQ/QAT → integer model) or k-means (+QAT)."
    ),
    "llm": Verb(
        "leanml.cli.llm",
        "LLMs (Llama family): RTN/AWQ quantization, perplexity, generation with a KV cache, chat, speed (C runtime).",
    ),
    "nas": Verb(
        "leanml.cli.nas", "Neural architecture search: supernet, accuracy predictor, constrained search, export."
    ),
    "deploy": Verb(
        "leanml.cli.deploy",
        "Generate C (static memory plan, in-place depthwise, fused requantization), compile, verify, report.",
    ),
}


def verb_command(name: str) -> Command:
    """The click command of verb ``name``, importing its module.

    Example:
        >>> verb_command("models").name
        'models'
    """
    app = importlib.import_module(VERBS[name].module).app
    command = typer.main.get_command(app)
    command.name = name
    return command


class LazyVerbs(TyperGroup):
    """The root group: a verb's module is imported when the verb runs; the help lists :data:`VERBS` without
    importing any of them."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        return verb_command(cmd_name) if cmd_name in VERBS else None

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        stubs = [TyperCommand(name, help=verb.help) for name, verb in VERBS.items()]
        listing = TyperGroup(name=self.name, commands=stubs, help=self.help, params=self.params,
                             rich_markup_mode=self.rich_markup_mode)  # fmt: skip
        listing.format_help(ctx, formatter)


app = typer.Typer(
    name="leanml",
    cls=LazyVerbs,
    help="Make neural networks lean and run them fast: profile, prune, quantize, search, deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root() -> None:
    """The root command: its verbs are :data:`VERBS`, resolved by :class:`LazyVerbs`."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app; a :class:`LeanmlError` prints one line and exits 2.

    Usage errors and ``--help`` are handled by the command parser (exit 2 and 0).

    Example:
        >>> main(["models"])  # doctest: +SKIP
    """
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="leanml", standalone_mode=True)
    except LeanmlError as e:
        make_console().print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
