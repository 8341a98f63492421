"""``leanml compress``: a model and image data through the recipe's stages to verified C, with one HTML report.

Example:
    $ leanml compress mcu --model vgg --data fashion-mnist --out runs/mcu-vgg
    $ leanml compress my_recipe.yaml --model mypkg.nets:small_cnn --model-arg width=16 --data imagefolder:photos
    $ leanml compress mcu --set train.epochs=1 --set finetune.epochs=1     # override any recipe field
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from leanml.cli.options import JsonOpt, ProgressOpt, ThreadsOpt, check_writable
from leanml.errors import LeanmlError

app = typer.Typer(add_completion=False)


def parse_assignments(items: list[str], what: str) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` → ``{"a.b": 1, "c": [1, 2]}`` (values parsed as YAML).

    Example:
        >>> parse_assignments(["train.epochs=1", "name=demo"], "--set")
        {'train.epochs': 1, 'name': 'demo'}
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise LeanmlError(f"bad {what} {item!r}", f"write {what} NAME=VALUE, e.g. {what} train.epochs=1")
        try:
            out[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise LeanmlError(f"bad value in {what} {item!r}: {e}", "quote strings; lists as [1, 2]") from e
    return out


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"train.epochs": 1}`` → ``{"train": {"epochs": 1}}``.

    Example:
        >>> nest({"train.epochs": 1, "seed": 3})
        {'train': {'epochs': 1}, 'seed': 3}
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *outer, last = key.split(".")
        target = out
        for part in outer:
            target = target.setdefault(part, {})
        target[last] = value
    return out


@app.command("compress")
def compress_cmd(
    recipe: Annotated[str, typer.Argument(help="recipe: a YAML/JSON file or a built-in name (mcu, cpu)")] = "mcu",
    model: Annotated[str, typer.Option(help="zoo model name, or your own: package.module:factory")] = "vgg",
    model_arg: Annotated[list[str] | None, typer.Option(help="factory/zoo keyword, NAME=VALUE (repeatable)")] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="start from this trained checkpoint (skips the train stage; its data by default)"),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="fashion-mnist | imagefolder:DIR | npz:FILE (default: fashion-mnist)")
    ] = None,
    resolution: Annotated[int | None, typer.Option(help="resize images to this size (square)")] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="run folder; re-running with the same --out resumes it (finished stages are reused, a "
            "changed setting re-runs only the stages it affects); choose a new --out to start over"
        ),
    ] = Path("runs/compress"),
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a recipe field, e.g. train.epochs=1")
    ] = None,
    threads: ThreadsOpt = None,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Train or load → prune → fine-tune → quantize → deploy → verify → report, resumable, to the recipe's budget."""
    from leanml.compress.pipeline import compress
    from leanml.compress.recipe import load_recipe
    from leanml.compress.summary import print_run
    from leanml.data import ImageData, load_input_data

    check_writable(out)
    rec = load_recipe(recipe)
    overrides = nest(parse_assignments(set_ or [], "--set"))
    if threads is not None:
        overrides["threads"] = threads
    if overrides:
        rec = rec.with_overrides(**overrides)
    source: str | Any = model
    images: str | ImageData = data or "fashion-mnist"
    if checkpoint is not None:
        from leanml.train.checkpoint import load_checkpoint

        loaded = load_checkpoint(checkpoint)
        source = loaded.model
        images = load_input_data(loaded.meta.get("input"), data, resolution)
        if "train" in rec.stages:  # the checkpoint is the float baseline
            rec = rec.with_overrides(stages=[s for s in rec.stages if s != "train"])
    args = parse_assignments(model_arg or [], "--model-arg")
    result = compress(source, images, rec, out, args, resolution, progress)
    if as_json:
        print(json.dumps(result.record, indent=2, sort_keys=True))
        return
    print_run(result.record, result.report)
