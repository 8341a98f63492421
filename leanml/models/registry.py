"""Model registry: a name, a config dataclass, a builder.

A model is fully described by its :class:`ModelSpec` (registry name + config
values + the structural transforms applied since, such as channel pruning),
which is what checkpoints store; rebuilding from the spec never runs code from
the checkpoint: transforms are replayed through a registry of known kinds.

Example:
    >>> from leanml.models import build_model
    >>> model = build_model("vgg")
    >>> spec = model_spec(model)
    >>> spec.name
    'vgg'
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from torch import nn

from leanml.config import Config
from leanml.errors import LeanmlError

C = TypeVar("C", bound=Config)
M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class ModelEntry(Generic[C]):
    """One registered architecture."""

    name: str
    config_cls: type[C]
    build: Callable[[C], nn.Module]
    summary: str


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a model: the registry name, its config, and the transforms replayed after building.

    Each transform is plain data ``{"kind": ..., **params}`` for a kind registered with
    :func:`register_transform` (e.g. ``channel_prune`` with the kept channel indices).
    """

    name: str
    config: dict[str, Any]
    transforms: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON sidecars."""
        out: dict[str, Any] = {"name": self.name, "config": self.config}
        if self.transforms:
            out["transforms"] = list(self.transforms)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; malformed data is a :class:`LeanmlError`."""
        if not isinstance(data, dict) or "name" not in data or not isinstance(data.get("config"), dict):
            raise LeanmlError(f"malformed model spec: {str(data)[:200]}", "re-create the checkpoint")
        transforms = data.get("transforms", [])
        if not isinstance(transforms, list) or not all(isinstance(t, dict) and "kind" in t for t in transforms):
            raise LeanmlError("malformed model spec: bad 'transforms' list", "re-create the checkpoint")
        return cls(str(data["name"]), dict(data["config"]), tuple(transforms))

    def with_transform(self, step: dict[str, Any]) -> ModelSpec:
        """This spec with one more transform appended."""
        return ModelSpec(self.name, self.config, (*self.transforms, step))


_REGISTRY: dict[str, ModelEntry[Any]] = {}
Transform = Callable[[nn.Module, dict[str, Any]], None]
_TRANSFORMS: dict[str, Transform] = {}

PROVIDERS: Final[tuple[str, ...]] = (
    "leanml.models.vgg",
    "leanml.models.resnet",
    "leanml.models.mobilenetv2",
    "leanml.nas.subnet",  # the nas_mbv2 model
    "leanml.prune.channel",  # the channel_prune transform
)
"""The built-in modules that register models and transforms: imported on every lookup (a no-op once imported), so
a checkpoint of any built-in kind loads in a process that never imported the package that made it."""


def import_providers() -> None:
    """Import every module of :data:`PROVIDERS` (each registers its models or transforms on import).

    Example:
        >>> import_providers()
        >>> "nas_mbv2" in available_models()
        True
    """
    for module in PROVIDERS:
        importlib.import_module(module)


def register_transform(kind: str) -> Callable[[Transform], Transform]:
    """Decorator registering ``apply_(model, step)``, which replays a structural transform in place.

    Example:
        >>> @register_transform("noop")  # doctest: +SKIP
        ... def noop(model: nn.Module, step: dict) -> None:
        ...     pass
    """

    def deco(fn: Transform) -> Transform:
        _TRANSFORMS[kind] = fn
        return fn

    return deco


def register_model(name: str, config_cls: type[C], summary: str) -> Callable[[Callable[[C], M]], Callable[[C], M]]:
    """Decorator registering ``build(config) -> nn.Module`` under ``name``.

    Example:
        >>> @dataclass
        ... class TinyConfig(Config):
        ...     width: int = 4
        >>> @register_model("tiny", TinyConfig, "a one-layer example")  # doctest: +SKIP
        ... def tiny(cfg: TinyConfig) -> nn.Module:
        ...     return nn.Linear(cfg.width, 2)
        >>> build_model("tiny", width=8)  # doctest: +SKIP
        Linear(in_features=8, out_features=2, bias=True)
    """

    def deco(build: Callable[[C], M]) -> Callable[[C], M]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, config_cls, build, summary)
        return build

    return deco


def available_models() -> dict[str, str]:
    """Registered model names with a one-line summary each."""
    import_providers()
    return {name: e.summary for name, e in sorted(_REGISTRY.items())}


def get_entry(name: str) -> ModelEntry[Any]:
    """The registry entry for ``name``; unknown names list the choices."""
    import_providers()
    if name not in _REGISTRY:
        raise LeanmlError(f"unknown model {name!r}", f"choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build registered model ``name``; keyword overrides set config fields.

    The returned module carries its spec (see :func:`model_spec`).

    Example:
        >>> build_model("resnet", num_classes=5).fc.out_features
        5
    """
    entry = get_entry(name)
    config = entry.config_cls.from_dict({**dataclasses.asdict(entry.config_cls()), **overrides})
    model = entry.build(config)
    model.leanml_spec = ModelSpec(name, config.to_dict())  # type: ignore[assignment]
    return model


def build_from_spec(spec: ModelSpec) -> nn.Module:
    """Rebuild a model from its spec (as stored in checkpoints), replaying its transforms.

    Example:
        >>> build_from_spec(model_spec(build_model("vgg"))).features[0].out_channels
        32
    """
    model = build_model(spec.name, **spec.config)  # imports the providers
    for step in spec.transforms:
        kind = step["kind"]
        if kind not in _TRANSFORMS:
            raise LeanmlError(f"unknown model transform {kind!r} in the spec", f"known: {', '.join(_TRANSFORMS)}")
        _TRANSFORMS[kind](model, step)
    model.leanml_spec = spec  # type: ignore[assignment]
    return model


def model_spec(model: nn.Module) -> ModelSpec:
    """The spec of a model built by :func:`build_model`; other models raise."""
    spec = getattr(model, "leanml_spec", None)
    if not isinstance(spec, ModelSpec):
        raise LeanmlError(
            f"{type(model).__name__} has no leanml model spec",
            "build it with leanml.models.build_model so it can be saved and rebuilt",
        )
    return spec
