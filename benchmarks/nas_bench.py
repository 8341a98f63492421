"""Once-for-all NAS on Fashion-MNIST end to end; writes benchmarks/results/nas.md (issue 8's Measure section).

Stages (default: all, in this order; each is cached in --work and skipped when done, so a run resumes):
  train      supernet by progressive shrinking (--schedule small|medium|full), checkpoint per epoch (resumable)
  sample     --samples random subnets measured on the validation split after BN recalibration (executor)
  predictor  3 x 400 MLP; held-out MAE (goal <= 0.5 points) and rank correlation, beside a predict-the-mean
             baseline and MACs as a zero-cost proxy
  latency    per-block PyTorch latency table, validated against end-to-end latency of random subnets
  search     random vs evolution with the same budget under three MACs + peak-SRAM limit sets; the top
             candidates of each are measured after BN recalibration (goal: evolution >= random in every set)
  compare    the hand-designed mobilenetv2 (benchmarks/baselines/mobilenetv2) vs the best subnet found within
             its MACs and peak SRAM, both fine-tuned the same way; the subnet's int8 peak SRAM from `profile`
             and from the deploy planner (they must agree)
  report     write the results file

Run:   .venv/bin/python benchmarks/nas_bench.py [--stages train,sample,...] [--schedule small] [--samples 1000]
       (the committed results: --schedule medium --samples 500, ~1.5 h on 2 idle cores)
Smoke: .venv/bin/python benchmarks/nas_bench.py --tiny   (tiny space and sizes; writes runs/nas_bench_tiny/nas.md)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _rows import log, write_text

from leanml.artifact import artifact_paths
from leanml.data import ImageSet, load_split
from leanml.models import build_model
from leanml.nas import (
    AccuracyModel,
    Arch,
    EfficiencyModel,
    LatencyConfig,
    LatencyTable,
    NasTrainConfig,
    PredictorConfig,
    SampleConfig,
    SampleSet,
    SearchConfig,
    SpaceConfig,
    build_table,
    get_subnet,
    sample_architectures,
    search,
    train_predictor,
    train_supernet,
)
from leanml.nas.checkpoint import load_supernet
from leanml.nas.data import image_batches, recalibrate_bn, resize_images
from leanml.nas.latency import validate_table
from leanml.nas.sample import measure_archs
from leanml.nas.search import format_resource
from leanml.nas.stats import kendall_tau
from leanml.profile import machine_summary, profile_model
from leanml.threads import torch_threads
from leanml.train import evaluate, load_checkpoint
from leanml.train.finetune import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parent
STAGES = ("train", "sample", "predictor", "latency", "search", "compare", "report")


@dataclass
class Settings:
    """Sizes of one benchmark run."""

    space: SpaceConfig
    train: NasTrainConfig
    samples: int
    val_images: int
    calib_images: int
    population: int
    generations: int
    top_k: int  # candidates of each search measured after BN recalibration
    limit_sets: dict[str, dict[str, float]]
    finetune_epochs: int
    finetune_subset: int | None
    test_images: int | None
    latency_archs: int
    reference: str  # checkpoint of the hand-designed model
    results: Path
    work: Path


def default_settings(schedule: str, samples: int = 1000) -> Settings:
    return Settings(
        space=SpaceConfig(), train=NasTrainConfig.preset(schedule), samples=samples, val_images=5000, calib_images=2000,
        population=100, generations=100, top_k=5,
        limit_sets={"tight": {"macs": 2e6, "peak_sram": 24 * 1024}, "medium": {"macs": 5e6, "peak_sram": 40 * 1024},
                    "loose": {"macs": 10e6, "peak_sram": 64 * 1024}},
        finetune_epochs=3, finetune_subset=None, test_images=None, latency_archs=20,
        reference=str(ROOT / "baselines" / "mobilenetv2"), results=ROOT / "results" / "nas.md",
        work=ROOT.parent / "runs" / "nas_bench",
    )  # fmt: skip


def tiny_settings() -> Settings:
    space = SpaceConfig(stages=[[8, 1, 2], [16, 1, 2]], extra_depth=1, stem=8, head=16, resolutions=[20, 28],
                        widths=[0.5, 1.0])  # fmt: skip
    work = ROOT.parent / "runs" / "nas_bench_tiny"
    train = NasTrainConfig(space=space.to_dict(), phase_epochs=[1, 1, 1, 1], train_subset=256, val_subset=200,
                           calib_images=100)  # fmt: skip
    return Settings(
        space=space, train=train, samples=16, val_images=200, calib_images=100, population=10, generations=3, top_k=2,
        limit_sets={"tight": {"macs": 3e5, "peak_sram": 10 * 1024}, "loose": {"macs": 1e6, "peak_sram": 24 * 1024}},
        finetune_epochs=1, finetune_subset=512, test_images=500, latency_archs=3, reference="",
        results=work / "nas.md", work=work,
    )  # fmt: skip


class Cache:
    """Stage results as one JSON file, written atomically after every stage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        write_text(self.path, json.dumps(self.data, indent=2))


def stage_train(s: Settings, cache: Cache, threads: int) -> None:
    out = s.work / "supernet"
    if artifact_paths(out)[0].exists() and load_supernet(out).meta.get("complete"):
        log(f"train: done: {out}")
    else:
        # The seeded train/val samples train_supernet loaded itself before issue 17 (its BN-recalibration sample
        # for the per-epoch check is now drawn from this train sample, so that check's figures can move slightly).
        train = load_split("train", subset=s.train.train_subset)
        val = load_split("val", subset=s.train.val_subset)
        train_supernet(s.train, out, train, val, resume=artifact_paths(out)[0].exists(), threads=threads)
    meta = load_supernet(out).meta
    cache.put("train", {"seconds": meta["train_seconds"], "history": meta["history"], "config": s.train.to_dict(),
                        "threads": threads})  # fmt: skip


def sample_config(s: Settings, workers: int) -> SampleConfig:
    return SampleConfig(count=s.samples, val_images=s.val_images, calib_images=s.calib_images, workers=workers,
                        backend="local" if workers > 1 else "serial")  # fmt: skip


def measure_sets(s: Settings) -> tuple[ImageSet, ImageSet]:
    """(BN-recalibration, validation) images of subnet measurements: the seeded samples
    sample_architectures/measure_archs loaded themselves before issue 17, so the figures are unchanged."""
    return load_split("train", subset=s.calib_images), load_split("val", subset=s.val_images)


def stage_sample(s: Settings, cache: Cache, workers: int) -> None:
    out = s.work / "samples"
    t0 = time.perf_counter()
    calib, val = measure_sets(s)
    samples = sample_architectures(s.work / "supernet", sample_config(s, workers), out, calib, val, resume=True)
    cache.put("sample", {"count": len(samples.records), "seconds": time.perf_counter() - t0, "workers": workers})


def stage_predictor(s: Settings, cache: Cache) -> None:
    samples = SampleSet.load(s.work / "samples")
    t0 = time.perf_counter()
    model = train_predictor(samples.pairs(), samples.space, PredictorConfig())
    seconds = time.perf_counter() - t0
    model.save(s.work / "predictor")
    measured = [m for m, _ in model.holdout]
    mean = float(model.predictor.mean)  # the training pairs' mean accuracy
    macs = [samples.records[i]["macs"] for i in model.holdout_index]
    accs = [r["val_acc"] for r in samples.records]
    cache.put("predictor", {
        "metrics": model.metrics, "seconds": seconds,
        "baseline_mean_mae_points": 100 * sum(abs(m - mean) for m in measured) / max(len(measured), 1),
        "baseline_macs_kendall": kendall_tau(macs, measured) if len(measured) > 1 else 0.0,
        "accuracy_range": [min(accs), max(accs)],
    })  # fmt: skip


def stage_latency(s: Settings, cache: Cache) -> None:
    path = s.work / "latency"
    t0 = time.perf_counter()
    table = LatencyTable.load(path) if artifact_paths(path)[0].exists() else build_table(s.space, LatencyConfig())
    table.save(path)
    build_seconds = time.perf_counter() - t0
    archs = [s.space.sample(random.Random(1000 + i)) for i in range(s.latency_archs)]
    check = validate_table(table, s.space, archs, LatencyConfig(repeats=30))
    model = EfficiencyModel(s.space)
    cache.put("latency", {
        "entries": len(table.entries), "build_seconds": build_seconds, "engine": table.meta["engine"],
        "mean_abs_rel_error": check.mean_abs_rel_error, "kendall_tau": check.kendall_tau,
        "baseline_macs_kendall": kendall_tau([model(a).macs for a in archs], check.measured_ms),
        "predicted_ms": check.predicted_ms, "measured_ms": check.measured_ms,
    })  # fmt: skip


def run_search(s: Settings, predictor: AccuracyModel, name: str, method: str, limits: dict[str, float],
               workers: int) -> dict[str, Any]:  # fmt: skip
    cfg = SearchConfig(method=method, limits=limits, population=s.population, generations=s.generations)
    out = s.work / f"search-{name}-{method}"
    t0 = time.perf_counter()
    result = search(predictor, cfg, out=out, resume=True)
    seconds = time.perf_counter() - t0
    top = result.population[: s.top_k]
    accs = measure_archs(s.work / "supernet", [c.arch for c in top], sample_config(s, workers), *measure_sets(s))
    best = max(range(len(top)), key=lambda i: accs[i])
    return {"seconds": seconds, "evaluated": result.evaluated, "predicted_best": result.best.accuracy,
            "measured": accs, "best_measured": accs[best], "best_arch": top[best].arch.to_dict(),
            "best_efficiency": top[best].efficiency.to_dict(), "history": result.history}  # fmt: skip


def stage_search(s: Settings, cache: Cache, workers: int) -> None:
    predictor = AccuracyModel.load(s.work / "predictor")
    rows = dict(cache.data.get("search", {}))
    for name, limits in s.limit_sets.items():
        for method in ("random", "evolution"):
            key = f"{name}/{method}"
            if key not in rows:
                rows[key] = {"limits": limits, **run_search(s, predictor, name, method, limits, workers)}
                cache.put("search", rows)
            log(f"search {key}: measured best {rows[key]['best_measured']:.2%}")


def deploy_int8(model: torch.nn.Module, resolution: int, s: Settings) -> dict[str, Any]:
    """Int8 ``model`` (PTQ-calibrated integer model) through the deploy engine: the planner's peak SRAM, the
    compiled C model's bit-exactness against the integer reference, and its batch-1 latency on 1 thread."""
    from leanml.deploy import DeployConfig, deploy, verify
    from leanml.deploy.planner import plan_memory
    from leanml.profile import measure_latency
    from leanml.quant import QuantSim, convert

    sim = QuantSim.from_model(model.eval())
    sim.calibrate(list(image_batches(load_split("train", subset=256), resolution, 128)))
    imodel = convert(sim)
    dep = deploy(imodel, DeployConfig(input_shape=[1, resolution, resolution]))  # layer by layer: no patch stage
    graph, report = dep.graph, dep.memory
    test = next(image_batches(load_split("test", subset=s.test_images or 1000), resolution, 1000))
    check = verify(dep, imodel, test)
    x = test[:1].numpy()
    c_lat = measure_latency(lambda: dep.model(x), warmup=20, repeats=200, threads=1)
    with torch.no_grad():
        t_lat = measure_latency(lambda: model(test[:1]), warmup=10, repeats=100, threads=1)
    return {"lifetimes_peak": plan_memory(graph, in_place=False).lifetimes.peak_numel, "tflm_arena": report.tflm_bytes,
            "arena_in_place": report.arena_bytes, "verify_images": check.images, "verify_mismatched": check.mismatched,
            "c_latency_ms": c_lat.median_ms, "torch_fp32_latency_ms": t_lat.median_ms}  # fmt: skip


def _finetune_and_test(model: torch.nn.Module, resolution: int, s: Settings) -> dict[str, float]:
    train = resize_images(load_split("train", subset=s.finetune_subset), resolution)
    test = resize_images(load_split("test", subset=s.test_images), resolution)
    before = evaluate(model, test)[1]
    finetune(model, train, FinetuneConfig(epochs=s.finetune_epochs, lr=0.01))
    return {"test_acc_before": before, "test_acc_after": evaluate(model, test)[1]}


def stage_compare(s: Settings, cache: Cache, workers: int, threads: int) -> None:
    if s.reference:
        reference = load_checkpoint(s.reference).model
    else:  # tiny smoke run: a small untrained mobilenetv2 stands in for the baseline
        reference = build_model("mobilenetv2", stem=8, settings=[[1, 8, 1, 1], [4, 16, 1, 2]], head=32)
    prof = profile_model(reference, measure=False)
    limits = {"macs": float(prof.macs), "peak_sram": float(prof.peak_activation_bytes(1))}
    predictor = AccuracyModel.load(s.work / "predictor")
    found = run_search(s, predictor, "reference", "evolution", limits, workers)
    best = Arch.from_dict(found["best_arch"])
    ckpt = load_supernet(s.work / "supernet")
    with torch_threads(threads):
        sub = get_subnet(ckpt.supernet, best)
        recalibrate_bn(sub, image_batches(load_split("train", subset=s.calib_images), best.resolution, 250))
        sub_prof = profile_model(sub, (1, best.resolution, best.resolution), measure=False)
        planner = deploy_int8(sub, best.resolution, s)
        ref_deploy = deploy_int8(reference, 28, s)
        sub_acc = _finetune_and_test(sub, best.resolution, s)
        ref_acc = _finetune_and_test(reference, 28, s)
    cache.put("compare", {
        "limits": limits, "search": found, "subnet": {**sub_acc, "macs": sub_prof.macs, "params": sub_prof.params,
        "peak_sram_profile": sub_prof.peak_activation_bytes(1), "peak_sram_nas": found["best_efficiency"]["peak_sram"],
        "planner": planner}, "reference": {**ref_acc, "macs": prof.macs, "params": prof.params,
        "peak_sram_profile": prof.peak_activation_bytes(1), "deploy": ref_deploy}, "finetune_epochs": s.finetune_epochs,
    })  # fmt: skip


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def stage_report(s: Settings, cache: Cache, note: str) -> None:
    d = cache.data
    lines = ["# Neural architecture search (once-for-all) on Fashion-MNIST", "",
             "Produced by `benchmarks/nas_bench.py` (issue 8). All accuracies are measured on real images after BN "
             "recalibration unless marked *predicted*.", "", f"- machine: {machine_summary()}",
             f"- space: {json.dumps(s.space.to_dict())}"]  # fmt: skip
    if note:
        lines.append(f"- note: {note}")
    if "train" in d:
        t = d["train"]
        last = t["history"][-1]
        lines += ["", "## Supernet training (progressive shrinking)", "",
                  f"- schedule: phase epochs {t['config']['phase_epochs']} (full, kernel, depth, expand), "
                  f"{t['config']['train_subset'] or 'all'} training images, {t['config']['subnets_per_step']} "
                  f"subnets per step, {t['threads']} thread(s)",
                  f"- time: {t['seconds'] / 60:.1f} min; largest subnet {_pct(last['val_acc_largest'])}, smallest "
                  f"{_pct(last['val_acc_smallest'])} validation accuracy"]  # fmt: skip
    if "sample" in d:
        smp = d["sample"]
        lines += ["", f"Predictor data: {smp['count']} random subnets, each BN-recalibrated on {s.calib_images:,} "
                  f"training images and measured on {s.val_images:,} validation images, in "
                  f"{smp['seconds'] / 60:.1f} min with {smp['workers']} worker process(es)."]  # fmt: skip
    if "predictor" in d:
        p = d["predictor"]
        m = p["metrics"]
        lines += ["", "## Accuracy predictor (3 x 400 MLP on the one-hot encoding)", "",
                  "| figure | predictor | baseline | goal |", "|---|---|---|---|",
                  f"| held-out MAE (points) | {m['mae_points']:.3f} | {p['baseline_mean_mae_points']:.3f} (predict the "
                  f"mean) | ≤ 0.5 ({'met' if m['mae_points'] <= 0.5 else 'MISSED'}) |",
                  f"| Kendall tau | {m['kendall_tau']:.3f} | {p['baseline_macs_kendall']:.3f} (MACs as proxy) | |",
                  f"| Spearman rho | {m['spearman_rho']:.3f} | | |", "",
                  f"{m['n_train']:.0f} training / {m['n_holdout']:.0f} held-out subnets; measured accuracy range "
                  f"{_pct(p['accuracy_range'][0])} .. {_pct(p['accuracy_range'][1])}."]  # fmt: skip
    if "latency" in d:
        lat = d["latency"]
        lines += ["", "## Latency table", "",
                  f"{lat['entries']} per-block entries timed with PyTorch eager ({lat['engine']}, batch 1, 1 thread) "
                  f"in {lat['build_seconds']:.0f} s. Against end-to-end latency of {len(lat['measured_ms'])} random "
                  f"subnets: mean relative error {100 * lat['mean_abs_rel_error']:.1f}%, Kendall tau "
                  f"{lat['kendall_tau']:.3f} (baseline, MACs as proxy: "
                  f"{lat['baseline_macs_kendall']:.3f})."]  # fmt: skip
    if "search" in d:
        lines += ["", "## Random vs evolutionary search (same budget)", "",
                  "| limits | method | candidates | time | predicted best | measured best (top-"
                  f"{s.top_k}) | architecture | MACs | peak SRAM |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for key, r in d["search"].items():
            e = r["best_efficiency"]
            lim = ", ".join(f"{k} ≤ {format_resource(k, v)}" for k, v in r["limits"].items())
            lines.append(f"| {key.split('/')[0]}: {lim} | {key.split('/')[1]} | {r['evaluated']:,} | "
                         f"{r['seconds']:.0f} s | {_pct(r['predicted_best'])} | {_pct(r['best_measured'])} | "
                         f"{Arch.from_dict(r['best_arch'])} | {format_resource('macs', e['macs'])} | "
                         f"{format_resource('peak_sram', e['peak_sram'])} |")  # fmt: skip
        verdicts = []
        for name in s.limit_sets:
            ev, rnd = d["search"].get(f"{name}/evolution"), d["search"].get(f"{name}/random")
            if ev and rnd:
                ok = ev["best_measured"] >= rnd["best_measured"]
                verdicts.append(f"{name}: {'met' if ok else 'MISSED'}")
        lines += ["", f"Measured best = the best of each search's top-{s.top_k} distinct candidates (by predicted "
                  "accuracy), measured after BN recalibration on the validation images; both methods score the same "
                  "number of candidates with the same predictor.", "",
                  f"Goal evolution ≥ random (measured): {'; '.join(verdicts)}."]  # fmt: skip
    if "compare" in d:
        c = d["compare"]
        sub, ref = c["subnet"], c["reference"]
        ok = sub["test_acc_after"] > ref["test_acc_after"]
        lines += ["", "## Searched subnet vs the hand-designed mobilenetv2 (same MACs and peak SRAM budget)", "",
                  f"Limits: the reference's {format_resource('macs', c['limits']['macs'])} MACs and "
                  f"{format_resource('peak_sram', c['limits']['peak_sram'])} int8 peak SRAM; both fine-tuned "
                  f"{c['finetune_epochs']} epoch(s) with the same loop (SGD 0.01, cosine).", "",
                  "| model | MACs | params | peak SRAM int8 | test acc before | test acc after fine-tuning |",
                  "|---|---|---|---|---|---|",
                  f"| mobilenetv2 (baseline) | {format_resource('macs', ref['macs'])} | {ref['params']:,} | "
                  f"{format_resource('peak_sram', ref['peak_sram_profile'])} | {_pct(ref['test_acc_before'])} | "
                  f"{_pct(ref['test_acc_after'])} |",
                  f"| searched subnet {Arch.from_dict(c['search']['best_arch'])} | "
                  f"{format_resource('macs', sub['macs'])} | {sub['params']:,} | "
                  f"{format_resource('peak_sram', sub['peak_sram_profile'])} | {_pct(sub['test_acc_before'])} | "
                  f"{_pct(sub['test_acc_after'])} |", "",
                  f"Goal (searched subnet more accurate): {'met' if ok else 'MISSED'}. Training budgets differ before "
                  "this equal fine-tuning: the baseline checkpoint had its own full training (see "
                  "`benchmarks/results/baselines.md`), the subnet only its share of the supernet's schedule above.",
                  "",
                  f"Peak SRAM of the searched subnet (int8): NAS {sub['peak_sram_nas']:,} B, `profile` "
                  f"{sub['peak_sram_profile']:,} B, deploy planner lifetimes {sub['planner']['lifetimes_peak']:,} B "
                  f"(TFLite-Micro-style arena {sub['planner']['tflm_arena']:,} B; with in-place depthwise "
                  f"{sub['planner']['arena_in_place']:,} B)."]  # fmt: skip
        if "c_latency_ms" in sub["planner"] and "deploy" in ref:
            sd, rd = sub["planner"], ref["deploy"]
            lines += ["", "Hand-off to the deploy engine (int8 PTQ, C, batch 1, 1 thread; bit-exactness against the "
                      "integer reference on the first test images):", "",
                      "| model | C engine latency | PyTorch fp32 eager latency | C output codes differing |",
                      "|---|---|---|---|"]  # fmt: skip
            for name, dd in (("mobilenetv2 (baseline)", rd), ("searched subnet", sd)):
                lines.append(f"| {name} | {dd['c_latency_ms']:.3f} ms | {dd['torch_fp32_latency_ms']:.3f} ms | "
                             f"{dd['verify_mismatched']} (over {dd['verify_images']} images) |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    write_text(s.results, text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--schedule", default="small", choices=("small", "medium", "full"))
    parser.add_argument("--samples", type=int, default=1000, help="random subnets measured for the predictor")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="processes measuring subnets")
    parser.add_argument("--tiny", action="store_true", help="smoke test: tiny space, tiny sizes, runs/nas_bench_tiny")
    parser.add_argument("--note", default="", help="a line of context for the results file")
    args = parser.parse_args()
    s = tiny_settings() if args.tiny else default_settings(args.schedule, args.samples)
    cache = Cache(s.work / "results.json")
    stages = [x for x in args.stages.split(",") if x]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
    for stage in STAGES:
        if stage not in stages:
            continue
        log(f"stage {stage}")
        if stage == "train":
            stage_train(s, cache, args.threads)
        elif stage == "sample":
            stage_sample(s, cache, args.workers)
        elif stage == "predictor":
            stage_predictor(s, cache)
        elif stage == "latency":
            stage_latency(s, cache)
        elif stage == "search":
            stage_search(s, cache, args.workers)
        elif stage == "compare":
            stage_compare(s, cache, args.workers, args.threads)
        else:
            stage_report(s, cache, args.note)


if __name__ == "__main__":
    main()
