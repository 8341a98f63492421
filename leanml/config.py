"""Validated dataclass configs that round-trip through JSON and YAML.

Every workflow in leanml is one verb driven by one config dataclass. Configs
subclass :class:`Config`, declare typed fields, and check them in
``validate()``; construction validates, and so does loading.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo(Config):
    ...     epochs: int = 1
    ...     def validate(self) -> None:
    ...         require(self.epochs >= 1, "epochs must be >= 1", "pass --epochs 1 or more")
    >>> Demo.from_dict(Demo(epochs=3).to_dict()).epochs
    3
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml

from leanml.errors import LeanmlError

C = TypeVar("C", bound="Config")


def require(condition: bool, message: str, hint: str | None = None) -> None:
    """Raise :class:`LeanmlError` with ``message`` unless ``condition`` holds.

    Example:
        >>> require(1 < 2, "never raised")
    """
    if not condition:
        raise LeanmlError(message, hint)


@dataclasses.dataclass
class Config:
    """Base class: validation on construction, dict/JSON/YAML round-trip."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check field values; subclasses raise :class:`LeanmlError` on bad ones."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view of the config (JSON- and YAML-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build and validate a config from plain data; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        require(
            not unknown,
            f"unknown {cls.__name__} field(s): {', '.join(unknown)}",
            f"valid fields: {', '.join(sorted(names))}",
        )
        return cls(**data)

    def to_json(self) -> str:
        """Serialize to a JSON string."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Load from a ``.json`` or ``.yaml``/``.yml`` file."""
        return cls.from_dict(cls.read(path))

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """The mapping in a ``.json`` or ``.yaml``/``.yml`` config file, not yet checked against any config (the CLI
        puts explicit flags over it before it validates).

        Example:
            >>> Config.read("train.yaml")  # doctest: +SKIP
            {'model': 'vgg', 'epochs': 2}
        """
        p = Path(path)
        if not p.is_file():
            raise LeanmlError(f"config file not found: {p}", "check the path")
        text = p.read_text()
        try:
            data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise LeanmlError(f"cannot parse config {p}: {e}", "fix the file's syntax") from e
        require(isinstance(data, dict), f"config {p} must hold a mapping of field names to values")
        return dict(data)
