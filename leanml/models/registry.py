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
import inspect
import json
import math
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import torch
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
    def from_dict(cls, data: Any, where: str = "the model spec") -> ModelSpec:
        """Inverse of :meth:`to_dict`; malformed data is a :class:`LeanmlError` naming ``where`` and the field.

        Example:
            >>> ModelSpec.from_dict({"name": "vgg", "config": {"width": 0.5}}).config
            {'width': 0.5}
        """
        hint = "re-create the checkpoint"
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise LeanmlError(f"malformed model spec in {where}: {str(data)[:200]}", hint)
        name = data.get("name")
        if not isinstance(name, str) or not name or len(name) > 300:
            raise LeanmlError(f"malformed model spec in {where}: field model.name must be a model name, "
                              f"got {str(name)[:80]!r}", hint)  # fmt: skip
        check_json_safe(data["config"], f"field model.config of {where}")
        transforms = data.get("transforms", [])
        if not isinstance(transforms, list) or len(transforms) > MAX_TRANSFORMS:
            raise LeanmlError(f"malformed model spec in {where}: field model.transforms must be a list", hint)
        for i, t in enumerate(transforms):
            if not isinstance(t, dict) or not isinstance(t.get("kind"), str):
                raise LeanmlError(f"malformed model spec in {where}: field model.transforms[{i}] must be a mapping "
                                  "with a 'kind'", hint)  # fmt: skip
            check_json_safe(t, f"field model.transforms[{i}] of {where}")
        return cls(name, dict(data["config"]), tuple(transforms))

    def with_transform(self, step: dict[str, Any]) -> ModelSpec:
        """This spec with one more transform appended."""
        return ModelSpec(self.name, self.config, (*self.transforms, step))


MAX_TRANSFORMS = 1024  # recorded transforms a spec may hold
MAX_CONFIG_ITEMS = 4096  # items in any one list or mapping of a stored model config
MAX_PARAMS = 1 << 30  # parameters (and buffers) a spec may build, checked on the meta device first
MAX_TRACE_NUMEL = 1 << 24  # C * H * W of a transform's recorded input shape (it is traced with a real input)

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
        >>> load_factory("torch.nn:Linear").__name__
        'Linear'
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
    if not is_model_factory(obj):
        raise LeanmlError(
            f"{ref} is not a model factory: only an nn.Module subclass or a function annotated to return one is "
            "called (a checkpoint names its factory, and a file must not choose what code runs)",
            "annotate the factory, e.g. def small_cnn(width: int = 8) -> nn.Module",
        )
    return obj


def is_model_factory(obj: Any) -> bool:
    """Whether ``obj`` may be called to build a model: an ``nn.Module`` subclass, or a function whose return
    annotation is ``nn.Module`` or a subclass. A checkpoint names its factory; this rule keeps a damaged or
    hostile file from calling an arbitrary function (``subprocess:run``) with arguments it chose.

    Example:
        >>> def net() -> nn.Module: return nn.Linear(1, 1)
        >>> is_model_factory(net), is_model_factory(nn.Linear), is_model_factory(print)
        (True, True, False)
    """
    if isinstance(obj, type):
        return issubclass(obj, nn.Module)
    if not inspect.isfunction(obj) and not inspect.ismethod(obj):
        return False
    try:
        returns = typing.get_type_hints(obj).get("return")
    except (NameError, TypeError, AttributeError):  # an annotation that does not resolve is not a model one
        return False
    return isinstance(returns, type) and issubclass(returns, nn.Module)


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


def _matches(value: Any, tp: Any) -> bool:
    """Whether JSON ``value`` fits annotation ``tp`` (int, float, bool, str, None, lists, str-keyed dicts, unions);
    annotations it does not know accept anything."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is type(None) or tp is None:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is list:
        ok = isinstance(value, list) and len(value) <= MAX_CONFIG_ITEMS
        return ok and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict:
        ok = isinstance(value, dict) and len(value) <= MAX_CONFIG_ITEMS
        return ok and (len(args) < 2 or all(_matches(v, args[1]) for v in value.values()))
    return True


def check_config_types(config_cls: type[Config], config: dict[str, Any], where: str) -> None:
    """LeanmlError unless every value of a stored ``config`` has its field's type (before anything is built).

    Example:
        >>> check_config_types(get_entry("vgg").config_cls, {"width": 0.5, "layers": [8, "M"]}, "spec")
    """
    hints = typing.get_type_hints(config_cls)
    for key, value in config.items():
        if key in hints and not _matches(value, hints[key]):
            raise LeanmlError(f"field model.config.{key} of {where} must be {hints[key]}, got {str(value)[:60]!r}",
                              "re-create the checkpoint")  # fmt: skip


def spec_param_count(spec: ModelSpec) -> int:
    """Parameters and buffers of the spec's model before its transforms, counted on the meta device (nothing is
    allocated); a config that cannot build is a :class:`LeanmlError`.

    Example:
        >>> spec_param_count(ModelSpec("vgg", {"layers": [4]}))
        103
    """
    try:
        with torch.device("meta"):
            model = build_model(spec.name, **spec.config)
    except (RuntimeError, ValueError, TypeError, OverflowError, ZeroDivisionError, IndexError) as e:
        raise LeanmlError(f"the config of model {spec.name!r} cannot build: {str(e)[:200]}",
                          "re-create the checkpoint") from e  # fmt: skip
    return sum(t.numel() for t in model.state_dict().values())


def build_from_spec(spec: ModelSpec, max_params: int = MAX_PARAMS) -> nn.Module:
    """Rebuild a model from its spec (as stored in checkpoints), replaying its transforms.

    A registered model's config is type-checked and the model is first built on the meta device, so a spec of more
    than ``max_params`` values is refused before anything is allocated.

    Example:
        >>> build_from_spec(model_spec(build_model("vgg"))).features[0].out_channels
        32
    """
    if not is_factory_ref(spec.name):
        check_config_types(get_entry(spec.name).config_cls, spec.config, "the model spec")
        count = spec_param_count(spec)
        if count > max_params:
            raise LeanmlError(f"the model spec describes {count} parameters, more than the {max_params} allowed",
                              "re-create the checkpoint")  # fmt: skip
    model = build_model(spec.name, **spec.config)
    replay_transforms(model, spec.transforms)
    model.leanml_spec = spec  # type: ignore[assignment]
    return model


def _check_step(step: dict[str, Any], i: int) -> None:
    shape = step.get("input_shape")
    if shape is None:
        return
    ok = isinstance(shape, list) and 1 <= len(shape) <= 4
    ok = ok and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
    if not ok or math.prod(shape) > MAX_TRACE_NUMEL:
        raise LeanmlError(f"field model.transforms[{i}].input_shape must be 1 to 4 positive integers of at most "
                          f"{MAX_TRACE_NUMEL} values, got {str(shape)[:60]}", "re-create the checkpoint")  # fmt: skip


def replay_transforms(model: nn.Module, transforms: Sequence[dict[str, Any]]) -> None:
    """Replay recorded structural transforms (e.g. ``channel_prune``) on ``model`` in place, through the registry.

    A step whose fields do not fit its kind is a :class:`LeanmlError` naming the step.

    Example:
        >>> replay_transforms(build_model("vgg"), [])
    """
    import_providers()  # the transforms' kinds
    for i, step in enumerate(transforms):
        kind = step.get("kind") if isinstance(step, dict) else None
        if not isinstance(kind, str) or kind not in _TRANSFORMS:
            raise LeanmlError(
                f"unknown model transform {str(kind)[:60]!r} in the spec", f"known: {', '.join(_TRANSFORMS)}"
            )
        _check_step(step, i)
        try:
            _TRANSFORMS[kind](model, step)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
            raise LeanmlError(f"model transform {kind!r} (model.transforms[{i}]) in the spec is malformed: {e!r:.200}",
                              "re-create the checkpoint") from e  # fmt: skip


def model_spec(model: nn.Module) -> ModelSpec:
    """The spec of a model built by :func:`build_model`; other models raise."""
    spec = getattr(model, "leanml_spec", None)
    if not isinstance(spec, ModelSpec):
        raise LeanmlError(
            f"{type(model).__name__} has no leanml model spec",
            "build it with leanml.models.build_model so it can be saved and rebuilt",
        )
    return spec
