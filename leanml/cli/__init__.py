"""The ``leanml`` command: one sub-command per workflow, each in its own module, user errors as one line.

The verbs are imported only when one is run (:data:`VERBS` holds each verb's module and one-line help), so
``leanml --help`` starts without torch.

Ctrl-C prints ``interrupted`` and, for a verb that can pick up where it stopped, the command that resumes it
(:func:`resume_command`), and exits 130.

Example:
    $ leanml train --model vgg --epochs 1 --out runs/vgg
    $ leanml profile runs/vgg
    $ leanml --version
"""

from __future__ import annotations

import importlib
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

import typer
from rich.markup import escape
from typer._click import Command, Context, HelpFormatter
from typer.core import TyperCommand, TyperGroup, TyperOption

from leanml import __version__
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
    "eval": Verb(
        "leanml.cli.eval",
        "Accuracy of a checkpoint, integer model or k-means model on a split of its own dataset (or of --data).",
    ),
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
        "LLMs (Llama family): RTN/AWQ quantization, perplexity, generation with a KV cache, chat, bench (C runtime "
        "speed).",
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


RESUMED_BY_RERUNNING: Final = frozenset({"compress"})
"""Verbs without ``--resume`` that continue an interrupted run when run again with the same arguments."""

RESTART_FLAGS: Final = frozenset({"--no-resume", "--overwrite"})
"""Flags left out of a resume command: they would start the run over."""


class Interrupted(Exception):
    """Ctrl-C while a verb ran, carried past the command parser (which would turn it into a bare exit 130)."""


def resume_command(argv: Sequence[str], root: Command) -> str | None:
    """The shell command that resumes the interrupted ``leanml`` run ``argv``, or None if the verb cannot resume.

    A verb with a ``--resume`` option resumes with ``--resume`` added; a verb in :data:`RESUMED_BY_RERUNNING`
    by running the same command again.

    Example:
        >>> root = typer.main.get_command(app)
        >>> resume_command(["train", "--out", "runs/my vgg"], root)
        "leanml train --out 'runs/my vgg' --resume"
        >>> resume_command(["compress", "mcu"], root)
        'leanml compress mcu'
        >>> resume_command(["profile", "runs/vgg"], root) is None
        True
    """
    command: Command = root
    path: list[str] = []
    for arg in argv:
        if not isinstance(command, TyperGroup):
            break
        if arg.startswith("-"):
            continue
        sub = command.get_command(Context(command), arg)
        if sub is None:
            return None
        command, path = sub, [*path, arg]
    if not path or isinstance(command, TyperGroup):
        return None
    if path[0] in RESUMED_BY_RERUNNING:
        return shlex.join(["leanml", *argv])
    if not any(isinstance(p, TyperOption) and "--resume" in p.opts for p in command.params):
        return None
    args = [a for a in argv if a not in RESTART_FLAGS]
    return shlex.join(["leanml", *args, *([] if "--resume" in args else ["--resume"])])


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

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise Interrupted() from e


app = typer.Typer(
    name="leanml",
    cls=LazyVerbs,
    help="Make neural networks lean and run them fast: profile, prune, quantize, search, deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def print_version(value: bool) -> None:
    """``--version``: print ``leanml X.Y.Z`` and exit 0."""
    if value:
        print(f"leanml {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=print_version, is_eager=True)
    ] = False,
) -> None:
    """The root command: its verbs are :data:`VERBS`, resolved by :class:`LazyVerbs`."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app; a :class:`LeanmlError` prints one line and exits 2; Ctrl-C prints
    ``interrupted`` and the command that resumes the run (:func:`resume_command`) and exits 130.

    Usage errors and ``--help`` are handled by the command parser (exit 2 and 0). Error text is printed
    as is (``pip install 'leanml[llm]'`` keeps its ``[llm]``).

    Example:
        >>> main(["models"])  # doctest: +SKIP
    """
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="leanml", standalone_mode=True)
    except LeanmlError as e:
        make_console().print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Interrupted:
        resume = resume_command(args, command)
        line = f"interrupted; resume with: {resume}" if resume else "interrupted"
        make_console().print(escape(line), highlight=False, soft_wrap=True)
        sys.exit(130)
