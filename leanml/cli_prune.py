"""``leanml prune scan|fine``: sensitivity scan with plots, fine-grained pruning with masked fine-tuning.

Example:
    $ leanml prune scan runs/vgg --report runs/vgg-scan.html --workers 2
    $ leanml prune fine runs/vgg --sparsity 0.75 --finetune-epochs 3 --out runs/vgg-sparse
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated

import typer

from leanml.cli_options import DataOpt, ThreadsOpt
from leanml.progress import make_console
from leanml.threads import torch_threads

app = typer.Typer(help="Prune a checkpoint: sensitivity scan, fine-grained magnitude pruning (+ N:M).")


@app.command("scan")
def scan_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="float checkpoint")],
    report: Annotated[Path, typer.Option(help="HTML report to write (curves + table)")],
    sparsities: Annotated[str, typer.Option(help="comma-separated grid")] = "0.4,0.5,0.6,0.7,0.8,0.9",
    val_images: Annotated[int, typer.Option(help="validation images per evaluation")] = 2000,
    backend: Annotated[str, typer.Option(help="serial, local or ray")] = "local",
    workers: Annotated[int, typer.Option(help="worker processes (local backend)")] = 2,
    data: DataOpt = None,
) -> None:
    """Accuracy with one layer pruned at a time, for each sparsity on the grid; curves into an HTML report."""
    from leanml.executor import ExecutorConfig
    from leanml.prune.sensitivity import SensitivityConfig, scan_sensitivity, sensitivity_report

    grid = [float(v) for v in sparsities.split(",") if v.strip()]
    cfg = SensitivityConfig(grid, val_images, ExecutorConfig(backend=backend, workers=workers))
    base, table = scan_sensitivity(checkpoint, cfg, data_root=data)
    sensitivity_report(base, table, f"Sensitivity scan: {checkpoint}").save(report)
    report.with_suffix(".json").write_text(json.dumps({"base": base, "scan": table}, indent=2))
    make_console().print(f"wrote {report}")
    for layer, curve in table.items():
        print(f"{layer:20s} " + "  ".join(f"{s:.0%}:{a:.2%}" for s, a in sorted(curve.items())))


@app.command("fine")
def fine_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="float checkpoint")],
    out: Annotated[Path, typer.Option(help="where to save the pruned checkpoint (+ .masks)")],
    sparsity: Annotated[float | None, typer.Option(help="one sparsity for every layer")] = None,
    scan: Annotated[Path | None, typer.Option(help="per-layer sparsity from a scan's .json")] = None,
    max_drop: Annotated[float, typer.Option(help="with --scan: accuracy drop allowed per layer (points)")] = 0.5,
    scope: Annotated[str, typer.Option(help="layer or global ranking")] = "layer",
    nm: Annotated[bool, typer.Option(help="2:4 semi-structured instead of unstructured")] = False,
    finetune_epochs: Annotated[int, typer.Option(help="masked fine-tuning epochs")] = 0,
    lr: Annotated[float, typer.Option(help="fine-tuning learning rate")] = 0.01,
    distill: Annotated[bool, typer.Option(help="distill from the dense model while fine-tuning")] = False,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Magnitude pruning with masks kept through fine-tuning; prints achieved sparsity and honest sizes."""
    from leanml.artifact import save_artifact
    from leanml.data import load_split
    from leanml.errors import LeanmlError
    from leanml.prune import FineGrainedConfig, prune_fine_grained_
    from leanml.prune.sensitivity import choose_sparsities
    from leanml.train import evaluate, load_checkpoint, save_checkpoint
    from leanml.train.finetune import FinetuneConfig, finetune

    if nm:
        cfg = FineGrainedConfig(pattern="n:m")
    elif scan is not None:
        doc = json.loads(scan.read_text())
        curves = {layer: {float(s): a for s, a in c.items()} for layer, c in doc["scan"].items()}
        cfg = FineGrainedConfig(sparsity=choose_sparsities(curves, doc["base"], max_drop / 100))
    elif sparsity is not None:
        cfg = FineGrainedConfig(sparsity=sparsity, scope=scope)
    else:
        raise LeanmlError("say how much to prune", "pass --sparsity S, --scan SCAN.json, or --nm")
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model
    teacher = copy.deepcopy(model) if distill else None
    test = load_split("test", data)
    with torch_threads(threads):
        _, dense_acc = evaluate(model, test)
        masks = prune_fine_grained_(model, cfg)
        _, pruned_acc = evaluate(model, test)
        if finetune_epochs:
            finetune(
                model, load_split("train", data), FinetuneConfig(finetune_epochs, lr), masks.apply_, teacher=teacher
            )
        _, final_acc = evaluate(model, test)
    report = masks.report(model)
    save_checkpoint(out, model, {"pruning": {"config": cfg.to_dict(), **report.to_dict()},
                                 "metrics": {"test_acc": final_acc}})  # fmt: skip
    save_artifact(Path(f"{out}.masks"), masks.state(), {"layers": list(masks.masks)}, kind="masks")
    print(
        f"sparsity {report.sparsity:.1%}: test accuracy dense {dense_acc:.2%}, pruned {pruned_acc:.2%}, "
        f"after {finetune_epochs} fine-tuning epoch(s) {final_acc:.2%}; size {report.sparse_bytes / 1024:.1f} KiB "
        f"sparse vs {report.dense_bytes / 1024:.1f} KiB dense ({report.sparse_bytes / report.dense_bytes:.1%})"
    )
