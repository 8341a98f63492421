"""``leanml eval CHECKPOINT``: accuracy of a checkpoint on a split of the data it was trained on.

The checkpoint's ``input`` block names its dataset, shape, split and normalization; ``--data`` picks other data.

Example:
    $ leanml eval runs/vgg --split test
    $ leanml eval runs/vgg-km4   # a k-means model (`leanml quantize kmeans` output)
    $ leanml eval runs/photos --data imagefolder:more_photos --split test
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leanml.cli.options import ThreadsOpt
from leanml.cli.train import DataSpecOpt

app = typer.Typer(add_completion=False)


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[
        Path, typer.Argument(help="checkpoint, or integer or k-means model (`leanml quantize` output)")
    ],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    subset: Annotated[int | None, typer.Option(help="evaluate this many images only")] = None,
    data: DataSpecOpt = None,
    resolution: Annotated[int | None, typer.Option(help="resize images to N x N (default: the model's)")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Accuracy of a checkpoint, integer model or k-means model on a split of its own dataset (or of --data)."""
    from leanml.cli.model_data import artifact_format
    from leanml.data import load_input_data
    from leanml.errors import LeanmlError
    from leanml.threads import torch_threads
    from leanml.train import evaluate, load_checkpoint
    from leanml.train.loop import subset_of

    if split not in ("train", "val", "test"):
        raise LeanmlError(f"unknown split {split!r}", "choose one of: train, val, test")
    if subset is not None and subset < 1:
        raise LeanmlError(f"--subset must be a positive count, got {subset}", "e.g. --subset 1000")
    found = artifact_format(checkpoint)
    if found == "leanml.integer-model":
        eval_integer(checkpoint, split, subset, data, resolution, threads)
        return
    if found == "leanml.kmeans-model":  # the float model with its weights rebuilt from codes + codebooks
        from leanml.quant.kmeans import load_kmeans_model

        model, _, meta = load_kmeans_model(checkpoint)
        what = "; k-means model, weights rebuilt from its codebooks"
    else:
        ckpt = load_checkpoint(checkpoint)
        model, meta, what = ckpt.model, ckpt.meta, ""
    dataset = load_input_data(meta.get("input"), data, resolution)
    images = subset_of(dataset.splits()[split], subset)
    with torch_threads(threads):
        loss, acc = evaluate(model, images)
    print(f"{split} accuracy {acc:.2%}  loss {loss:.4f}  ({len(images)} images of {dataset.source}{what})")


def eval_integer(
    path: Path, split: str, subset: int | None, data: str | None, resolution: int | None, threads: int | None
) -> None:
    """Accuracy of the integer model at ``path`` through the integer-only executor, on a split of its own data.

    Example:
        >>> eval_integer(Path("runs/vgg-int8"), "test", 500, None, None, 1)  # doctest: +SKIP
        test accuracy 91.20%  (500 images of fashion-mnist; integer-only executor)
    """
    from leanml.cli.model_data import batch_accuracy, check_shape, model_batch, model_data
    from leanml.errors import LeanmlError
    from leanml.quant.integer import IntegerModel
    from leanml.threads import torch_threads
    from leanml.train.loop import subset_of

    model = IntegerModel.load(path)
    shape = model.input_shape
    if resolution is not None and (shape is None or resolution != shape[-1]):
        raise LeanmlError(f"--resolution {resolution} does not apply to the integer model {path}: its input is fixed "
                          f"({'x'.join(map(str, shape)) if shape else 'unknown'})", "drop --resolution")  # fmt: skip
    dataset = model_data(model.input, data)
    images = subset_of(dataset.splits()[split], subset)
    x, y = model_batch(images, model.input)
    check_shape(x, model.input, split)
    with torch_threads(threads):
        acc = batch_accuracy(model, x, y, "the integer model")
    print(f"{split} accuracy {acc:.2%}  ({len(images)} images of {dataset.source}; integer-only executor)")
