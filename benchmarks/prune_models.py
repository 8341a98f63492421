"""Prune the reference models and write benchmarks/results/pruning.md (+ pruning_sensitivity.html).

Sections (default: all, in this order):
  fine     course Lab 1 on vgg: sensitivity scan (val images), per-layer sparsities chosen from the scan for
           <= 25% of the dense size (bitmask encoding counted), masked fine-tuning.
  channel  leanml channel pruning of vgg, resnet, mobilenetv2 at 30% uniform and at half the MACs
           (L2 importance, the lab's criterion; at half the MACs channel counts are rounded to multiples of 8),
           then fine-tuning.
  peers    Torch-Pruning (MetaPruner, group L2 magnitude) at the same 30% ratio (no rounding), ignored classifier
           and fine-tuning budget.
  latency  every dense and pruned model timed with leanml's one latency helper at batch 1 and 32
           (run it on an otherwise idle machine; --fresh-latency re-measures).

Resumable: rows are cached as JSON in --cache (default runs/prune_bench/), pruned models as checkpoints
there; the results file is rewritten after every row.

Run: .venv/bin/python benchmarks/prune_models.py [--sections fine,channel,peers,latency] [--models vgg]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from _rows import Row, RowRunner, log, names
from safetensors.torch import load_file, save_file
from torch import nn

from leanml.artifact import atomic_write
from leanml.data import ImageSet, load_split
from leanml.executor import ExecutorConfig
from leanml.profile import machine_summary, model_latency, profile_model
from leanml.profile.machine import load_averages
from leanml.prune import ChannelPruneConfig, FineGrainedConfig, prune_channels_, prune_fine_grained_
from leanml.prune.sensitivity import (
    SensitivityConfig,
    choose_sparsities_for_size,
    scan_sensitivity,
    sensitivity_report,
)
from leanml.quant.bn_fold import fold_bn
from leanml.threads import torch_threads
from leanml.train import evaluate, load_checkpoint, load_model, save_checkpoint
from leanml.train.finetune import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parent
BASELINES = ROOT / "baselines"
MODELS = ("vgg", "resnet", "mobilenetv2")
SECTIONS = ("fine", "channel", "peers", "latency")
CHANNEL_SETTINGS: dict[str, dict[str, Any]] = {"r30": {"ratio": 0.3}, "mac50": {"target_macs": 0.5, "round_to": 8}}
FINE_TARGET_SIZE, FINE_EPOCHS, FINE_GOAL = 0.25, 5, 0.005
CHANNEL_EPOCHS, LR, TRAIN_BATCH = 3, 0.01, 128
SPEEDUP_GOAL, HALF_MAC_GOAL = 1.8, 0.01
SCAN_GRID, SCAN_VAL = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9], 2000
BATCHES = (1, 32)
LATENCY_SWEEPS = 3
SENSITIVITY = "pruning_sensitivity.html"  # the fine section's scan curves, beside the results file


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def ok(cond: bool) -> str:
    return "met" if cond else "**MISSED**"


# ---------------------------------------------------------------- rows


def row_dense(name: str, test: ImageSet) -> dict[str, Any]:
    model = load_model(BASELINES / name)
    prof = profile_model(model, measure=False)
    return {"test_acc": evaluate(model, test)[1], "params": prof.params, "macs": prof.macs}


def row_fine(test: ImageSet, cache: Path, report_path: Path) -> dict[str, Any]:
    ckpt = BASELINES / "vgg"
    cfg = SensitivityConfig(SCAN_GRID, SCAN_VAL, ExecutorConfig(backend="serial"))
    t0 = time.perf_counter()
    val = load_split("val", subset=SCAN_VAL)  # the seeded sample the scan loaded itself before issue 17
    base, scan = scan_sensitivity(ckpt, cfg, val, progress=sys.stderr.isatty())
    t_scan = time.perf_counter() - t0
    model = load_model(ckpt)
    dense_acc = evaluate(model, test)[1]
    weights = {n.removesuffix(".weight"): p.numel() for n, p in model.named_parameters() if n.endswith(".weight")}
    numels = {k: weights[k] for k in scan}
    other = 32 * sum(p.numel() for p in model.parameters()) - 32 * sum(numels.values())
    chosen = choose_sparsities_for_size(scan, base, numels, other, FINE_TARGET_SIZE)
    masks = prune_fine_grained_(model, FineGrainedConfig(sparsity=chosen))
    pruned_acc = evaluate(model, test)[1]
    t0 = time.perf_counter()
    finetune(model, load_split("train"), FinetuneConfig(FINE_EPOCHS, LR, TRAIN_BATCH), masks.apply_,
             progress=sys.stderr.isatty())  # fmt: skip
    t_ft = time.perf_counter() - t0
    rep = masks.report(model)
    doc = sensitivity_report(base, scan, "vgg sensitivity scan (Fashion-MNIST validation, one layer at a time)")
    doc.add_heading(f"Per-layer sparsity chosen for {FINE_TARGET_SIZE:.0%} of the dense size")
    doc.add_table(["layer", "sparsity", "weights"], [[k, f"{v:.0%}", f"{numels[k]:,}"] for k, v in chosen.items()])
    doc.save(report_path)
    save_checkpoint(cache / "ckpt" / "fine-vgg", model, {"pruning": rep.to_dict()})
    return {
        "scan_base": base, "scan": {k: {str(s): a for s, a in c.items()} for k, c in scan.items()},
        "chosen": chosen, "dense_acc": dense_acc, "pruned_acc": pruned_acc, "final_acc": evaluate(model, test)[1],
        "sparsity": rep.sparsity, "sparse_bytes": rep.sparse_bytes, "dense_bytes": rep.dense_bytes,
        "layers": [{"name": r.name, "sparsity": r.sparsity, "encoding": r.size.best} for r in rep.layers],
        "epochs": FINE_EPOCHS, "scan_s": t_scan, "finetune_s": t_ft,
    }  # fmt: skip


def _finetune_and_measure(model: nn.Module, test: ImageSet) -> tuple[float, float, float]:
    pruned_acc = evaluate(model, test)[1]
    t0 = time.perf_counter()
    finetune(model, load_split("train"), FinetuneConfig(CHANNEL_EPOCHS, LR, TRAIN_BATCH), progress=sys.stderr.isatty())
    return pruned_acc, evaluate(model, test)[1], time.perf_counter() - t0


def row_channel(name: str, setting: str, test: ImageSet, cache: Path) -> dict[str, Any]:
    model = load_model(BASELINES / name)
    cfg = ChannelPruneConfig(importance="l2", **CHANNEL_SETTINGS[setting])
    t0 = time.perf_counter()
    kept = prune_channels_(model, cfg)
    t_prune = time.perf_counter() - t0
    pruned_acc, final_acc, t_ft = _finetune_and_measure(model, test)
    prof = profile_model(model, measure=False)
    save_checkpoint(cache / "ckpt" / f"channel-{name}-{setting}", model, {"pruning": {"channel": cfg.to_dict()}})
    widths = {k: len(v) for k, v in kept.items()}
    return {"config": cfg.to_dict(), "pruned_acc": pruned_acc, "final_acc": final_acc, "params": prof.params,
            "macs": prof.macs, "widths": widths, "prune_s": t_prune, "finetune_s": t_ft}  # fmt: skip


def tp_prune(model: nn.Module) -> nn.Module:
    """Torch-Pruning MetaPruner with group L2 magnitude at 30%, classifier ignored, no rounding (as leanml r30)."""
    import torch_pruning as tp

    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    pruner = tp.pruner.MetaPruner(
        model, torch.zeros(1, 1, 28, 28), importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=CHANNEL_SETTINGS["r30"]["ratio"], ignored_layers=[last],
    )  # fmt: skip
    pruner.step()
    return model


def row_peer(name: str, test: ImageSet, cache: Path) -> dict[str, Any]:
    import torch_pruning as tp

    model = load_model(BASELINES / name)
    t0 = time.perf_counter()
    tp_prune(model)
    t_prune = time.perf_counter() - t0
    pruned_acc, final_acc, t_ft = _finetune_and_measure(model, test)
    prof = profile_model(model, measure=False)
    path = cache / "ckpt" / f"tp-{name}-r30.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp)))
    return {"version": tp.__version__, "pruned_acc": pruned_acc, "final_acc": final_acc, "params": prof.params,
            "macs": prof.macs, "prune_s": t_prune, "finetune_s": t_ft}  # fmt: skip


def load_pruned(key: str, cache: Path) -> nn.Module:
    """A model of the benchmark by row key: dense baselines, leanml checkpoints, Torch-Pruning re-pruned + weights."""
    if key.startswith("dense-"):
        return load_model(BASELINES / key.removeprefix("dense-"))
    if key.startswith("tp-"):
        model = tp_prune(load_model(BASELINES / key.split("-")[1]))  # deterministic: same weights, same choice
        model.load_state_dict(load_file(str(cache / "ckpt" / f"{key}.safetensors")))
        return model.eval()
    return load_checkpoint(cache / "ckpt" / key).model


def inference_form(model: nn.Module) -> nn.Module:
    """How a CPU deployment runs the model: batch norms folded into the convs, channels-last activations."""
    return fold_bn(model.eval()).eval().to(memory_format=torch.channels_last)


def row_latency(keys: list[str], args: argparse.Namespace) -> dict[str, Any]:
    load_before, threads = load_averages()[0], args.threads
    models = {key: inference_form(load_pruned(key, args.cache)) for key in keys}
    sweeps: dict[str, dict[str, list[dict[str, Any]]]] = {k: {str(b): [] for b in BATCHES} for k in keys}
    for _ in range(LATENCY_SWEEPS):  # interleaved sweeps: slow drifts of the machine hit every model alike
        for key, model in models.items():
            for b in BATCHES:
                stats = model_latency(model, (1, 28, 28), b, threads, repeats=300 if b == 1 else 60)
                sweeps[key][str(b)].append(stats.to_dict())
    out: dict[str, Any] = {}
    for key in keys:
        out[key] = {}
        for b, runs in sweeps[key].items():
            best = sorted(runs, key=lambda r: r["median_ms"])[len(runs) // 2]  # the sweep with the median median
            out[key][b] = {**best, "sweep_medians_ms": [r["median_ms"] for r in runs],
                           "median_ms": statistics.median(r["median_ms"] for r in runs)}  # fmt: skip
        log(f"  latency {key}: " + ", ".join(f"b={b} {v['median_ms']:.3f} ms" for b, v in out[key].items()))
    return {"models": out, "load_average": [load_before, load_averages()[0]]}


# ---------------------------------------------------------------- report


def _lat(rows: dict[str, dict], key: str, b: int) -> float | None:
    entry = rows.get("latency", {}).get("models", {}).get(key, {}).get(str(b))
    return None if entry is None else float(entry["median_ms"])


def _lat_cell(rows: dict[str, dict], key: str, base_key: str, b: int) -> str:
    t, base = _lat(rows, key, b), _lat(rows, base_key, b)
    if t is None or base is None:
        return "pending"
    return f"{base:.2f} → {t:.2f} ms ({base / t:.2f}x)"


def render(rows: dict[str, dict], planned: list[str], args: argparse.Namespace) -> str:
    missing = [k for k in planned if k not in rows]
    lat_threads = rows.get("latency", {}).get("threads", args.threads)
    load = rows.get("latency", {}).get("load_average")
    load_note = (f" (1-minute load average {load[0]:.1f} → {load[1]:.1f} on 2 cores while timing"
                 f"{'; other jobs were running, so treat the speedups as rough' if max(load) > 1.5 else ''})"
                 if load else "")  # fmt: skip
    lines = [
        "# Pruning benchmark (Fashion-MNIST)",
        "",
        "Produced by `benchmarks/prune_models.py` from the float baselines in `benchmarks/baselines/`; every number "
        "is measured (rows cached in the cache folder, this file regenerated after each row).",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/prune_models.py --threads {args.threads}`; "
        f"this file was last written by `{' '.join(['.venv/bin/python', *sys.argv])}`",
        "",
        f"- machine: {machine_summary()}",
        f"- training threads {args.threads}; latency: torch eager fp32 in inference form (BN folded into the convs, "
        f"channels-last), {lat_threads} thread(s), leanml's one latency helper: median of 300 (b=1) / 60 (b=32) timed "
        f"calls after warm-up, in {LATENCY_SWEEPS} interleaved sweeps over all models, the median of the sweeps' "
        "medians; measured after all training finished" + load_note,
        f"- fine-tuning: SGD momentum 0.9, lr {LR}, cosine, batch {TRAIN_BATCH}, shift+flip, 55k train images; "
        f"accuracy on the full 10k test set; sensitivity scan on {SCAN_VAL} validation images",
        f"- rows still missing: {', '.join(missing) if missing else 'none (run complete)'}",
        "",
        "## Dense baselines",
        "",
        "| model | test acc | params | MACs | fp32 size | latency b=1 | latency b=32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in MODELS:
        r = rows.get(f"dense-{m}")
        if r:
            b1, b32 = _lat(rows, f"dense-{m}", 1), _lat(rows, f"dense-{m}", 32)
            lines.append(f"| {m} | {pct(r['test_acc'])} | {r['params']:,} | {r['macs'] / 1e6:.2f} M "
                         f"| {r['params'] * 4 / 1024:.0f} KiB | {'pending' if b1 is None else f'{b1:.2f} ms'} "
                         f"| {'pending' if b32 is None else f'{b32:.2f} ms'} |")  # fmt: skip
    f = rows.get("fine-vgg")
    if f:
        size = f["sparse_bytes"] / f["dense_bytes"]
        drop = f["dense_acc"] - f["final_acc"]
        lines += [
            "",
            "## Fine-grained magnitude pruning of vgg (course Lab 1)",
            "",
            f"Per-layer sparsities chosen from the sensitivity scan (greedy: least scanned accuracy lost per bit "
            f"saved) for ≤ {FINE_TARGET_SIZE:.0%} of the dense fp32 size; each pruned layer stored in its smallest "
            "honest encoding (bitmask: 1 bit per weight + fp32 nonzeros, or CSR with index bits), everything else "
            f"dense fp32. Masks re-applied after every optimizer step. Goal: ≤ 25% size, ≤ 0.5 pt drop after "
            f"≤ 5 epochs. Curves: `benchmarks/results/pruning_sensitivity.html`.",
            "",
            "| dense acc | dense size | sparsity | sparse size | size vs dense | after pruning | after fine-tuning "
            "| Δ pt | epochs | goal |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {pct(f['dense_acc'])} | {f['dense_bytes'] / 1024:.1f} KiB | {f['sparsity']:.1%} "
            f"| {f['sparse_bytes'] / 1024:.1f} KiB | {size:.1%} | {pct(f['pruned_acc'])} | {pct(f['final_acc'])} "
            f"| {-100 * drop:+.2f} | {f['epochs']} | {ok(size <= FINE_TARGET_SIZE and drop <= FINE_GOAL + 1e-9)} |",
            "",
            "Sensitivity scan (validation accuracy with only that layer pruned; dense "
            f"{pct(f['scan_base'])}) and the chosen sparsity:",
            "",
            "| layer | " + " | ".join(f"{float(s):.0%}" for s in SCAN_GRID) + " | chosen | encoding |",
            "|---|" + "---|" * (len(SCAN_GRID) + 2),
        ]
        enc = {layer["name"]: layer["encoding"] for layer in f["layers"]}
        for layer, curve in f["scan"].items():
            cells = " | ".join(pct(curve.get(str(s))) for s in SCAN_GRID)
            lines.append(f"| {layer} | {cells} | {f['chosen'][layer]:.0%} | {enc.get(layer, '—')} |")
    ch = [(m, s) for m in MODELS for s in CHANNEL_SETTINGS if f"channel-{m}-{s}" in rows]
    if ch:
        lines += [
            "",
            "## Channel pruning (physically smaller dense models)",
            "",
            f"leanml `prune_channels_`: L2 importance, channels reordered by importance, coupled channels "
            f"(residual adds, depthwise) removed together, classifier kept; {CHANNEL_EPOCHS} fine-tuning epochs. "
            f"`r30` removes 30% of every prunable layer's channels; `mac50` finds the uniform ratio that keeps ≤ 50% "
            "of the MACs, with kept channel counts rounded to multiples of 8 (SIMD-friendly widths). "
            "Latency: baseline → pruned (measured speedup). Goal (vgg, half MACs): "
            f"≥ {SPEEDUP_GOAL}x measured at batch 32 and ≤ 1 pt accuracy loss.",
            "",
            "| model | setting | dense acc | after pruning | after fine-tuning | Δ pt | params | MACs "
            "| latency b=1 | latency b=32 | goal |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m, s in ch:
            r, d = rows[f"channel-{m}-{s}"], rows[f"dense-{m}"]
            goal = "—"
            if m == "vgg" and s == "mac50":
                t, base = _lat(rows, f"channel-{m}-{s}", 32), _lat(rows, f"dense-{m}", 32)
                speed = None if t is None or base is None else base / t
                goal = (
                    "pending"
                    if speed is None
                    else ok(speed >= SPEEDUP_GOAL and d["test_acc"] - r["final_acc"] <= HALF_MAC_GOAL + 1e-9)
                )
            key, base_key = f"channel-{m}-{s}", f"dense-{m}"
            lines.append(
                f"| {m} | {s} | {pct(d['test_acc'])} | {pct(r['pruned_acc'])} | {pct(r['final_acc'])} "
                f"| {100 * (r['final_acc'] - d['test_acc']):+.2f} | {r['params']:,} ({r['params'] / d['params']:.2f}x) "
                f"| {r['macs'] / 1e6:.2f} M ({r['macs'] / d['macs']:.2f}x) | {_lat_cell(rows, key, base_key, 1)} "
                f"| {_lat_cell(rows, key, base_key, 32)} | {goal} |"
            )  # fmt: skip
    peers = [m for m in MODELS if f"tp-{m}-r30" in rows]
    if peers:
        version = rows[f"tp-{peers[0]}-r30"].get("version", "?")
        lines += [
            "",
            f"## Side by side with Torch-Pruning {version} (30% of channels, same fine-tuning)",
            "",
            f"Torch-Pruning `MetaPruner` with `GroupMagnitudeImportance(p=2)`, `pruning_ratio=0.3`, "
            f"classifier ignored; leanml the `r30` rows above. Both fine-tuned by the same "
            f"loop for {CHANNEL_EPOCHS} epochs. Goal: leanml at least as accurate and at least as fast.",
            "",
            "| model | tool | after pruning | after fine-tuning | params | MACs | latency b=1 | latency b=32 | goal |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m in peers:
            ours, theirs = rows.get(f"channel-{m}-r30"), rows[f"tp-{m}-r30"]
            verdict = "pending"
            lat = [(_lat(rows, f"channel-{m}-r30", b), _lat(rows, f"tp-{m}-r30", b)) for b in BATCHES]
            if ours and all(a is not None and t is not None for a, t in lat):
                faster = all(a <= t * 1.03 for a, t in lat if a is not None and t is not None)  # 3% timing noise
                verdict = ok(ours["final_acc"] >= theirs["final_acc"] and faster)
            for tool, r, key in (("leanml", ours, f"channel-{m}-r30"), ("Torch-Pruning", theirs, f"tp-{m}-r30")):
                if r is None:
                    continue
                lines.append(
                    f"| {m} | {tool} | {pct(r['pruned_acc'])} | {pct(r['final_acc'])} | {r['params']:,} "
                    f"| {r['macs'] / 1e6:.2f} M | {_lat_cell(rows, key, f'dense-{m}', 1)} "
                    f"| {_lat_cell(rows, key, f'dense-{m}', 32)} | {verdict if tool == 'leanml' else ''} |"
                )
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- driver


def plan(sections: list[str], models: list[str], test: ImageSet, args: argparse.Namespace) -> list[Row]:
    """The rows in run order: the dense baselines, then each section's; latency times every planned model."""
    out = [Row(f"dense-{m}", lambda rows, m=m: row_dense(m, test)) for m in models]
    for section in sections:
        if section == "fine" and "vgg" in models:
            out.append(Row("fine-vgg", lambda rows: row_fine(test, args.cache, ROOT / "results" / SENSITIVITY)))
        elif section == "channel":
            out.extend(Row(f"channel-{m}-{s}", lambda rows, m=m, s=s: row_channel(m, s, test, args.cache))
                       for m in models for s in CHANNEL_SETTINGS)  # fmt: skip
        elif section == "peers":
            out.extend(Row(f"tp-{m}-r30", lambda rows, m=m: row_peer(m, test, args.cache)) for m in models)
        elif section == "latency":
            out.append(Row("latency", lambda rows: {"threads": args.threads, **row_latency(models_of(out), args)}))
    return out


def models_of(planned: list[Row]) -> list[str]:
    """The keys of the planned rows that are models (dense, leanml channel-pruned, Torch-Pruning), in plan order."""
    return [r.key for r in planned if r.key.split("-")[0] in ("dense", "channel", "tp")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=ROOT.parent / "runs" / "prune_bench")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "pruning.md")
    parser.add_argument("--fresh", action="store_true", help="recompute rows even if cached")
    parser.add_argument("--fresh-latency", action="store_true", help="re-measure latency")
    args = parser.parse_args()
    sections, models = names(args.sections, SECTIONS, "section"), names(args.models, MODELS, "model")
    test = load_split("test")
    todo = plan(sections, models, test, args)
    planned = [row.key for row in todo]
    runner = RowRunner(args.cache, args.out, lambda rows: render(rows, planned, args))
    rows = {} if args.fresh else runner.cached(lambda key, row: not (args.fresh_latency and key == "latency"))
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.manual_seed(0)
    with torch_threads(args.threads):
        runner.run(todo, rows)


if __name__ == "__main__":
    main()
