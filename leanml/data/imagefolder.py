"""``imagefolder:DIR``: one sub-folder of images per class (PNG, JPEG, BMP), read with Pillow.

``DIR/<class>/*.png`` is split seeded and stratified into train/val/test; when
DIR holds ``train/`` (and optionally ``val/``, ``test/``) folders of class
folders, those are the splits and a missing one is carved from ``train``.
All-grayscale data gives 1 channel, anything else 3 (``grayscale=True`` forces
1, ``False`` forces 3). Images are resized to ``resolution`` (bilinear); without
one they must all be the same size.

Example:
    >>> data = load_imagefolder("photos", DataOptions(resolution=32))   # doctest: +SKIP
    >>> data.input_shape, data.classes                                  # doctest: +SKIP
    ((3, 32, 32), ('cat', 'dog'))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from leanml.data.assemble import SPLITS, DataOptions, assemble, stratified_split, take
from leanml.data.imageset import ImageData
from leanml.errors import LeanmlError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F"})
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def class_files(folder: Path) -> dict[str, list[Path]]:
    """``{class name: sorted image files}`` for the class sub-folders of ``folder`` (hidden ones skipped).

    Example:
        >>> class_files(Path("photos/train"))  # doctest: +SKIP
        {'cat': [PosixPath('photos/train/cat/1.png'), ...], 'dog': [...]}
    """
    dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        loose = any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())
        raise LeanmlError(
            f"no class folders in {folder}" + (" (it holds images directly)" if loose else ""),
            "put each class's images in its own sub-folder: DIR/<class>/<image>.png",
        )
    out = {}
    for d in dirs:
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise LeanmlError(
                f"class folder {d} holds no images (.png, .jpg, .jpeg, .bmp)", "add images to it or remove the folder"
            )
        out[d.name] = files
    if len(out) < 2:
        raise LeanmlError(
            f"{folder} has one class only ({next(iter(out))})", "a classifier needs two or more class folders"
        )
    return out


def _flatten(files: dict[str, list[Path]], classes: tuple[str, ...], where: Path) -> tuple[list[Path], torch.Tensor]:
    unknown = sorted(set(files) - set(classes))
    if unknown:
        raise LeanmlError(
            f"{where} has class folder(s) {', '.join(unknown)} that train/ lacks",
            "give train/ a folder for every class",
        )
    paths = [p for name in classes for p in files.get(name, [])]
    labels = torch.tensor([k for k, name in enumerate(classes) for _ in files.get(name, [])], dtype=torch.long)
    return paths, labels


def _probe(paths: list[Path]) -> tuple[bool, dict[tuple[int, int], Path]]:
    """Whether every image is grayscale, and one file per distinct size; headers only."""
    gray, sizes = True, dict[tuple[int, int], Path]()
    for p in paths:
        try:
            with Image.open(p) as im:
                gray = gray and im.mode in GRAY_MODES
                sizes.setdefault(im.size, p)
        except _DECODE_ERRORS as e:
            raise LeanmlError(f"cannot read image {p}: {e}", "replace or delete the corrupt file") from e
    return gray, sizes


def read_images(paths: list[Path], channels: int, resolution: int | None) -> torch.Tensor:
    """Decode ``paths`` into uint8 (N, channels, H, W), resized to ``resolution`` x ``resolution`` (bilinear)."""
    mode = "L" if channels == 1 else "RGB"
    out: np.ndarray | None = None
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im.load()
                img = im.convert(mode)
            if resolution is not None and img.size != (resolution, resolution):
                img = img.resize((resolution, resolution), Image.Resampling.BILINEAR)
        except _DECODE_ERRORS as e:
            raise LeanmlError(f"cannot read image {p}: {e}", "replace or delete the corrupt file") from e
        arr = np.asarray(img, dtype=np.uint8).reshape(img.size[1], img.size[0], channels)  # (H, W, C)
        if out is None:
            out = np.empty((len(paths), channels, arr.shape[0], arr.shape[1]), dtype=np.uint8)
        out[i] = arr.transpose(2, 0, 1)
    assert out is not None
    return torch.from_numpy(out)


def _seeded(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def load_imagefolder(path: str, opts: DataOptions) -> ImageData:
    """Load ``imagefolder:DIR`` (see the module docstring); every bad input is a :class:`LeanmlError`."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise LeanmlError(f"image folder not found: {root}", "pass --data imagefolder:DIR with an existing folder")
    present = [s for s in SPLITS if (root / s).is_dir()]
    fractions = {"val": opts.val_fraction, "test": opts.test_fraction}
    if present:
        if "train" not in present:
            raise LeanmlError(
                f"{root} has {'/ and '.join(present)}/ but no train/ folder",
                "add DIR/train/<class>/ images, or put class folders directly in DIR",
            )
        train_files = class_files(root / "train")
        classes = tuple(train_files)
        lists = {
            s: _flatten(class_files(root / s) if s != "train" else train_files, classes, root / s) for s in present
        }
        train_paths, train_labels = lists["train"]
        carved = stratified_split(
            train_labels, {s: fractions[s] for s in ("val", "test") if s not in present}, opts.seed
        )
        chosen = {s: [train_paths[i] for i in take(idx, opts.limit).tolist()] for s, idx in carved.items()}
        labels = {s: train_labels[take(idx, opts.limit)] for s, idx in carved.items()}
        for s in present:
            if s != "train":
                paths, lab = lists[s]
                order = take(_seeded(len(paths), opts.seed), opts.limit)
                chosen[s], labels[s] = [paths[i] for i in order.tolist()], lab[order]
    else:
        files = class_files(root)
        classes = tuple(files)
        paths, all_labels = _flatten(files, classes, root)
        parts = stratified_split(all_labels, fractions, opts.seed)
        chosen = {s: [paths[i] for i in take(idx, opts.limit).tolist()] for s, idx in parts.items()}
        labels = {s: all_labels[take(idx, opts.limit)] for s, idx in parts.items()}
    every = [p for s in SPLITS for p in chosen[s]]
    if not every:
        raise LeanmlError(f"no images in {root}", "add .png/.jpg/.jpeg/.bmp files in class sub-folders")
    gray, sizes = _probe(every)
    if opts.resolution is None and len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise LeanmlError(
            f"images in {root} differ in size: {f1} is {s1[0]}x{s1[1]}, {f2} is {s2[0]}x{s2[1]}",
            "pass --resolution N (resolution=N) to resize them all to N x N",
        )
    channels = 1 if opts.grayscale or (opts.grayscale is None and gray) else 3
    parts_read = {
        s: (read_images(chosen[s], channels, opts.resolution), labels[s])
        if chosen[s]
        else (torch.zeros(0, channels, 1, 1, dtype=torch.uint8), labels[s])
        for s in SPLITS
    }
    return assemble(parts_read, classes, f"imagefolder:{path}", opts)
