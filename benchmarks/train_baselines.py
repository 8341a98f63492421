"""Train the reference models on Fashion-MNIST and write benchmarks/results/baselines.md.

Stages (default: both):
  train    train each model into runs/baselines/<model> (resumes an unfinished run,
           skips a finished one), then export a slim copy (no optimizer state) to
           benchmarks/baselines/<model>: the starting point of pruning, quantization
           and deploy benchmarks.
  report   profile each exported baseline (params, MACs, peak activation memory,
           latency at batch 1 and 32) and write the results file.

Run: .venv/bin/python benchmarks/train_baselines.py [--stage train|report|all] [--models vgg,resnet]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _rows import log, write_text

from leanml.profile import machine_summary, profile_model
from leanml.train import TrainConfig, load_checkpoint, save_checkpoint, train

ROOT = Path(__file__).resolve().parent
WORK = ROOT.parent / "runs" / "baselines"
EXPORT = ROOT / "baselines"
RESULTS = ROOT / "results" / "baselines.md"
# Schedules chosen to reach the targets on 2 CPU cores in minutes per model.
SCHEDULES = {
    "vgg": TrainConfig(model="vgg", epochs=12),
    "resnet": TrainConfig(model="resnet", epochs=12),
    "mobilenetv2": TrainConfig(model="mobilenetv2", epochs=10),
}
TARGETS = {"vgg": 0.92, "resnet": 0.92, "mobilenetv2": 0.90}


def train_stage(models: list[str], threads: int) -> None:
    for name in models:
        work = WORK / name
        weights = work.with_name(name + ".safetensors")
        if weights.exists() and load_checkpoint(work).meta.get("complete"):
            log(f"{name}: already trained: {weights}")
        else:
            train(SCHEDULES[name], out=work, resume=weights.exists(), threads=threads)
        ckpt = load_checkpoint(work)
        meta = {k: ckpt.meta[k] for k in ("train_config", "epoch", "complete", "history", "metrics", "threads")}
        save_checkpoint(EXPORT / name, ckpt.model, meta)
        log(f"{name}: exported {EXPORT / name}.safetensors, test acc {meta['metrics']['test_acc']:.2%}")


def report_stage(models: list[str], threads: int, note: str) -> None:
    rows = []
    for name in models:
        ckpt = load_checkpoint(EXPORT / name)
        prof = profile_model(ckpt.model, batch_sizes=(1, 32), threads=threads)
        rows.append((name, ckpt.meta, prof))
    lines = [
        "# Reference model baselines (Fashion-MNIST)",
        "",
        "Produced by `benchmarks/train_baselines.py`; checkpoints in `benchmarks/baselines/`.",
        "",
        f"- machine: {machine_summary()}",
        f"- training: threads {threads}, batch 128, SGD (Nesterov, momentum 0.9), cosine LR, "
        "weight decay 5e-4, random shift ±2 px + horizontal flip; validation = fixed 5,000 of the 60k train images",
        f"- latency: torch eager fp32, {threads} thread(s), median over repeats after warm-up (p10–p90 spread)",
        "- peak activation memory: batch 1, from tensor lifetimes on the traced graph (leanml's one memory model)",
        *([f"- note: {note}"] if note else []),
        "",
        "| model | target | test acc | val acc | epochs | train time | params | MACs | size fp32 | size int8 "
        "| peak act. fp32 | peak act. int8 | latency b=1 | latency b=32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, meta, prof in rows:
        m = meta["metrics"]
        lat1, lat32 = prof.latency[1], prof.latency[32]
        ok = "met" if m["test_acc"] >= TARGETS[name] else "MISSED"
        lines.append(
            f"| {name} | ≥{TARGETS[name]:.0%} ({ok}) | {m['test_acc']:.2%} | {m['val_acc']:.2%} | {meta['epoch']} "
            f"| {m['train_seconds'] / 60:.1f} min | {prof.params:,} | {prof.macs / 1e6:.2f} M "
            f"| {prof.size_bytes(32) / 1024:.0f} KiB | {prof.size_bytes(8) / 1024:.0f} KiB "
            f"| {prof.peak_activation_bytes(4) / 1024:.0f} KiB | {prof.peak_activation_bytes(1) / 1024:.1f} KiB "
            f"| {lat1.median_ms:.2f} ms ({lat1.p10_ms:.2f}–{lat1.p90_ms:.2f}) "
            f"| {lat32.median_ms:.2f} ms ({lat32.p10_ms:.2f}–{lat32.p90_ms:.2f}) |"
        )
    lines += ["", "Per-epoch validation accuracy:", ""]
    for name, meta, _ in rows:
        accs = ", ".join(f"{r['val_acc']:.2%}" for r in meta["history"])
        lines.append(f"- {name}: {accs}")
    lines.append("")
    text = "\n".join(lines)
    write_text(RESULTS, text)
    print(text)
    print(json.dumps({name: meta["metrics"] for name, meta, _ in rows}, indent=2), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("train", "report", "all"), default="all")
    parser.add_argument("--models", default=",".join(SCHEDULES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="", help="a line of context for the results file")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in SCHEDULES]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; choose from {list(SCHEDULES)}")
    if args.stage in ("train", "all"):
        train_stage(models, args.threads)
    if args.stage in ("report", "all"):
        report_stage(models, args.threads, args.note)


if __name__ == "__main__":
    main()
