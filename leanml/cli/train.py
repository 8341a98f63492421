"""``leanml train``: train a zoo model or your own (``pkg.module:factory``) on any image data, flags (or
``--config``) read as a TrainConfig.

Example:
    $ leanml train --model vgg --epochs 1 --out runs/vgg
    $ leanml train --model resnet --data imagefolder:photos --resolution 32 --out runs/photos
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leanml.cli.options import (
    ConfigOpt,
    OverwriteOpt,
    ThreadsOpt,
    TrainSubsetOpt,
    check_writable,
    config_from,
    default_of,
)
from leanml.progress import make_console
from leanml.train.config import TrainConfig

app = typer.Typer(add_completion=False)

DATA_HELP = (
    "data: fashion-mnist | imagefolder:DIR (a sub-folder per class) | npz:FILE; "
    "a bare folder is the Fashion-MNIST folder (default: $LEANML_DATA or Debian's path)"
)
DataSpecOpt = Annotated[str | None, typer.Option("--data", help=DATA_HELP)]


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="zoo model name (see `leanml models`) or pkg.module:factory")] = default_of(
        TrainConfig, "model"
    ),
    epochs: Annotated[int, typer.Option(help="training epochs")] = default_of(TrainConfig, "epochs"),
    out: Annotated[Path | None, typer.Option(help="checkpoint path (default runs/<model>)")] = None,
    optimizer: Annotated[str, typer.Option(help="sgd or adamw")] = default_of(TrainConfig, "optimizer"),
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default per optimizer)")] = default_of(
        TrainConfig, "lr"
    ),
    batch_size: Annotated[int, typer.Option(help="batch size")] = default_of(TrainConfig, "batch_size"),
    seed: Annotated[int, typer.Option(help="random seed")] = default_of(TrainConfig, "seed"),
    teacher: Annotated[Path | None, typer.Option(help="teacher checkpoint for knowledge distillation")] = None,
    train_subset: TrainSubsetOpt = default_of(TrainConfig, "train_subset"),
    val_subset: Annotated[int | None, typer.Option(help="validate on this many images only")] = default_of(
        TrainConfig, "val_subset"
    ),
    test_subset: Annotated[int | None, typer.Option(help="test on this many images only")] = default_of(
        TrainConfig, "test_subset"
    ),
    config: ConfigOpt = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run at --out")] = False,
    overwrite: OverwriteOpt = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    data: DataSpecOpt = None,
    resolution: Annotated[int | None, typer.Option(help="resize images to N x N (default: as stored)")] = default_of(
        TrainConfig, "resolution"
    ),
    threads: ThreadsOpt = None,
) -> None:
    """Train a model on image data (Fashion-MNIST by default); checkpoint every epoch (resumable)."""
    from leanml.data import data_argument
    from leanml.train import train

    spec, root = data_argument(data)
    flags = {"data": spec, "resolution": resolution, "model": model, "epochs": epochs, "optimizer": optimizer,
             "lr": lr, "batch_size": batch_size, "seed": seed, "teacher": str(teacher) if teacher else None,
             "train_subset": train_subset, "val_subset": val_subset, "test_subset": test_subset}  # fmt: skip
    cfg = config_from(ctx, TrainConfig, config, flags)
    target = out or Path("runs") / cfg.model.replace(":", "_")
    check_writable(target)  # before any epoch; train() refuses an existing run unless --resume or --overwrite
    result = train(cfg, target, data_root=root, resume=resume, overwrite=overwrite, threads=threads, progress=progress)
    m = result.metrics
    make_console().print(f"saved {result.checkpoint}")
    print(
        f"{cfg.model}: test accuracy {m['test_acc']:.2%} (val {m['val_acc']:.2%}, {m['train_seconds']:.0f} s training)"
    )
