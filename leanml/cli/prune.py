"""``leanml prune scan|fine``: sensitivity scan with plots, fine-grained pruning with masked fine-tuning.

Example:
    $ leanml prune scan runs/vgg --report runs/vgg-scan.html --workers 2
    $ leanml prune fine runs/vgg --sparsity 0.75 --finetune-epochs 3 --out runs/vgg-sparse
    $ leanml prune channel runs/vgg --target-macs 0.5 --finetune-epochs 3 --out runs/vgg-half
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from leanml.cli.options import (
    ConfigOpt,
    DataOpt,
    EvalSubsetOpt,
    OverwriteOpt,
    ReportOpt,
    ThreadsOpt,
    TrainSubsetOpt,
    check_finetune,
    check_outputs,
    check_writable,
    config_from,
    default_of,
    parse_floats,
)
from leanml.executor import ExecutorConfig
from leanml.progress import make_console
from leanml.prune.channel import ChannelPruneConfig
from leanml.prune.fine_grained import FineGrainedConfig
from leanml.prune.sensitivity import SensitivityConfig
from leanml.threads import torch_threads
from leanml.train.finetune import FinetuneConfig

GRID = ",".join(map(str, default_of(SensitivityConfig, "sparsities")))

app = typer.Typer(
    help="Prune a checkpoint: sensitivity scan, fine-grained magnitude pruning (+ N:M), channel pruning.",
    add_completion=False,
)


@app.command("scan")
def scan_cmd(
    context: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(help="float checkpoint")],
    report: Annotated[Path, typer.Option(help="HTML report to write (curves + table)")],
    sparsities: Annotated[str, typer.Option(help="comma-separated grid")] = GRID,
    val_images: Annotated[int, typer.Option(help="validation images per evaluation")] = default_of(
        SensitivityConfig, "val_images"
    ),
    backend: Annotated[str, typer.Option(help="serial, local or ray")] = default_of(ExecutorConfig, "backend"),
    workers: Annotated[int, typer.Option(help="worker processes (local backend)")] = default_of(
        ExecutorConfig, "workers"
    ),
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    data: DataOpt = None,
) -> None:
    """Accuracy with one layer pruned at a time, for each sparsity on the grid; curves into an HTML report, the
    numbers into the .json beside it (what `prune fine --scan` reads)."""
    from leanml.cli.model_data import model_data
    from leanml.prune.sensitivity import save_scan, scan_sensitivity, sensitivity_report
    from leanml.train import load_checkpoint

    grid = parse_floats(sparsities, "--sparsities")
    check_writable(report)
    check_outputs(report.with_suffix(".json"), overwrite=overwrite)
    flags = {"sparsities": grid, "val_images": val_images, "executor.backend": backend, "executor.workers": workers}
    cfg = config_from(context, SensitivityConfig, config, flags)
    val = model_data(load_checkpoint(checkpoint).meta.get("input"), data).val
    base, table = scan_sensitivity(checkpoint, cfg, val)
    sensitivity_report(base, table, f"Sensitivity scan: {checkpoint}").save(report)
    save_scan(report.with_suffix(".json"), base, table)
    make_console().print(f"wrote {report}")
    for layer, curve in table.items():
        print(f"{layer:20s} " + "  ".join(f"{s:.0%}:{a:.2%}" for s, a in sorted(curve.items())))


@app.command("fine")
def fine_cmd(
    context: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(help="float checkpoint")],
    out: Annotated[Path, typer.Option(help="where to save the pruned checkpoint (+ .masks)")],
    sparsity: Annotated[float | None, typer.Option(help="one sparsity for every layer")] = None,
    scan: Annotated[Path | None, typer.Option(help="per-layer sparsity from a scan's .json")] = None,
    max_drop: Annotated[float, typer.Option(help="with --scan: accuracy drop allowed per layer (points)")] = 0.5,
    target_size: Annotated[
        float | None, typer.Option(help="with --scan: fraction of the dense size to reach (instead of --max-drop)")
    ] = None,
    scope: Annotated[str, typer.Option(help="layer or global ranking")] = default_of(FineGrainedConfig, "scope"),
    nm: Annotated[
        bool,
        typer.Option(
            help="2:4 semi-structured, not unstructured (layers whose input size is not a multiple of 4 "
            "stay dense, with a note)"
        ),
    ] = False,
    exclude: Annotated[list[str] | None, typer.Option(help="layer to leave dense (repeatable)")] = None,
    finetune_epochs: Annotated[int, typer.Option(help="masked fine-tuning epochs")] = default_of(
        FinetuneConfig, "epochs"
    ),
    lr: Annotated[float, typer.Option(help="fine-tuning learning rate")] = default_of(FinetuneConfig, "lr"),
    distill: Annotated[bool, typer.Option(help="distill from the dense model while fine-tuning")] = False,
    train_subset: TrainSubsetOpt = None,
    eval_subset: EvalSubsetOpt = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Magnitude pruning with masks kept through fine-tuning; prints achieved sparsity and honest sizes."""
    from leanml.artifact import save_artifact
    from leanml.cli.model_data import model_data
    from leanml.errors import LeanmlError
    from leanml.prune import prune_fine_grained_
    from leanml.prune.sensitivity import choose_sparsities, choose_sparsities_for_size, load_scan
    from leanml.train import evaluate, load_checkpoint, save_checkpoint
    from leanml.train.finetune import finetune
    from leanml.train.loop import subset_of

    check_outputs(out, f"{out}.masks", overwrite=overwrite)
    check_finetune(finetune_epochs, train_subset, eval_subset=eval_subset)
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model
    flags: dict[str, Any] = {"scope": scope, "exclude": list(exclude or [])}
    if nm:
        flags["pattern"] = "n:m"
    elif scan is not None:
        base_acc, curves = load_scan(scan)
        if target_size is not None:
            numels = {name: p.numel() for name, p in model.named_parameters() if name.endswith(".weight")}
            numels = {name.removesuffix(".weight"): n for name, n in numels.items()}
            other = 32 * sum(p.numel() for p in model.parameters()) - 32 * sum(numels.get(k, 0) for k in curves)
            chosen = choose_sparsities_for_size(
                curves, base_acc, {k: numels[k] for k in curves if k in numels}, other, target_size
            )
        else:
            chosen = choose_sparsities(curves, base_acc, max_drop / 100)
        flags["sparsity"] = chosen
    elif sparsity is not None:
        flags["sparsity"] = sparsity
    elif config is None:
        raise LeanmlError("say how much to prune", "pass --sparsity S, --scan SCAN.json, --nm or --config FILE")
    explicit = {"pattern": "nm", "sparsity": ("sparsity", "scan", "max_drop", "target_size")}
    cfg = config_from(context, FineGrainedConfig, config, flags, explicit)
    teacher = copy.deepcopy(model) if distill else None
    block = ckpt.meta.get("input")
    images = model_data(block, data)
    test = images.test.sample(eval_subset)
    with torch_threads(threads):
        _, dense_acc = evaluate(model, test)
        masks = prune_fine_grained_(model, cfg)
        if masks.skipped:
            note = (f"note: N:M leaves {', '.join(masks.skipped)} dense (input size not a multiple of {cfg.m}); "
                    "--exclude NAME leaves other layers dense too")  # fmt: skip
            make_console().print(note, highlight=False, soft_wrap=True)
        _, pruned_acc = evaluate(model, test)
        final_acc = pruned_acc
        if finetune_epochs:
            train = subset_of(images.train, train_subset)
            finetune(model, train, FinetuneConfig(finetune_epochs, lr), masks.apply_, teacher=teacher)
            _, final_acc = evaluate(model, test)
    report = masks.report(model)
    meta = {"pruning": {"config": cfg.to_dict(), **report.to_dict()}, "metrics": {"test_acc": final_acc}}
    save_checkpoint(out, model, meta, input=block)
    save_artifact(Path(f"{out}.masks"), masks.state(), {"layers": list(masks.masks)}, kind="masks")
    print(
        f"sparsity {report.sparsity:.1%}: test accuracy dense {dense_acc:.2%}, pruned {pruned_acc:.2%}, "
        f"after {finetune_epochs} fine-tuning epoch(s) {final_acc:.2%}; size {report.sparse_bytes / 1024:.1f} KiB "
        f"sparse vs {report.dense_bytes / 1024:.1f} KiB dense ({report.sparse_bytes / report.dense_bytes:.1%})"
    )


def _parse_layer_ratios(items: list[str]) -> dict[str, float]:
    from leanml.errors import LeanmlError

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise LeanmlError(f"bad --layer-ratio {item!r}", "write it as LAYER=RATIO, e.g. features.3=0.5")
    return out


@app.command("channel")
def channel_cmd(
    context: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(help="float checkpoint")],
    out: Annotated[Path, typer.Option(help="where to save the pruned (smaller, dense) checkpoint")],
    ratio: Annotated[float, typer.Option(help="fraction of channels to remove from every prunable layer")] = default_of(
        ChannelPruneConfig, "ratio"
    ),
    target_macs: Annotated[
        float | None, typer.Option(help="keep this fraction of the MACs (finds the ratio)")
    ] = default_of(ChannelPruneConfig, "target_macs"),
    layer_ratio: Annotated[list[str] | None, typer.Option(help="LAYER=RATIO, repeatable; overrides --ratio")] = None,
    importance: Annotated[str, typer.Option(help="l1, l2, bn or taylor")] = default_of(
        ChannelPruneConfig, "importance"
    ),
    round_to: Annotated[int, typer.Option(help="keep a multiple of this many channels per layer")] = default_of(
        ChannelPruneConfig, "round_to"
    ),
    exclude: Annotated[list[str] | None, typer.Option(help="layer whose channels stay (repeatable)")] = None,
    taylor_batches: Annotated[int, typer.Option(help="training batches of 64 for taylor gradients")] = 8,
    finetune_epochs: Annotated[int, typer.Option(help="fine-tuning epochs after pruning")] = default_of(
        FinetuneConfig, "epochs"
    ),
    lr: Annotated[float, typer.Option(help="fine-tuning learning rate")] = default_of(FinetuneConfig, "lr"),
    distill: Annotated[bool, typer.Option(help="distill from the unpruned model while fine-tuning")] = False,
    train_subset: TrainSubsetOpt = None,
    eval_subset: EvalSubsetOpt = None,
    overwrite: OverwriteOpt = False,
    report: ReportOpt = None,
    config: ConfigOpt = None,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Physically remove channels (coupled through residuals, concat, depthwise); print measured gains."""
    import itertools

    from leanml.cli.model_data import model_data
    from leanml.data import batches
    from leanml.prune import prune_channels_
    from leanml.prune.measure import comparison_table, measure_model
    from leanml.report import Report
    from leanml.train import evaluate, load_checkpoint, save_checkpoint
    from leanml.train.finetune import finetune
    from leanml.train.loop import subset_of

    check_outputs(out, overwrite=overwrite)
    check_writable(report)
    check_finetune(finetune_epochs, train_subset, eval_subset=eval_subset)
    flags = {"ratio": ratio, "layer_ratios": _parse_layer_ratios(layer_ratio or []), "target_macs": target_macs,
             "importance": importance, "round_to": round_to, "exclude": list(exclude or [])}  # fmt: skip
    cfg = config_from(context, ChannelPruneConfig, config, flags, {"layer_ratios": "layer_ratio"})
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model
    teacher = copy.deepcopy(model) if distill else None
    block = ckpt.meta.get("input")
    images = model_data(block, data)
    test = images.test.sample(eval_subset)
    train = images.train if finetune_epochs or cfg.importance == "taylor" else None
    with torch_threads(threads):
        dense = measure_model(copy.deepcopy(model), test, threads=threads)
        grad_batches = None
        if train is not None and cfg.importance == "taylor":
            grad_batches = list(itertools.islice(batches(train, 64, shuffle=True), taylor_batches))
        kept = prune_channels_(model, cfg, batches=grad_batches)
        _, pruned_acc = evaluate(model, test)
        if finetune_epochs and train is not None:
            finetune(model, subset_of(train, train_subset), FinetuneConfig(finetune_epochs, lr), teacher=teacher)
        pruned = measure_model(model, test, threads=threads)
    meta = {"pruning": {"channel": cfg.to_dict(), "kept_channels": {k: len(v) for k, v in kept.items()}},
            "metrics": {"test_acc": pruned.test_acc, "test_acc_before_finetune": pruned_acc},
            "baseline": dense.to_dict(), "pruned": pruned.to_dict()}  # fmt: skip
    save_checkpoint(out, model, meta, input=block)
    headers, rows = comparison_table(dense, pruned)
    rows.insert(3, ["accuracy before fine-tuning", "", f"{pruned_acc:.2%}", ""])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(4)]
    for r in [headers, *rows]:
        print(f"{r[0]:{widths[0]}s}  {r[1]:>{widths[1]}s}  {r[2]:>{widths[2]}s}  {r[3]:>{widths[3]}s}")
    if report is not None:
        doc = Report(f"Channel pruning: {checkpoint}")
        doc.add_text(f"config: {json.dumps(cfg.to_dict())}; fine-tuning: {finetune_epochs} epoch(s) at lr {lr}")
        doc.add_table(headers, rows)
        doc.add_heading("Kept channels per layer")
        doc.add_table(["layer", "kept"], [[k, str(len(v))] for k, v in kept.items()])
        doc.save(report)
    make_console().print(f"wrote {out}")
