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
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer._click.core import ParameterSource

from leanml.config import Config
from leanml.errors import LeanmlError

C = TypeVar("C", bound=Config)

DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="the images: fashion-mnist | imagefolder:DIR | npz:FILE, or a Fashion-MNIST IDX folder "
        "(default: fashion-mnist from $LEANML_DATA or Debian's path)",
    ),
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


def default_of(config: type[Any], name: str) -> Any:
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


def given(ctx: typer.Context, param: str) -> bool:
    """Whether the user gave parameter ``param`` (on the command line, or by environment or prompt), rather than
    leaving it at its default.

    Example:
        >>> given(ctx, "epochs")  # doctest: +SKIP
        True
    """
    return ctx.get_parameter_source(param) in EXPLICIT_SOURCES


def config_from(
    ctx: typer.Context,
    config: type[C],
    path: Path | None,
    flags: dict[str, Any],
    params: Mapping[str, str | Sequence[str]] | None = None,
    base: C | None = None,
) -> C:
    """The command's config: the file at ``path`` (``--config``) with the flags given explicitly on the command line
    over it; without a file, ``base`` (default: the config's defaults) with every flag over it.

    ``flags`` maps config field names to flag values, a dotted name for a field of a nested config
    (``"executor.backend"``); ``params`` names the command parameter(s) behind a field where the names differ
    (``{"learn_scale": "lsq"}``; a field built from several flags is explicit when any of them is). A flag left at
    its default never overrides the file. Unknown fields in the file are an error that lists the valid ones.

    Example:
        >>> cfg = config_from(ctx, TrainConfig, config, {"epochs": epochs, "seed": seed})  # doctest: +SKIP
    """
    names = params or {}

    def explicit(field: str) -> bool:
        param = names.get(field, field.rsplit(".", 1)[-1])
        return any(given(ctx, name) for name in ((param,) if isinstance(param, str) else param))

    data = config.read(path) if path is not None else (base.to_dict() if base is not None else {})
    for field, value in flags.items():
        if path is None or explicit(field):
            *outer, last = field.split(".")
            target = data
            for part in outer:
                target = target.setdefault(part, {})
            target[last] = value
    return build_config(config, data)


def build_config(config: type[C], data: dict[str, Any]) -> C:
    """``config`` from plain data, nested configs (fields typed as a :class:`Config`) built from their dicts.

    Example:
        >>> from leanml.prune.sensitivity import SensitivityConfig
        >>> build_config(SensitivityConfig, {"executor": {"backend": "serial"}}).executor.backend
        'serial'
    """
    hints = typing.get_type_hints(config)
    nested = {}
    for field in dataclasses.fields(config):
        kind = hints[field.name]
        if isinstance(kind, type) and issubclass(kind, Config) and isinstance(data.get(field.name), dict):
            nested[field.name] = build_config(kind, data[field.name])
    return config.from_dict({**data, **nested})


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
