"""The data a saved model eats, loaded from the artifact's ``input`` block (for the CLI verbs; algorithms take data).

A checkpoint (and the integer model quantized from it) stores an ``input``
block: ``{"shape": [C, H, W], "mean": [...], "std": [...], "dataset": spec,
"classes": [...], "split": {...}}``; a NAS subnet's block also has ``resize``
(its images are the dataset's resized to the searched resolution).
:func:`model_data` loads that dataset with the model's own normalization, at
the model's resolution (a subnet's splits are resized, bilinear with
antialiasing, as NAS resizes; rounded back to uint8, which NAS's float path
does not do), so every split is ready for evaluation, fine-tuning and
calibration; :func:`model_batch` turns a split into the model's float input.

Example:
    >>> block = {"shape": [1, 24, 24], "mean": [0.286], "std": [0.353], "dataset": "fashion-mnist",
    ...          "resize": {"from": [1, 28, 28], "mode": "bilinear"}}
    >>> model_resolution(block)
    24
    >>> data = model_data(block, None, limit=100)  # doctest: +SKIP
    >>> model_batch(data.test, block)[0].shape     # doctest: +SKIP
    torch.Size([100, 1, 24, 24])
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from leanml.data import ImageData, ImageSet, batches, load_input_data
from leanml.errors import LeanmlError


def dataset_of(block: dict[str, Any] | None) -> str | None:
    """The dataset spec the ``input`` block names, or None.

    Example:
        >>> dataset_of({"dataset": "npz:x.npz"}), dataset_of(None)
        ('npz:x.npz', None)
    """
    if block is None or not isinstance(block.get("dataset"), str) or not block["dataset"]:
        return None
    return str(block["dataset"])


def model_resolution(block: dict[str, Any] | None) -> int | None:
    """The side the model's images are resized to when the block says so (a NAS subnet), else None."""
    if block is None or "resize" not in block or "shape" not in block:
        return None
    return int(block["shape"][-1])


def model_data(block: dict[str, Any] | None, data: str | Path | None, limit: int | None = None) -> ImageData:
    """The data the ``input`` block names (see :func:`leanml.data.load_input_data`), at the model's resolution.

    ``data`` is the ``--data`` value (a spec replaces the block's dataset; a bare path is Fashion-MNIST's
    folder); ``limit`` keeps at most that many images per split. A NAS subnet's splits are resized to its
    searched resolution.
    """
    loaded = load_input_data(block, data, limit=limit)
    r = model_resolution(block)
    if r is not None and loaded.input_shape[-1] != r:
        from leanml.nas.data import resize_images

        loaded = replace(loaded, train=resize_images(loaded.train, r), val=resize_images(loaded.val, r),
                         test=resize_images(loaded.test, r))  # fmt: skip
    return loaded


def model_batch(data: ImageSet, block: dict[str, Any] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``data`` as the model's float input (N, C, H, W) (resized to a subnet's resolution) and labels (N,)."""
    x, y = next(batches(data, max(len(data), 1)))
    r = model_resolution(block)
    if r is not None and x.shape[-1] != r:
        from leanml.nas.data import resize_batch

        x = resize_batch(x, r)  # (N, C, r, r)
    return x, y


def check_shape(x: torch.Tensor, block: dict[str, Any] | None, what: str) -> None:
    """Raise when ``x`` (N, C, H, W) is not of the block's shape (the data does not fit the model)."""
    if block is not None and "shape" in block and list(x.shape[1:]) != list(block["shape"]):
        raise LeanmlError(f"{what} images are {list(x.shape[1:])}, the model takes {block['shape']}",
                          "pass --data pointing at the dataset the model was trained on")  # fmt: skip


def artifact_format(path: str | Path) -> str | None:
    """The ``format`` field of an artifact's sidecar (``"leanml.checkpoint"``, ``"leanml.integer-model"``, ...), or
    None when it cannot be read (the artifact's loader then reports the precise problem).

    Example:
        >>> artifact_format("/nonexistent/model") is None
        True
    """
    from leanml.artifact import artifact_paths, parse_json

    sidecar = artifact_paths(path)[1]
    try:  # parse_json bounds the nesting (a deep sidecar must not reach json.loads' recursion)
        meta = parse_json(sidecar.read_bytes(), sidecar, "")
    except (OSError, LeanmlError):
        return None
    found = meta.get("format") if isinstance(meta, dict) else None
    return found if isinstance(found, str) else None


def batch_accuracy(fn: object, images: torch.Tensor, labels: torch.Tensor, what: str = "", batch: int = 500) -> float:
    """Top-1 accuracy of ``fn`` (a model, or an integer model called on floats) on ``images`` (N, C, H, W) with
    ``labels`` (N,); with ``what``, progress per batch on stderr (the integer executor is slow).

    Example:
        >>> batch_accuracy(lambda x: x.flatten(1), torch.eye(2).view(2, 2, 1, 1), torch.tensor([0, 1]))
        1.0
    """
    from leanml.progress import track

    assert callable(fn)
    starts = range(0, len(labels), batch)
    with torch.no_grad():
        hits = sum(int((fn(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum())
                   for i in track(starts, len(starts), f"evaluating {what}", enabled=bool(what)))  # fmt: skip
    return hits / max(len(labels), 1)
