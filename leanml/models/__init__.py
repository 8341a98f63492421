"""Reference models for 1x28x28 inputs and a registry to build them by name."""

from leanml.models import mobilenetv2, resnet, vgg  # noqa: F401  (registers the models)
from leanml.models.registry import (
    ModelSpec,
    available_models,
    build_from_spec,
    build_model,
    model_spec,
    register_model,
)

__all__ = ["ModelSpec", "available_models", "build_from_spec", "build_model", "model_spec", "register_model"]
