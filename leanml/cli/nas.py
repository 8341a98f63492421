"""``leanml nas train|sample|predictor|search|export``: once-for-all NAS from supernet to checkpoint.

Example:
    $ leanml nas train --out runs/nas/supernet --schedule small
    $ leanml nas sample runs/nas/supernet --count 1000 --out runs/nas/samples
    $ leanml nas predictor runs/nas/samples --out runs/nas/predictor --report runs/nas/predictor.html
    $ leanml nas search runs/nas/predictor --max-macs 5e6 --max-sram-kb 48 --out runs/nas/search
    $ leanml nas export runs/nas/supernet --search runs/nas/search --out runs/nas/best
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from leanml.cli.options import (
    ConfigOpt,
    DataOpt,
    JsonOpt,
    OverwriteOpt,
    ProgressOpt,
    ReportOpt,
    ThreadsOpt,
    check_outputs,
    check_writable,
    config_from,
    default_of,
    given,
)
from leanml.data import ImageData, data_argument, load_data
from leanml.errors import LeanmlError
from leanml.nas.export import ExportConfig
from leanml.nas.predictor import PredictorConfig
from leanml.nas.sample import SampleConfig
from leanml.nas.search import SearchConfig
from leanml.nas.train import NasTrainConfig
from leanml.progress import make_console

app = typer.Typer(
    help="Neural architecture search: supernet, accuracy predictor, constrained search, export.", add_completion=False
)


def nas_data(data: Path | None) -> ImageData:
    """The data NAS trains and measures on: ``--data`` (a spec, or Fashion-MNIST's folder); Fashion-MNIST by default."""
    spec, root = data_argument(data)
    return load_data(spec, root=root)


@app.command("train")
def train_cmd(
    context: typer.Context,
    out: Annotated[Path, typer.Option(help="supernet checkpoint to write")] = Path("runs/nas/supernet"),
    schedule: Annotated[str, typer.Option(help="small (minutes), medium (~20 min) or full (hours)")] = "small",
    space: Annotated[Path | None, typer.Option(help="JSON/YAML SpaceConfig (default: the built-in space)")] = None,
    config: ConfigOpt = None,
    train_subset: Annotated[int | None, typer.Option(help="override the schedule's training images")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = default_of(NasTrainConfig, "seed"),
    resume: Annotated[bool, typer.Option(help="continue an interrupted run at --out")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing supernet at --out")] = False,
    report: ReportOpt = None,
    progress: ProgressOpt = True,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train a supernet by progressive shrinking (full → kernel → depth → expand); checkpoint every epoch."""
    from leanml.nas.report import add_training
    from leanml.nas.space import SpaceConfig
    from leanml.nas.train import train_supernet
    from leanml.report import Report

    if config is not None and given(context, "schedule"):
        raise LeanmlError("--schedule and --config both say how to train", "pass one of them")
    check_writable(out, report)
    flags: dict[str, object] = {"seed": seed}
    if space is not None:
        flags["space"] = SpaceConfig.load(space).to_dict()
    if train_subset is not None:
        flags["train_subset"] = train_subset
    base = NasTrainConfig.preset(schedule) if config is None else None
    cfg = config_from(context, NasTrainConfig, config, flags, base=base)
    images = nas_data(data)
    result = train_supernet(cfg, out, images.train, images.val, resume=resume, overwrite=overwrite, threads=threads,
                            progress=progress)  # fmt: skip
    if report is not None:
        doc = Report(f"Supernet: {out}")
        doc.add_text(f"config: {cfg.to_json()}")
        add_training(doc, result.history)
        doc.save(report)
    last = result.history[-1] if result.history else {}
    make_console().print(f"saved {result.checkpoint}")
    print(f"supernet: largest subnet {last.get('val_acc_largest', 0):.2%}, smallest "
          f"{last.get('val_acc_smallest', 0):.2%} validation accuracy; "
          f"{sum(r['seconds'] for r in result.history) / 60:.1f} min training")  # fmt: skip


@app.command("sample")
def sample_cmd(
    context: typer.Context,
    supernet: Annotated[Path, typer.Argument(help="supernet checkpoint")],
    out: Annotated[Path, typer.Option(help="sample file to write")] = Path("runs/nas/samples"),
    count: Annotated[int, typer.Option(help="architectures to measure")] = default_of(SampleConfig, "count"),
    val_images: Annotated[int, typer.Option(help="validation images per architecture")] = default_of(
        SampleConfig, "val_images"
    ),
    calib_images: Annotated[int, typer.Option(help="BN recalibration images per architecture")] = default_of(
        SampleConfig, "calib_images"
    ),
    seed: Annotated[int, typer.Option(help="which architectures are drawn")] = default_of(SampleConfig, "seed"),
    backend: Annotated[str, typer.Option(help="serial, local or ray")] = default_of(SampleConfig, "backend"),
    workers: Annotated[int, typer.Option(help="worker processes (local backend)")] = default_of(
        SampleConfig, "workers"
    ),
    address: Annotated[str | None, typer.Option(help="ray cluster address (ray backend)")] = default_of(
        SampleConfig, "address"
    ),
    resume: Annotated[bool, typer.Option(help="extend an existing sample file")] = False,
    config: ConfigOpt = None,
    progress: ProgressOpt = True,
    data: DataOpt = None,
) -> None:
    """Measure random subnets (validation accuracy after BN recalibration): the predictor's training data."""
    from leanml.nas.sample import sample_architectures

    flags = {"count": count, "val_images": val_images, "calib_images": calib_images, "seed": seed, "backend": backend,
             "workers": workers, "address": address}  # fmt: skip
    cfg = config_from(context, SampleConfig, config, flags)
    check_writable(out)
    images = nas_data(data)
    samples = sample_architectures(supernet, cfg, out, images.train, images.val, resume=resume, progress=progress)
    accs = [r["val_acc"] for r in samples.records]
    print(f"{len(accs)} subnets measured: accuracy {min(accs):.2%} .. {max(accs):.2%}; wrote {out}")


@app.command("predictor")
def predictor_cmd(
    context: typer.Context,
    samples: Annotated[Path, typer.Argument(help="sample file from `leanml nas sample`")],
    out: Annotated[Path, typer.Option(help="predictor to write")] = Path("runs/nas/predictor"),
    hidden: Annotated[int, typer.Option(help="MLP width")] = default_of(PredictorConfig, "hidden"),
    layers: Annotated[int, typer.Option(help="MLP hidden layers")] = default_of(PredictorConfig, "layers"),
    epochs: Annotated[int, typer.Option(help="training epochs")] = default_of(PredictorConfig, "epochs"),
    holdout: Annotated[float, typer.Option(help="held-out fraction for the reported error")] = default_of(
        PredictorConfig, "holdout"
    ),
    seed: Annotated[int, typer.Option(help="split and init seed")] = default_of(PredictorConfig, "seed"),
    overwrite: OverwriteOpt = False,
    report: ReportOpt = None,
    config: ConfigOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Train the accuracy predictor (MLP on the one-hot encoding); print its held-out error."""
    from leanml.nas.predictor import train_predictor
    from leanml.nas.report import add_predictor
    from leanml.nas.sample import SampleSet
    from leanml.report import Report

    check_outputs(out, overwrite=overwrite)
    check_writable(report)
    data = SampleSet.load(samples)
    flags = {"hidden": hidden, "layers": layers, "epochs": epochs, "holdout": holdout, "seed": seed}
    cfg = config_from(context, PredictorConfig, config, flags)
    model = train_predictor(data.pairs(), data.space, cfg, progress=progress)
    model.save(out)
    if report is not None:
        doc = Report(f"Accuracy predictor: {samples}")
        add_predictor(doc, model)
        doc.save(report)
    m = model.metrics
    print(f"held-out ({m['n_holdout']:.0f} of {m['n_holdout'] + m['n_train']:.0f}): MAE {m['mae_points']:.2f} points, "
          f"RMSE {m['rmse_points']:.2f}, Kendall tau {m['kendall_tau']:.3f}, Spearman {m['spearman_rho']:.3f}; "
          f"wrote {out}")  # fmt: skip


@app.command("search")
def search_cmd(
    context: typer.Context,
    predictor: Annotated[Path, typer.Argument(help="accuracy predictor from `leanml nas predictor`")],
    out: Annotated[Path, typer.Option(help="search state / result to write")] = Path("runs/nas/search"),
    method: Annotated[str, typer.Option(help="evolution or random")] = default_of(SearchConfig, "method"),
    max_macs: Annotated[float | None, typer.Option(help="MACs limit, e.g. 5e6")] = None,
    max_params: Annotated[float | None, typer.Option(help="parameter limit")] = None,
    max_sram_kb: Annotated[float | None, typer.Option(help="peak SRAM limit in KiB (int8 activations)")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="latency limit (ms, PyTorch table)")] = None,
    latency_table: Annotated[
        Path | None, typer.Option(help="latency table (built at <out>.latency if missing)")
    ] = None,
    population: Annotated[int, typer.Option(help="population size")] = default_of(SearchConfig, "population"),
    generations: Annotated[int, typer.Option(help="generations (random search: same budget)")] = default_of(
        SearchConfig, "generations"
    ),
    parent_ratio: Annotated[float, typer.Option(help="fraction kept as parents")] = default_of(
        SearchConfig, "parent_ratio"
    ),
    mutation_ratio: Annotated[float, typer.Option(help="fraction of children made by mutation")] = default_of(
        SearchConfig, "mutation_ratio"
    ),
    mutate_prob: Annotated[float, typer.Option(help="per-gene mutation probability")] = default_of(
        SearchConfig, "mutate_prob"
    ),
    seed: Annotated[int, typer.Option(help="random seed")] = default_of(SearchConfig, "seed"),
    resume: Annotated[bool, typer.Option(help="continue an interrupted search at --out")] = False,
    report: ReportOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    progress: ProgressOpt = True,
    threads: ThreadsOpt = None,
) -> None:
    """Most accurate architecture (predicted) within every given limit; Pareto fronts into --report."""
    from leanml.nas.latency import LatencyConfig, LatencyTable, build_table
    from leanml.nas.predictor import AccuracyModel
    from leanml.nas.report import add_search
    from leanml.nas.search import format_resource, search
    from leanml.report import Report

    check_writable(out, report, latency_table)
    sram = max_sram_kb * 1024 if max_sram_kb is not None else None
    asked = {"macs": max_macs, "params": max_params, "peak_sram": sram, "latency_ms": max_latency_ms}
    flags = {"method": method, "limits": {k: v for k, v in asked.items() if v is not None}, "population": population,
             "generations": generations, "parent_ratio": parent_ratio, "mutation_ratio": mutation_ratio,
             "mutate_prob": mutate_prob, "seed": seed}  # fmt: skip
    explicit = {"limits": ("max_macs", "max_params", "max_sram_kb", "max_latency_ms")}
    cfg = config_from(context, SearchConfig, config, flags, explicit)
    method, limits = cfg.method, cfg.limits
    model = AccuracyModel.load(predictor)
    table = None
    if latency_table is not None and latency_table.with_suffix(".json").exists():
        table = LatencyTable.load(latency_table)
    elif "latency_ms" in limits or latency_table is not None:
        table = build_table(model.space, LatencyConfig(threads=threads or 1), progress=progress)
        table.save(latency_table or out.with_name(out.name + ".latency"))
    result = search(model, cfg, latency=table, out=out, resume=resume, progress=progress)
    if report is not None:
        doc = Report(f"{method} search: {', '.join(f'{k} <= {format_resource(k, v)}' for k, v in limits.items())}")
        add_search(doc, {method: result})
        doc.save(report)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    e = result.best.efficiency
    costs = ", ".join(format_resource(r, v) for r, v in e.to_dict().items() if v is not None)
    print(f"best: {result.best.arch}  predicted accuracy {result.best.accuracy:.2%}  ({costs}); "
          f"{result.evaluated} candidates; wrote {out}")  # fmt: skip


@app.command("export")
def export_cmd(
    context: typer.Context,
    supernet: Annotated[Path, typer.Argument(help="supernet checkpoint")],
    out: Annotated[Path, typer.Option(help="leanml checkpoint to write")],
    search_result: Annotated[Path | None, typer.Option("--search", help="take the best of this search")] = None,
    arch: Annotated[Path | None, typer.Option(help="or an architecture JSON file")] = None,
    calib_images: Annotated[int, typer.Option(help="BN recalibration images")] = default_of(
        ExportConfig, "calib_images"
    ),
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    data: DataOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Extract a subnet, recalibrate BN, measure it, and save a normal leanml checkpoint."""
    from leanml.nas.export import export_subnet
    from leanml.nas.search import format_resource, load_search
    from leanml.nas.space import Arch

    if (search_result is None) == (arch is None):
        raise LeanmlError("export needs exactly one of --search SEARCH or --arch ARCH.json", "pass one of them")
    check_outputs(out, overwrite=overwrite)
    space = None
    if arch is not None:
        if not arch.is_file():
            raise LeanmlError(f"architecture file not found: {arch}", "check the path")
        chosen = Arch.from_json(arch.read_text())
    else:
        assert search_result is not None
        found = load_search(search_result)
        chosen, space = found.best.arch, found.space
    cfg = config_from(context, ExportConfig, config, {"calib_images": calib_images})
    result = export_subnet(supernet, chosen, out, nas_data(data), cfg, threads, space)
    e = result.efficiency
    print(f"{chosen}: val {result.metrics['val_acc']:.2%}, test {result.metrics['test_acc']:.2%}; "
          f"{format_resource('macs', e.macs)} MACs, {format_resource('params', e.params)} params, peak SRAM "
          f"{format_resource('peak_sram', e.peak_sram)} (int8); wrote {result.checkpoint}")  # fmt: skip
