"""The ``leanml`` command: one sub-command per workflow, user errors as one line.

Example:
    $ leanml train --model vgg --epochs 1 --out runs/vgg
    $ leanml profile runs/vgg
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from leanml.cli_options import DataOpt, ThreadsOpt
from leanml.errors import LeanmlError
from leanml.progress import make_console

app = typer.Typer(
    name="leanml",
    help="Make neural networks lean and run them fast: profile, prune, quantize, search, deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_subcommands() -> None:
    from leanml.cli_deploy import deploy_cmd
    from leanml.cli_llm import app as llm_app
    from leanml.cli_nas import app as nas_app
    from leanml.cli_prune import app as prune_app
    from leanml.cli_quantize import app as quantize_app

    app.add_typer(prune_app, name="prune")
    app.add_typer(quantize_app, name="quantize")
    app.add_typer(llm_app, name="llm")
    app.add_typer(nas_app, name="nas")
    app.command("deploy")(deploy_cmd)


_register_subcommands()


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """Parse ``"1,28,28"`` (or ``1x28x28``) into a tuple of positive ints.

    Example:
        >>> parse_ints("1x28x28", "input shape")
        (1, 28, 28)
    """
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise LeanmlError(f"bad {what} {text!r}", "give positive integers separated by commas, e.g. 1,28,28")
    return values


@app.command("models")
def models_cmd() -> None:
    """List the reference models."""
    from leanml.models import available_models

    for name, summary in available_models().items():
        print(f"{name:14s} {summary}")


@app.command("train")
def train_cmd(
    model: Annotated[str, typer.Option(help="reference model name (see `leanml models`)")] = "vgg",
    epochs: Annotated[int, typer.Option(help="training epochs")] = 10,
    out: Annotated[Path | None, typer.Option(help="checkpoint path (default runs/<model>)")] = None,
    optimizer: Annotated[str, typer.Option(help="sgd or adamw")] = "sgd",
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default per optimizer)")] = None,
    batch_size: Annotated[int, typer.Option(help="batch size")] = 128,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    teacher: Annotated[Path | None, typer.Option(help="teacher checkpoint for knowledge distillation")] = None,
    train_subset: Annotated[int | None, typer.Option(help="train on this many images only")] = None,
    val_subset: Annotated[int | None, typer.Option(help="validate on this many images only")] = None,
    test_subset: Annotated[int | None, typer.Option(help="test on this many images only")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON/YAML TrainConfig (replaces the flags above)")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run at --out")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing checkpoint at --out")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train a reference model on Fashion-MNIST; checkpoint every epoch (resumable)."""
    from leanml.train import TrainConfig, train

    if config is not None:
        cfg = TrainConfig.load(config)
    else:
        cfg = TrainConfig(model=model, epochs=epochs, optimizer=optimizer, lr=lr, batch_size=batch_size, seed=seed,
                          teacher=str(teacher) if teacher else None, train_subset=train_subset,
                          val_subset=val_subset, test_subset=test_subset)  # fmt: skip
    target = out or Path("runs") / cfg.model
    result = train(cfg, target, data_root=data, resume=resume, overwrite=overwrite, threads=threads, progress=progress)
    m = result.metrics
    make_console().print(f"saved {result.checkpoint}")
    print(
        f"{cfg.model}: test accuracy {m['test_acc']:.2%} (val {m['val_acc']:.2%}, {m['train_seconds']:.0f} s training)"
    )


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


@app.command("profile")
def profile_cmd(
    checkpoint: Annotated[Path | None, typer.Argument(help="checkpoint to profile")] = None,
    model: Annotated[str | None, typer.Option(help="profile a fresh reference model instead")] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="input shape C,H,W (default: the checkpoint's, or 1,28,28)")
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="batch sizes to time, comma-separated")] = "1,32",
    repeats: Annotated[int, typer.Option(help="timed repeats per batch size")] = 30,
    latency: Annotated[bool, typer.Option(help="measure latency")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Per-layer table and totals: params, MACs, size per bit width, peak activation memory, latency."""
    from leanml.models import build_model
    from leanml.profile import profile_model
    from leanml.train import load_checkpoint

    if (checkpoint is None) == (model is None):
        raise LeanmlError(
            "profile needs exactly one of CHECKPOINT or --model NAME", "e.g. `leanml profile --model vgg`"
        )
    meta: dict[str, Any] = {}
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        net, meta = ckpt.model, ckpt.meta
    else:
        assert model is not None
        net = build_model(model)
    default_shape = ",".join(map(str, meta.get("input", {}).get("shape", [1, 28, 28])))
    shape = parse_ints(input_shape or default_shape, "input shape")
    sizes = parse_ints(batch_sizes, "batch sizes")
    prof = profile_model(net, shape, batch_sizes=sizes, threads=threads, measure=latency, repeats=repeats)
    if as_json:
        doc = prof.to_dict()
        if "metrics" in meta:
            doc["metrics"] = meta["metrics"]
        print(json.dumps(doc, indent=2))
        return
    console = make_console()
    console.print(prof.layer_table())
    console.print(prof.totals_table())
    if "test_acc" in meta.get("metrics", {}):
        console.print(f"test accuracy (from the checkpoint): {meta['metrics']['test_acc']:.2%}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app; a :class:`LeanmlError` prints one line and exits 2.

    Usage errors and ``--help`` are handled by the command parser (exit 2 and 0).
    """
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="leanml", standalone_mode=True)
    except LeanmlError as e:
        make_console().print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
