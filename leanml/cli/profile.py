"""``leanml profile``: per-layer table and totals of a checkpoint or a fresh reference model.

Example:
    $ leanml profile runs/vgg
    $ leanml profile runs/vgg-km4   # a k-means model: the rebuilt model, sized at its bits
    $ leanml profile --model resnet --batch-sizes 1 --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leanml.cli.options import JsonOpt, ThreadsOpt, parse_ints
from leanml.errors import LeanmlError
from leanml.progress import make_console

if TYPE_CHECKING:
    from leanml.quant.kmeans import KMeansReport

app = typer.Typer(add_completion=False)


@app.command("profile")
def profile_cmd(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(help="checkpoint, or integer or k-means model (`leanml quantize` output), to profile"),
    ] = None,
    model: Annotated[str | None, typer.Option(help="profile a fresh reference model instead")] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="input shape C,H,W (default: the checkpoint's, or 1,28,28)")
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="batch sizes to time, comma-separated")] = "1,32",
    repeats: Annotated[int, typer.Option(help="timed repeats per batch size")] = 30,
    latency: Annotated[bool, typer.Option(help="measure latency")] = True,
    as_json: JsonOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Per-layer table and totals: params, MACs, size per bit width, peak activation memory, latency."""
    from leanml.cli.model_data import artifact_format
    from leanml.models import build_model
    from leanml.profile import profile_model
    from leanml.train import load_checkpoint

    if (checkpoint is None) == (model is None):
        raise LeanmlError(
            "profile needs exactly one of CHECKPOINT or --model NAME", "e.g. `leanml profile --model vgg`"
        )
    meta: dict[str, Any] = {}
    kmeans: KMeansReport | None = None
    found = artifact_format(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and found == "leanml.integer-model":
        profile_integer_model(checkpoint, input_shape, as_json)
        return
    if checkpoint is not None and found == "leanml.kmeans-model":  # the rebuilt model; its size at its bits
        from leanml.quant.kmeans import load_kmeans_model

        net, quantizer, meta = load_kmeans_model(checkpoint)
        kmeans = quantizer.report(net)
    elif checkpoint is not None:
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
        if kmeans is not None:
            doc["kmeans"] = kmeans.to_dict()
        print(json.dumps(doc, indent=2))
        return
    console = make_console()
    console.print(prof.layer_table())
    console.print(prof.totals_table())
    if kmeans is not None:
        widths = "/".join(map(str, sorted({layer.bits for layer in kmeans.layers})))
        console.print(f"k-means model size {kmeans.total_bytes / 1024:.1f} KiB: {len(kmeans.layers)} layer(s) at "
                      f"{widths} bits (indices + fp32 codebooks), the rest fp32; all fp32 "
                      f"{kmeans.fp32_bytes / 1024:.1f} KiB")  # fmt: skip
    if "test_acc" in meta.get("metrics", {}):
        console.print(f"test accuracy (from the checkpoint): {meta['metrics']['test_acc']:.2%}")


def profile_integer_model(path: Path, input_shape: str | None, as_json: bool) -> None:
    """Params, flash, MACs and peak int8 activation of the integer model at ``path``, from its deploy lowering.

    Example:
        >>> profile_integer_model(Path("runs/vgg-int8"), None, as_json=True)  # doctest: +SKIP
    """
    from leanml.profile.integer import profile_integer
    from leanml.quant.integer import IntegerModel

    model = IntegerModel.load(path)
    shape = parse_ints(input_shape, "input shape") if input_shape is not None else None
    if shape is not None and len(shape) != 3:
        raise LeanmlError(f"bad input shape {input_shape!r} for an integer model", "give C,H,W, e.g. 1,28,28")
    prof = profile_integer(model, (shape[0], shape[1], shape[2]) if shape is not None else None)
    if as_json:
        print(json.dumps(prof.to_dict(), indent=2))
        return
    console = make_console()
    console.print(prof.layer_table())
    console.print(prof.totals_table())
