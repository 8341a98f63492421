"""Options and helpers shared by several ``leanml`` commands, defined once.

Flag defaults are read from the config dataclasses (:func:`default_of`), never restated; ``--config FILE``
gives a command's config and the flags given on the command line override it (:func:`config_from`).

Example:
    >>> from leanml.cli.options import DataOpt, ThreadsOpt  # use as ``data: DataOpt = None`` in a command
    >>> parse_ints("1,28,28", "input shape")
    (1, 28, 28)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer._click.core import ParameterSource

from leanml.config import Config
from leanml.errors import LeanmlError

C = TypeVar("C", bound=Config)

DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Fashion-MNIST folder (default: $LEANML_DATA or Debian's path)")
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="torch threads (default: all)")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="show progress bars")]
ReportOpt = Annotated[Path | None, typer.Option("--report", help="HTML report to write")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="JSON/YAML file with the command's config; flags given explicitly override it"),
]

EXPLICIT_SOURCES = frozenset({ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT})


def default_of(config: type[Config], name: str) -> Any:
    """The default value of field ``name`` of the config dataclass ``config`` (what a flag's default is).

    Example:
        >>> from leanml.executor import ExecutorConfig
        >>> default_of(ExecutorConfig, "backend")
        'local'
    """
    for field in dataclasses.fields(config):
        if field.name == name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
            raise TypeError(f"{config.__name__}.{name} has no default")
    raise TypeError(f"{config.__name__} has no field {name!r}")


def config_from(
    ctx: typer.Context, config: type[C], path: Path | None, flags: dict[str, Any], params: dict[str, str] | None = None
) -> C:
    """The command's config: the file at ``path`` (``--config``) when given, with the flags the user gave
    explicitly on the command line over it; without a file, the flags alone.

    ``flags`` maps config field names to flag values; ``params`` names the command parameter of a field where the
    two names differ (e.g. ``{"learn_scale": "lsq"}``). A flag left at its default never overrides the file.

    Example:
        >>> cfg = config_from(ctx, TrainConfig, args.config, {"epochs": epochs, "seed": seed})  # doctest: +SKIP
    """
    if path is None:
        return config(**flags)
    names = params or {}
    base = config.load(path).to_dict()
    given = {k: v for k, v in flags.items() if ctx.get_parameter_source(names.get(k, k)) in EXPLICIT_SOURCES}
    return config.from_dict({**base, **given})


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """Parse ``"1,28,28"`` (or ``1x28x28``) into a tuple of positive ints.

    Example:
        >>> parse_ints("1x28x28", "input shape")
        (1, 28, 28)
    """
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise LeanmlError(f"bad {what} {text!r}", "give positive integers separated by commas, e.g. 1,28,28")
    return values
