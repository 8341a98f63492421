"""One entry point for image-classification data: :func:`load_data` over a registry of sources.

A spec names a source and, after a colon, its argument: ``fashion-mnist``
(the default), ``imagefolder:DIR``, ``npz:FILE``. Python callers with data in
memory use :func:`from_tensors` or :func:`from_dataset`. Every path ends in the
same :class:`ImageData`: three splits, class names, and one normalization
computed on the train split.

Example:
    >>> images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    >>> data = from_tensors(images, torch.arange(40) % 4)
    >>> data.input_shape, data.num_classes, len(data.train) + len(data.val) + len(data.test)
    ((3, 8, 8), 4, 40)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leanml.data.assemble import DataOptions, assemble, resize_images, stratified_split, take, to_channels
from leanml.data.imageset import ImageData, Normalization
from leanml.errors import LeanmlError

Loader = Callable[[str, DataOptions], ImageData]
DEFAULT_SPEC = "fashion-mnist"


@dataclass(frozen=True)
class DataSource:
    """One registered source: ``load(argument, options)``, whether the spec needs an argument, a one-line summary."""

    name: str
    load: Loader
    needs_argument: bool
    summary: str


DATA_SOURCES: dict[str, DataSource] = {}
"""Source name (the spec before the colon) → :class:`DataSource`."""


def register_source(name: str, summary: str, needs_argument: bool = True) -> Callable[[Loader], Loader]:
    """Decorator adding ``load(argument, options) -> ImageData`` as source ``name``.

    Example:
        >>> @register_source("zeros", "all-zero images", needs_argument=False)  # doctest: +SKIP
        ... def zeros(arg: str, opts: DataOptions) -> ImageData: ...
    """

    def deco(fn: Loader) -> Loader:
        DATA_SOURCES[name] = DataSource(name, fn, needs_argument, summary)
        return fn

    return deco


def parse_spec(spec: str) -> tuple[DataSource, str]:
    """``"npz:data.npz"`` → (the npz source, ``"data.npz"``); unknown names list the choices.

    Example:
        >>> parse_spec("imagefolder:photos")[0].name, parse_spec("imagefolder:photos")[1]
        ('imagefolder', 'photos')
    """
    name, sep, arg = spec.partition(":")
    choices = ", ".join(f"{s.name}:ARG" if s.needs_argument else s.name for s in DATA_SOURCES.values())
    if name not in DATA_SOURCES:
        raise LeanmlError(f"unknown data source {name!r} in {spec!r}", f"choose one of: {choices}")
    source = DATA_SOURCES[name]
    if source.needs_argument and not arg:
        raise LeanmlError(f"data source {name} needs an argument: {name}:PATH", f"e.g. --data {name}:./my_data")
    if not source.needs_argument and sep:
        raise LeanmlError(f"data source {name} takes no argument, got {spec!r}", f"pass --data {name}")
    return source, arg


def data_argument(value: str | Path | None) -> tuple[str, str | None]:
    """A ``--data`` value → (spec, Fashion-MNIST root): a source spec is itself; a bare path is the
    Fashion-MNIST folder (as ``--data`` meant before specs), so ``--data /data/fmnist`` keeps working.

    Example:
        >>> data_argument("npz:x.npz"), data_argument("/data/fmnist"), data_argument(None)
        (('npz:x.npz', None), ('fashion-mnist', '/data/fmnist'), ('fashion-mnist', None))
    """
    if value is None:
        return DEFAULT_SPEC, None
    text = str(value)
    if text.partition(":")[0] in DATA_SOURCES:
        return text, None
    return DEFAULT_SPEC, text


def load_data(
    spec: str = DEFAULT_SPEC,
    resolution: int | None = None,
    grayscale: bool | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    root: str | Path | None = None,
    limit: int | None = None,
) -> ImageData:
    """Load the image-classification data that ``spec`` names, split and normalized.

    ``resolution`` resizes to N x N; ``grayscale`` forces 1 (True) or 3 (False)
    channels; ``seed``/``val_fraction``/``test_fraction`` define the stratified
    split of sources that are not pre-split; ``root`` is Fashion-MNIST's folder;
    ``limit`` keeps at most that many images per split (a seeded sample).

    Example:
        >>> data = load_data("imagefolder:photos", resolution=32)  # doctest: +SKIP
        >>> data.describe()["shape"]                              # doctest: +SKIP
        [3, 32, 32]
    """
    opts = DataOptions(
        resolution, grayscale, seed, val_fraction, test_fraction, None if root is None else str(root), limit
    )
    source, arg = parse_spec(spec)
    return source.load(arg, opts)


def load_input_data(
    block: dict[str, Any] | None,
    data: str | Path | None = None,
    resolution: int | None = None,
    limit: int | None = None,
) -> ImageData:
    """The data an artifact's ``input`` block names, shaped and normalized as the model was trained.

    ``data`` (a ``--data`` value) replaces the block's dataset; without either, Fashion-MNIST. The block's
    channel count, square resolution (unless it records a ``resize``) and split record are reproduced, and
    its mean/std replace the freshly computed normalization. ``resolution`` overrides the block's.

    Example:
        >>> load_input_data({"shape": [3, 32, 32], "dataset": "imagefolder:photos"}).input_shape  # doctest: +SKIP
        (3, 32, 32)
    """
    block = block or {}
    stored = block.get("dataset") if isinstance(block.get("dataset"), str) else None
    spec, root = data_argument(data) if data is not None else (stored or DEFAULT_SPEC, None)
    if spec.partition(":")[0] not in DATA_SOURCES:
        raise LeanmlError(f"the model's data {spec!r} was given in Python, not as a loadable spec",
                          "pass --data fashion-mnist | imagefolder:DIR | npz:FILE")  # fmt: skip
    kwargs: dict[str, Any] = {}
    split = block.get("split")
    if spec == stored and isinstance(split, dict):
        kwargs = {k: split[k] for k in ("seed", "val_fraction", "test_fraction") if k in split}
    shape = block.get("shape")
    if isinstance(shape, list) and len(shape) == 3 and "resize" not in block:
        kwargs["grayscale"] = shape[0] == 1
        if shape[1] == shape[2]:
            kwargs["resolution"] = int(shape[1])
    if resolution is not None:
        kwargs["resolution"] = resolution
    loaded = load_data(spec, root=root, limit=limit, **kwargs)
    if "mean" in block and "std" in block:
        norm = Normalization.from_dict({"mean": block["mean"], "std": block["std"]})
        if norm.fits(loaded.input_shape[0]):
            loaded = loaded.with_norm(norm)
    return loaded


@register_source("fashion-mnist", "Fashion-MNIST from IDX files (root / $LEANML_DATA / Debian's path)", False)
def _fashion_mnist(arg: str, opts: DataOptions) -> ImageData:
    from leanml.data.fashion_mnist import CLASSES, NORM, load_split

    parts = {s: load_split(s, opts.root, opts.limit) for s in ("train", "val", "test")}
    data = assemble({s: (p.images, p.labels) for s, p in parts.items()}, CLASSES, DEFAULT_SPEC, opts, norm=NORM)
    return ImageData(data.train, data.val, data.test, data.classes, data.norm, data.source, None)


@register_source("imagefolder", "one sub-folder of PNG/JPEG/BMP images per class (optionally train/ val/ test/)")
def _imagefolder(arg: str, opts: DataOptions) -> ImageData:
    from leanml.data.imagefolder import load_imagefolder

    return load_imagefolder(arg, opts)


@register_source("npz", "a NumPy .npz with images/labels (or x_train/y_train/x_test/y_test)")
def _npz(arg: str, opts: DataOptions) -> ImageData:
    from leanml.data.npz import load_npz

    return load_npz(arg, opts)


def _split_in_memory(
    images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str] | None, source: str, opts: DataOptions
) -> ImageData:
    if len(labels) == 0:
        raise LeanmlError(f"{source} holds no images", "pass at least a few images per class")
    names = tuple(classes) if classes is not None else tuple(str(k) for k in range(int(labels.max()) + 1))
    parts = stratified_split(labels, {"val": opts.val_fraction, "test": opts.test_fraction}, opts.seed)
    return assemble(
        {s: (images[take(i, opts.limit)], labels[take(i, opts.limit)]) for s, i in parts.items()}, names, source, opts
    )


def from_tensors(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    classes: Sequence[str] | None = None,
    resolution: int | None = None,
    grayscale: bool | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    limit: int | None = None,
    source: str = "tensors",
) -> ImageData:
    """:class:`ImageData` from images (N, C, H, W) (uint8, or float in [0, 1]) and integer labels (N,).

    Split seeded and stratified; ``classes`` defaults to "0", "1", ... up to the largest label.

    Example:
        >>> from_tensors(torch.rand(20, 1, 4, 4), [0, 1] * 10, classes=["no", "yes"]).classes
        ('no', 'yes')
    """
    labels_t = torch.as_tensor(labels)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise LeanmlError(
            f"{source} images have shape {tuple(images.shape)}, not (N, C, H, W) with C 1 or 3",
            "pass images channels-first, e.g. x.permute(0, 3, 1, 2) for (N, H, W, C)",
        )
    if images.dtype.is_floating_point:
        if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
            raise LeanmlError(
                f"{source} float images span {float(images.min()):.3g}..{float(images.max()):.3g}",
                "pass uint8 pixels or floats in [0, 1] (not normalized ones)",
            )
        images = (images * 255.0).round().to(torch.uint8)
    if images.dtype != torch.uint8:
        raise LeanmlError(f"{source} images are {images.dtype}", "pass uint8 pixels or floats in [0, 1]")
    if labels_t.ndim != 1 or len(labels_t) != images.shape[0] or labels_t.dtype.is_floating_point:
        raise LeanmlError(
            f"{source} needs {images.shape[0]} integer labels, got {labels_t.dtype} {tuple(labels_t.shape)}",
            "pass one int label per image",
        )
    opts = DataOptions(resolution, grayscale, seed, val_fraction, test_fraction, None, limit)
    return _split_in_memory(images, labels_t.long(), classes, source, opts)


def _item_image(item: Any, index: int, source: str) -> torch.Tensor:
    """One dataset item's image → uint8 (C, H, W)."""
    if isinstance(item, torch.Tensor):
        if item.ndim == 2:
            item = item.unsqueeze(0)
        if item.ndim != 3:
            raise LeanmlError(f"{source} item {index} is a tensor of shape {tuple(item.shape)}", "return (C, H, W)")
        if item.dtype.is_floating_point:
            return (item.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        return item.to(torch.uint8)
    if hasattr(item, "mode") and hasattr(item, "convert"):  # a PIL image
        img = item if item.mode in ("L", "RGB") else item.convert("L" if item.mode in ("1", "LA", "I", "F") else "RGB")
        arr = np.asarray(img, dtype=np.uint8)
        arr = arr[..., None] if arr.ndim == 2 else arr  # (H, W, C)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    raise LeanmlError(
        f"{source} item {index} holds a {type(item).__name__} image",
        "return (PIL image | CHW tensor in [0, 1] | uint8 CHW tensor, int label)",
    )


def from_dataset(
    ds: torch.utils.data.Dataset[Any],
    classes: Sequence[str] | None = None,
    resolution: int | None = None,
    grayscale: bool | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    limit: int | None = None,
    source: str = "dataset",
) -> ImageData:
    """:class:`ImageData` from a map-style torch Dataset of ``(image, int label)`` items, read once into memory.

    Images may be PIL images, float CHW tensors in [0, 1] or uint8 CHW tensors;
    ``classes`` defaults to ``ds.classes`` when the dataset has it.

    Example:
        >>> items = [(torch.rand(1, 6, 6), i % 2) for i in range(20)]
        >>> from_dataset(items, resolution=4).input_shape
        (1, 4, 4)
    """
    n = len(ds)  # type: ignore[arg-type]
    if n == 0:
        raise LeanmlError(f"{source} is empty", "pass a dataset with images of at least two classes")
    images, labels, first_size = [], [], None
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise LeanmlError(f"{source} item {i} is not an (image, label) pair", "return (image, int label)")
        img = _item_image(item[0], i, source)
        img = resize_images(img[None], resolution)[0]  # (C, H, W)
        if first_size is None:
            first_size = tuple(img.shape[1:])
        elif tuple(img.shape[1:]) != first_size:
            raise LeanmlError(
                f"{source} items 0 and {i} differ in size: {first_size} vs {tuple(img.shape[1:])}",
                "pass resolution=N to resize them all to N x N",
            )
        images.append(img)
        labels.append(int(item[1]))
    channels = {t.shape[0] for t in images}
    if len(channels) > 1:  # mixed grayscale and RGB: all RGB
        images = [to_channels(t[None], False)[0] for t in images]
    names = classes if classes is not None else getattr(ds, "classes", None)
    return from_tensors(
        torch.stack(images),
        torch.tensor(labels),
        names,
        None,
        grayscale,
        seed,
        val_fraction,
        test_fraction,
        limit,
        source,
    )
