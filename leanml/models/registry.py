"""Model registry: a name, a config dataclass, a builder; and user factories named ``"pkg.module:factory"``.

A model is fully described by its :class:`ModelSpec` (registry name + config
values + the structural transforms applied since, such as channel pruning),
which is what checkpoints store; rebuilding from the spec never runs code from
the checkpoint: transforms are replayed through a registry of known kinds.

A user model is built by importing the user's module and calling
``factory(**kwargs)`` (JSON-safe keyword arguments); its spec is the reference
and the arguments, so its checkpoints load (and replay transforms) like a zoo
model's, by running the user's own code again, never code from the file.

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
import json
import math
import re
from collections.abc import Callable, Sequence
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


def scale_channels(channels: int, width: float) -> int:
    """A channel count times a width multiplier, rounded, at least 1 (width 1.0 leaves it as is).

    Example:
        >>> scale_channels(32, 0.5), scale_channels(3, 0.1), scale_channels(24, 1.0)
        (16, 1, 24)
    """
    return channels if width == 1.0 else max(1, round(channels * width))


def check_size(resolution: int, width: float, model: str) -> None:
    """Validate the ``resolution`` and ``width`` fields every zoo config has."""
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise LeanmlError(f"{model} resolution must be a positive int, got {resolution!r}", "pass --resolution N")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise LeanmlError(f"{model} width must be a positive number, got {width!r}", "e.g. width=0.5 or width=2")


FACTORY_REF = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
"""``pkg.module:factory`` (the factory may be a dotted attribute path, e.g. ``models:Net.build``)."""


def is_factory_ref(name: str) -> bool:
    """Whether ``name`` names a user factory (``module:attr``) rather than a registered model.

    Example:
        >>> is_factory_ref("mypkg.nets:small_cnn"), is_factory_ref("vgg")
        (True, False)
    """
    return ":" in name


def load_factory(ref: str) -> Callable[..., Any]:
    """Import ``module`` and return ``attr`` for a reference ``"module:attr"``; failures name the fix.

    Example:
        >>> load_factory("collections:OrderedDict").__name__
        'OrderedDict'
    """
    if not FACTORY_REF.match(ref):
        raise LeanmlError(f"malformed model factory reference {ref!r}", "write it as package.module:function")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise LeanmlError(
            f"cannot import module {module_name!r} for model {ref!r}: {e}",
            f"put the folder holding {module_name.split('.')[0]} on PYTHONPATH, or pip install it",
        ) from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LeanmlError(
                f"module {module_name!r} has no {attr!r} (model {ref!r})", "check the name after the colon"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise LeanmlError(
            f"{ref} is a {type(obj).__name__}, not a callable model factory",
            "point at a function (or class) that returns an nn.Module",
        )
    return obj


def check_json_safe(value: Any, where: str) -> None:
    """LeanmlError unless ``value`` is plain JSON data (None, bool, int, finite float, str, lists, str-keyed dicts).

    Example:
        >>> check_json_safe({"width": 8, "layers": [1, 2]}, "kwargs")
    """
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LeanmlError(f"{where} is {value}, which JSON cannot store", "pass a finite number")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_json_safe(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise LeanmlError(f"{where} has the non-string key {k!r}", "use string keys")
            check_json_safe(v, f"{where}[{k!r}]")
        return
    raise LeanmlError(
        f"{where} is a {type(value).__name__}, not JSON data",
        "pass numbers, strings, lists and dicts only: checkpoints store the arguments as JSON",
    )


def check_model_name(name: str) -> None:
    """Raise unless ``name`` is a registered model or an importable factory reference."""
    if is_factory_ref(name):
        load_factory(name)
    else:
        get_entry(name)


def _build_user_model(ref: str, kwargs: dict[str, Any]) -> nn.Module:
    for key, value in kwargs.items():
        check_json_safe(value, f"argument {key!r} of {ref}")
    model = load_factory(ref)(**kwargs)
    if not isinstance(model, nn.Module):
        raise LeanmlError(
            f"{ref}(...) returned a {type(model).__name__}, not a torch nn.Module", "make the factory return the model"
        )
    plain = json.loads(json.dumps(kwargs))  # tuples → lists, as the checkpoint will hold them
    model.leanml_spec = ModelSpec(ref, plain)  # type: ignore[assignment]
    return model


def input_shape_of(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the model was built for, from its spec's ``in_channels`` and ``resolution`` (H = W).

    Example:
        >>> input_shape_of(build_model("resnet", in_channels=3, resolution=32))
        (3, 32, 32)
    """
    config = model_spec(model).config
    if "in_channels" not in config or "resolution" not in config:
        raise LeanmlError(
            f"the spec of model {model_spec(model).name!r} does not state its input shape",
            "give it in_channels and resolution arguments, or pass the input shape explicitly",
        )
    return int(config["in_channels"]), int(config["resolution"]), int(config["resolution"])


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
    """Build registered model ``name`` (keyword overrides set config fields), or call the user factory
    ``"pkg.module:factory"`` with the (JSON-safe) keyword arguments.

    The returned module carries its spec (see :func:`model_spec`).

    Example:
        >>> build_model("resnet", num_classes=5).fc.out_features
        5
    """
    if is_factory_ref(name):
        return _build_user_model(name, overrides)
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
    model = build_model(spec.name, **spec.config)
    replay_transforms(model, spec.transforms)
    model.leanml_spec = spec  # type: ignore[assignment]
    return model


def replay_transforms(model: nn.Module, transforms: Sequence[dict[str, Any]]) -> None:
    """Replay recorded structural transforms (e.g. ``channel_prune``) on ``model`` in place, through the registry.

    Example:
        >>> replay_transforms(build_model("vgg"), [])
    """
    import_providers()  # the transforms' kinds
    for step in transforms:
        kind = step["kind"]
        if kind not in _TRANSFORMS:
            raise LeanmlError(f"unknown model transform {kind!r} in the spec", f"known: {', '.join(_TRANSFORMS)}")
        _TRANSFORMS[kind](model, step)


def model_spec(model: nn.Module) -> ModelSpec:
    """The spec of a model built by :func:`build_model`; other models raise."""
    spec = getattr(model, "leanml_spec", None)
    if not isinstance(spec, ModelSpec):
        raise LeanmlError(
            f"{type(model).__name__} has no leanml model spec",
            "build it with leanml.models.build_model so it can be saved and rebuilt",
        )
    return spec
