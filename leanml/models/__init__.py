"""Reference models (any channels, resolution, classes and width), user factories, and a registry to build them."""

from leanml.models import mobilenetv2, resnet, vgg  # noqa: F401  (registers the models)
from leanml.models.registry import (
    ModelSpec,
    available_models,
    build_from_spec,
    build_model,
    input_shape_of,
    is_factory_ref,
    model_spec,
    register_model,
)

__all__ = [
    "ModelSpec",
    "available_models",
    "build_from_spec",
    "build_model",
    "input_shape_of",
    "is_factory_ref",
    "model_spec",
    "register_model",
]
