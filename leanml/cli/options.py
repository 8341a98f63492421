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
import os
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
ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="HTML report to write (a view: replaced if it exists)")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="replace existing outputs (--out) instead of refusing")]
EvalSubsetOpt = Annotated[
    int | None,
    typer.Option("--eval-subset", help="test images to evaluate on (a fixed, seeded sample; default: all)"),
]
TrainSubsetOpt = Annotated[
    int | None,
    typer.Option("--train-subset", help="train (fine-tune) on this many training images only (a fixed, seeded sample)"),
]
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


def parse_floats(text: str, what: str) -> list[float]:
    """Parse ``"0.5,0.9"`` into floats; a bad entry is a :class:`LeanmlError` naming it.

    Example:
        >>> parse_floats("0.5, 0.9", "--sparsities")
        [0.5, 0.9]
    """
    values = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            values.append(float(item))
        except ValueError:
            raise LeanmlError(f"bad {what} entry {item.strip()!r} in {text!r}",
                              "give numbers separated by commas, e.g. 0.5,0.7,0.9") from None  # fmt: skip
    if not values:
        raise LeanmlError(f"{what} is empty", "give numbers separated by commas, e.g. 0.5,0.7,0.9")
    return values


def check_range(value: int, lo: int, hi: int, flag: str) -> None:
    """Refuse ``value`` outside ``lo..hi`` (inclusive), saying which values are allowed.

    Example:
        >>> check_range(4, 2, 8, "--like")
    """
    if not lo <= value <= hi:
        raise LeanmlError(f"{flag} {value} is out of range", f"allowed: {lo}..{hi}")


def check_finetune(
    epochs: int, train_subset: int | None, flag: str = "--finetune-epochs", eval_subset: int | None = None
) -> None:
    """Refuse a bad fine-tuning schedule before any work: negative epochs (``flag``), a ``--train-subset`` or
    ``--eval-subset`` that is not a positive count.

    Example:
        >>> check_finetune(1, 2000, eval_subset=1000)
    """
    if epochs < 0:
        raise LeanmlError(f"{flag} must be >= 0, got {epochs}", "pass 0 (no fine-tuning) or more")
    for name, count in (("--train-subset", train_subset), ("--eval-subset", eval_subset)):
        if count is not None and count < 1:
            raise LeanmlError(f"{name} must be a positive count, got {count}", f"e.g. {name} 2000")


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(*paths: Path | str | None) -> None:
    """Refuse, before any work starts, output paths that cannot be written: a parent that is a file, a folder
    without write permission, a read-only file system. Missing parent folders are fine (outputs create them).

    Example:
        >>> import tempfile
        >>> check_writable(Path(tempfile.mkdtemp()) / "new" / "model", None)
    """
    import tempfile

    for raw in paths:
        if raw is None:
            continue
        path = Path(raw)
        target = path if path.is_dir() else path.parent
        folder = _nearest_existing(target)
        if not folder.is_dir():
            raise LeanmlError(f"cannot write {path}: {folder} is a file, not a folder", "choose another output path")
        try:
            fd, probe = tempfile.mkstemp(prefix=".leanml-probe-", dir=folder)
        except OSError as e:
            raise LeanmlError(f"cannot write {path}: {e.strerror} ({folder})", "choose a writable output path") from e
        os.close(fd)
        os.unlink(probe)


def existing_output(path: Path | str) -> Path | None:
    """``path`` or one of its artifact files (``PATH.safetensors``, ``PATH.json``) when it exists, else None.

    Example:
        >>> existing_output("/nonexistent/model") is None
        True
    """
    p = Path(path)
    for candidate in (p, p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")):
        if candidate.exists():
            return candidate
    return None


def check_outputs(*paths: Path | str | None, overwrite: bool) -> None:
    """Validate a command's outputs before it starts working: each must be writable (:func:`check_writable`) and,
    unless ``overwrite`` (``--overwrite``), must not exist yet (as a file, a folder, or an artifact's files).

    Example:
        >>> import tempfile
        >>> check_outputs(Path(tempfile.mkdtemp()) / "model", None, overwrite=False)
    """
    check_writable(*paths)
    if overwrite:
        return
    for raw in paths:
        found = existing_output(raw) if raw is not None else None
        if found is not None:
            raise LeanmlError(f"{found} already exists", "pass --overwrite to replace it, or choose another path")
