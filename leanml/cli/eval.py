"""``leanml eval CHECKPOINT``: accuracy of a checkpoint on a Fashion-MNIST split.

Example:
    $ leanml eval runs/vgg --split test
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leanml.cli.options import DataOpt, ThreadsOpt

app = typer.Typer(add_completion=False)


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint path")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    subset: Annotated[int | None, typer.Option(help="evaluate this many images only")] = None,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Accuracy of a checkpoint on a Fashion-MNIST split."""
    from leanml.data import load_split
    from leanml.threads import torch_threads
    from leanml.train import evaluate, load_model

    model = load_model(checkpoint)
    images = load_split(split, data, subset)
    with torch_threads(threads):
        loss, acc = evaluate(model, images)
    print(f"{split} accuracy {acc:.2%}  loss {loss:.4f}  ({len(images)} images)")
