"""Image-classification data: any source (Fashion-MNIST, image folders, .npz, tensors, torch Datasets) and batches.

``load_split``, ``CLASSES`` and ``data_root`` (Fashion-MNIST) load lazily (PEP 562), so importing
``leanml.data`` never loads :mod:`leanml.data.fashion_mnist`.

Example:
    >>> import torch
    >>> from leanml.data import from_tensors
    >>> from_tensors(torch.zeros(20, 1, 4, 4, dtype=torch.uint8), torch.arange(20) % 2).num_classes
    2
"""

from __future__ import annotations

import importlib
from typing import Any

from leanml.data.assemble import DataOptions
from leanml.data.imageset import ImageData, ImageSet, Normalization
from leanml.data.loader import batches, normalize
from leanml.data.sources import (
    DATA_SOURCES,
    data_argument,
    from_dataset,
    from_tensors,
    load_data,
    load_input_data,
    register_source,
)

_LAZY = {
    "CLASSES": "leanml.data.fashion_mnist",
    "data_root": "leanml.data.fashion_mnist",
    "load_split": "leanml.data.fashion_mnist",
}

__all__ = [
    "CLASSES",
    "DATA_SOURCES",
    "DataOptions",
    "ImageData",
    "ImageSet",
    "Normalization",
    "batches",
    "data_argument",
    "data_root",
    "from_dataset",
    "from_tensors",
    "load_data",
    "load_input_data",
    "load_split",
    "normalize",
    "register_source",
]


def __getattr__(name: str) -> Any:
    """Fashion-MNIST names, imported on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'leanml.data' has no attribute {name!r}")
