"""``leanml quantize linear|kmeans|mixed``: quantize a checkpoint, report accuracy and size, save the result.

Example:
    $ leanml quantize linear runs/vgg --observer entropy --out runs/vgg-int8
    $ leanml quantize kmeans runs/vgg --bits 4 --qat-epochs 1 --out runs/vgg-km4
    $ leanml eval runs/vgg-km4   # the k-means model: weights rebuilt from its codes + codebooks
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from leanml.cli.model_data import batch_accuracy
from leanml.cli.options import (
    ConfigOpt,
    DataOpt,
    OverwriteOpt,
    ThreadsOpt,
    TrainSubsetOpt,
    check_finetune,
    check_outputs,
    check_range,
    config_from,
    default_of,
)
from leanml.progress import make_console
from leanml.quant.kmeans import KMeansConfig
from leanml.quant.linear import LinearQuantConfig
from leanml.quant.mixed import MixedPrecisionConfig
from leanml.quant.primitives import MAX_BITS, MIN_BITS
from leanml.threads import torch_threads

app = typer.Typer(
    help="Quantize a checkpoint: linear int8 (PTQ/QAT → integer model) or k-means (+QAT).", add_completion=False
)

EvalOpt = Annotated[int, typer.Option(help="test images to evaluate on (the integer executor is slow)")]


def history_of(meta: dict[str, Any], weight_bits: dict[str, int] | None = None) -> dict[str, Any] | None:
    """What the integer model should remember of a checkpoint's compression: sparsity, per-layer weight widths.

    Example:
        >>> history_of({"pruning": {"sparsity": 0.6}}, {"fc": 4})
        {'sparsity': 0.6, 'weight_bits': {'fc': 4}}
    """
    out: dict[str, Any] = {}
    pruning = meta.get("pruning")
    if isinstance(pruning, dict) and isinstance(pruning.get("sparsity"), (int, float)):
        out["sparsity"] = float(pruning["sparsity"])
    if weight_bits is not None:
        out["weight_bits"] = dict(weight_bits)
    return out or None


@app.command("linear")
def linear_cmd(
    context: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(help="float checkpoint")],
    out: Annotated[Path, typer.Option(help="where to save the integer model")],
    observer: Annotated[str, typer.Option(help="minmax, moving_average, percentile, mse or entropy")] = default_of(
        LinearQuantConfig, "observer"
    ),
    calibration_images: Annotated[int, typer.Option(help="training images to calibrate on")] = default_of(
        LinearQuantConfig, "calibration_images"
    ),
    qat_epochs: Annotated[int, typer.Option(help="quantization-aware fine-tuning epochs")] = default_of(
        LinearQuantConfig, "qat_epochs"
    ),
    qat_lr: Annotated[float, typer.Option(help="QAT learning rate")] = default_of(LinearQuantConfig, "qat_lr"),
    lsq: Annotated[bool, typer.Option(help="learn activation scales during QAT (LSQ)")] = default_of(
        LinearQuantConfig, "learn_scale"
    ),
    onnx: Annotated[Path | None, typer.Option(help="also export an ONNX QDQ model here")] = None,
    eval_subset: EvalOpt = 2000,
    train_subset: TrainSubsetOpt = default_of(LinearQuantConfig, "qat_images"),
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """int8 linear quantization: fold BN, calibrate, optional QAT, convert to the integer-only model."""
    from leanml.cli.model_data import check_shape, model_batch, model_data
    from leanml.quant import quantize_linear
    from leanml.train import load_checkpoint

    check_outputs(out, onnx, overwrite=overwrite)
    flags = {"observer": observer, "calibration_images": calibration_images, "qat_epochs": qat_epochs,
             "qat_lr": qat_lr, "learn_scale": lsq, "qat_images": train_subset}  # fmt: skip
    cfg = config_from(context, LinearQuantConfig, config, flags, {"learn_scale": "lsq", "qat_images": "train_subset"})
    ckpt = load_checkpoint(checkpoint)
    model, block = ckpt.model, ckpt.meta.get("input")
    images = model_data(block, data)
    calib, _ = model_batch(images.train.sample(cfg.calibration_images, cfg.seed), block)
    check_shape(calib, block, "calibration")
    with torch_threads(threads):
        result = quantize_linear(model, cfg, calib, images.train if cfg.qat_epochs else None)
        assert result.integer_model is not None
        imodel = result.integer_model.with_meta(block, history_of(ckpt.meta))
        imodel.save(out)
        if onnx is not None:
            from leanml.quant.onnx_export import export_onnx

            export_onnx(imodel, onnx)
        test = images.test.sample(eval_subset)
        x, y = model_batch(test, block)
        accs = (batch_accuracy(model, x, y), batch_accuracy(result.sim, x, y),
                batch_accuracy(result.integer_model, x, y, "the integer model"))  # fmt: skip
    make_console().print(f"saved the integer model to {out}")
    print(f"test accuracy on {len(test)} images: fp32 {accs[0]:.2%}  fake-quant {accs[1]:.2%}  integer {accs[2]:.2%}")


@app.command("kmeans")
def kmeans_cmd(
    context: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(help="float checkpoint")],
    out: Annotated[Path, typer.Option(help="where to save the k-means model (packed codes + codebooks)")],
    bits: Annotated[int, typer.Option(help="bits per weight index (2^bits centroids per layer)")] = default_of(
        KMeansConfig, "bits"
    ),
    qat_epochs: Annotated[int, typer.Option(help="k-means QAT epochs (centroid updates)")] = default_of(
        LinearQuantConfig, "qat_epochs"
    ),
    qat_lr: Annotated[float, typer.Option(help="QAT learning rate")] = default_of(LinearQuantConfig, "qat_lr"),
    eval_subset: EvalOpt = 10000,
    train_subset: TrainSubsetOpt = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """k-means weight quantization with optional QAT; saves one k-means model: packed codes + codebooks."""
    from leanml.cli.model_data import model_batch, model_data
    from leanml.quant import kmeans_quantize_
    from leanml.quant.kmeans import save_kmeans_model
    from leanml.train import load_checkpoint
    from leanml.train.finetune import FinetuneConfig, finetune
    from leanml.train.loop import subset_of

    check_outputs(out, overwrite=overwrite)
    check_finetune(qat_epochs, train_subset, "--qat-epochs")
    cfg = config_from(context, KMeansConfig, config, {"bits": bits})
    ckpt = load_checkpoint(checkpoint)
    model, block = ckpt.model, ckpt.meta.get("input")
    images = model_data(block, data)
    x, y = model_batch(images.test.sample(eval_subset), block)
    with torch_threads(threads):
        fp32_acc = batch_accuracy(model, x, y)
        quantizer = kmeans_quantize_(model, cfg)
        ptq_acc = batch_accuracy(model, x, y)
        if qat_epochs:
            finetune(model, subset_of(images.train, train_subset), FinetuneConfig(qat_epochs, qat_lr),
                     quantizer.qat_step_)  # fmt: skip
        model.eval()
        qat_acc = batch_accuracy(model, x, y)
    report = quantizer.report(model)
    meta = {"kmeans": {"bits": cfg.bits, "qat_epochs": qat_epochs}, "metrics": {"test_acc": qat_acc}}
    save_kmeans_model(out, model, quantizer, meta, input=block)
    make_console().print(f"saved the k-means model to {out}")
    print(
        f"k-means {cfg.bits}-bit: test accuracy fp32 {fp32_acc:.2%}, after quantization {ptq_acc:.2%}, "
        f"after {qat_epochs} QAT epoch(s) {qat_acc:.2%}; size {report.total_bytes / 1024:.1f} KiB "
        f"(fp32 {report.fp32_bytes / 1024:.1f} KiB)"
    )


@app.command("mixed")
def mixed_cmd(
    context: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(help="float checkpoint")],
    out: Annotated[Path, typer.Option(help="where to save the integer model")],
    budget_kib: Annotated[
        float | None, typer.Option(help="weight budget in KiB (default: uniform --like bits)")
    ] = None,
    like: Annotated[
        int, typer.Option(help=f"budget = size of uniform weights at this many bits ({MIN_BITS}..{MAX_BITS})")
    ] = default_of(MixedPrecisionConfig, "like_uniform_bits"),
    val_images: Annotated[int, typer.Option(help="validation images for the sensitivity scan")] = default_of(
        MixedPrecisionConfig, "val_images"
    ),
    calibration_images: Annotated[int, typer.Option(help="training images to calibrate on")] = default_of(
        LinearQuantConfig, "calibration_images"
    ),
    eval_subset: EvalOpt = 2000,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Mixed-precision weights: per-layer widths from measured sensitivity under a size budget, then int8 PTQ."""
    from leanml.cli.model_data import check_shape, model_batch, model_data
    from leanml.quant import QuantSim, convert
    from leanml.quant.linear import calibration_batches
    from leanml.quant.mixed import mixed_precision
    from leanml.train import load_checkpoint

    check_outputs(out, overwrite=overwrite)
    check_range(like, MIN_BITS, MAX_BITS, "--like")
    budget = int(budget_kib * 1024) if budget_kib is not None else None
    flags = {"budget_bytes": budget, "like_uniform_bits": None if budget else like, "val_images": val_images}
    explicit = {"budget_bytes": "budget_kib", "like_uniform_bits": ("like", "budget_kib")}
    cfg = config_from(context, MixedPrecisionConfig, config, flags, explicit)  # validate range-checks the widths
    uniform = cfg.like_uniform_bits if cfg.like_uniform_bits is not None else like  # the comparison's width
    ckpt = load_checkpoint(checkpoint)
    model, block = ckpt.model, ckpt.meta.get("input")
    images = model_data(block, data)
    calib, _ = model_batch(images.train.sample(calibration_images), block)
    check_shape(calib, block, "calibration")
    with torch_threads(threads):
        result = mixed_precision(model, cfg, images.val)
        test = images.test.sample(eval_subset)
        x, y = model_batch(test, block)
        accs = {}
        for label, bits in (("mixed", result.bits), (f"uniform {uniform}-bit", uniform)):
            sim = QuantSim.from_model(model, 8, bits)
            sim.calibrate(calibration_batches(calib, 128))
            accs[label] = batch_accuracy(sim, x, y)
            if label == "mixed":
                convert(sim, block, history_of(ckpt.meta, result.bits)).save(out)
    console = make_console()
    for name, b in result.bits.items():
        console.print(f"  {name:24s} {b} bits")
    print(
        f"weights {result.weight_bits_total / 8 / 1024:.1f} KiB (budget {result.budget_bits / 8 / 1024:.1f} KiB); "
        f"test accuracy on {len(test)} images: fp32 {batch_accuracy(model, x, y):.2%}, "
        + ", ".join(f"{k} {v:.2%}" for k, v in accs.items())
    )
