"""``leanml eval CHECKPOINT``: accuracy of a checkpoint on a split of the data it was trained on.

The checkpoint's ``input`` block names its dataset, shape, split and normalization; ``--data`` picks other data.

Example:
    $ leanml eval runs/vgg --split test
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
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint path")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    subset: Annotated[int | None, typer.Option(help="evaluate this many images only")] = None,
    data: DataSpecOpt = None,
    resolution: Annotated[int | None, typer.Option(help="resize images to N x N (default: the model's)")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Accuracy of a checkpoint on a split of its own dataset (or of --data)."""
    from leanml.data import load_input_data
    from leanml.errors import LeanmlError
    from leanml.threads import torch_threads
    from leanml.train import evaluate, load_checkpoint
    from leanml.train.loop import subset_of

    if split not in ("train", "val", "test"):
        raise LeanmlError(f"unknown split {split!r}", "choose one of: train, val, test")
    ckpt = load_checkpoint(checkpoint)
    dataset = load_input_data(ckpt.meta.get("input"), data, resolution)
    images = subset_of(dataset.splits()[split], subset)
    with torch_threads(threads):
        loss, acc = evaluate(ckpt.model, images)
    print(f"{split} accuracy {acc:.2%}  loss {loss:.4f}  ({len(images)} images of {dataset.source})")
