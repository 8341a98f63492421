"""Quantize the reference models and write benchmarks/results/quantization.md.

Sections (default: all):
  kmeans  course Lab 2 on vgg: k-means weight quantization at 8/4/2 bits, then k-means QAT
          (cluster-mean updates after every SGD step): 1 epoch at 8 and 4 bits, 5 epochs at 2 bits.
  ptq     int8 PTQ (512 calibration images) with every observer: fp32 vs fake-quant vs integer executor.
  qat     int8 QAT, 1 epoch, same columns as ptq.
  peers   torch.ao FX graph-mode PTQ (x86 backend) and onnxruntime quantize_static (QDQ, int8,
          per-channel) on the same models and the same 512 calibration images.
  mixed   mixed-precision weights (per-layer 2..8 bits from measured sensitivity on 2000 validation images)
          vs uniform 4-bit weights at the same weight size; int8 activations, PTQ minmax.

Resumable: each finished row is cached as JSON in --cache (default runs/quant_bench/<row>.json) and
skipped on the next run (--fresh recomputes); the results file is rewritten after every row.

Run: .venv/bin/python benchmarks/quantize_models.py [--sections kmeans,ptq,qat,peers] [--models vgg,resnet]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _peers import fx_detail, fx_quantize, ort_detail, ort_quantize, ort_session, quiet_peer_warnings
from _rows import Row, RowRunner, Rows, names, recorded, wall_seconds
from torch import nn

from leanml.data import ImageSet, batches, load_split
from leanml.profile import machine_summary
from leanml.quant import IntegerModel, KMeansConfig, LinearQuantConfig, QuantSim, kmeans_quantize_, quantize_linear
from leanml.quant.linear import calibration_batches
from leanml.quant.mixed import MixedPrecisionConfig, mixed_precision, weight_size_bits
from leanml.quant.observers import OBSERVERS
from leanml.threads import torch_threads
from leanml.train import evaluate, load_model
from leanml.train.finetune import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parent
BASELINES = ROOT / "baselines"
MODELS = ("vgg", "resnet", "mobilenetv2")
SECTIONS = ("kmeans", "ptq", "qat", "peers", "mixed")
KMEANS_EPOCHS = {8: 1, 4: 1, 2: 5}
KMEANS_GOAL = {4: 0.005, 2: 0.015}  # max accuracy drop vs fp32 after QAT
INT8_GOAL = 0.003  # int8 PTQ/QAT: max drop vs fp32
CALIB_IMAGES, CALIB_BATCH, TRAIN_BATCH, EVAL_BATCH = 512, 128, 128, 500
QAT_LR = 1e-3
EPS = 1e-9


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def pts(acc: float, fp32: float) -> str:
    return f"{100 * (acc - fp32):+.2f}"


def ok(cond: bool) -> str:
    return "met" if cond else "**MISSED**"


# ---------------------------------------------------------------- measurements


def calibration_images() -> torch.Tensor:
    """Exactly what quantize_linear samples by default: a seeded 512-image sample of the train split."""
    return torch.cat([x for x, _ in batches(load_split("train", subset=CALIB_IMAGES), CALIB_BATCH)])


def test_split(images: int) -> ImageSet:
    """The Fashion-MNIST test images the int8 comparisons evaluate on: all 10000, or a seeded subset of ``images``."""
    return load_split("test", subset=images if images < 10000 else None)


def eval_int8(sim: QuantSim, imodel: IntegerModel, test: ImageSet) -> dict[str, Any]:
    """Fake-quant and integer-executor accuracy, argmax agreement and output codes within 1 LSB.

    Same computation as tests/quant/test_integer.py::lsb_agreement, accumulated over the test set.
    """
    n = fake_ok = int_ok = agree = within = elems = 0
    t_fake = t_int = 0.0
    sim.eval()
    for x, y in batches(test, EVAL_BATCH):
        t0 = time.perf_counter()
        with torch.no_grad():
            fake = sim(x)  # (B, classes) float on the output grid
        t1 = time.perf_counter()
        q_int = imodel.run_int8(imodel.quantize_input(x))  # (B, classes) int8 codes as int64
        t2 = time.perf_counter()
        t_fake, t_int = t_fake + t1 - t0, t_int + t2 - t1
        q_fake = torch.round(fake / imodel.output_q.scale).numpy().astype(np.int64) + imodel.output_q.zero_point
        labels, fake_pred, int_pred = y.numpy(), fake.argmax(1).numpy(), q_int.argmax(1)
        n += len(labels)
        fake_ok += int((fake_pred == labels).sum())
        int_ok += int((int_pred == labels).sum())
        agree += int((fake_pred == int_pred).sum())
        within += int((np.abs(q_int - q_fake) <= 1).sum())
        elems += q_int.size
    return {
        "fake_acc": fake_ok / n, "int_acc": int_ok / n, "argmax_agree": agree / n, "within_1lsb": within / elems,
        "eval_fake_s": t_fake, "eval_int_s": t_int,
    }  # fmt: skip


def row_fp32(name: str, test: ImageSet) -> dict[str, Any]:
    _, acc = evaluate(load_model(BASELINES / name), test, EVAL_BATCH)
    return {"fp32_acc": acc}


def row_kmeans(bits: int, lr: float, fp32: float, test: ImageSet) -> dict[str, Any]:
    model = load_model(BASELINES / "vgg")
    t0 = time.perf_counter()
    quantizer = kmeans_quantize_(model, KMeansConfig(bits=bits))
    t_quant = time.perf_counter() - t0
    _, acc_kmeans = evaluate(model, test, EVAL_BATCH)
    epochs = KMEANS_EPOCHS[bits]
    t0 = time.perf_counter()
    cfg = FinetuneConfig(epochs=epochs, lr=lr, batch_size=TRAIN_BATCH)
    finetune(model, load_split("train"), cfg, after_step=quantizer.qat_step_, progress=sys.stderr.isatty())
    t_qat = time.perf_counter() - t0
    _, acc_qat = evaluate(model, test, EVAL_BATCH)
    report = quantizer.report(model)
    return {
        "bits": bits, "lr": lr, "epochs": epochs, "fp32_acc": fp32, "kmeans_acc": acc_kmeans, "qat_acc": acc_qat,
        "total_bytes": report.total_bytes, "fp32_bytes": report.fp32_bytes,
        "max_distinct": max(layer.distinct for layer in report.layers), "quant_s": t_quant, "qat_s": t_qat,
    }  # fmt: skip


def row_linear(name: str, cfg: LinearQuantConfig, calib: torch.Tensor, fp32: float, test: ImageSet) -> dict:
    # QAT trains on what quantize_linear loaded itself before issue 17: the train split, or its seeded qat_images.
    train = load_split("train", subset=cfg.qat_images) if cfg.qat_epochs else None
    t0 = time.perf_counter()
    result = quantize_linear(load_model(BASELINES / name), cfg, calib, train, progress=sys.stderr.isatty())
    t_quant = time.perf_counter() - t0
    assert result.integer_model is not None  # 8-bit activations always convert
    return {
        "config": cfg.to_dict(),
        "fp32_acc": fp32,
        "quant_s": t_quant,
        **eval_int8(result.sim, result.integer_model, test),
    }


def row_mixed(name: str, calib: torch.Tensor, fp32: float, test: ImageSet) -> dict[str, Any]:
    """Mixed precision at the size of uniform 4-bit weights vs uniform 4-bit: fake-quant accuracy (int8 activations)."""
    model = load_model(BASELINES / name)
    cfg = MixedPrecisionConfig(like_uniform_bits=4)
    val = load_split("val", subset=cfg.val_images)  # the seeded sample mixed_precision loaded itself before issue 17
    t0 = time.perf_counter()
    result = mixed_precision(model, cfg, val, progress=sys.stderr.isatty())
    t_scan = time.perf_counter() - t0
    out: dict[str, Any] = {"fp32_acc": fp32, "bits": result.bits, "scan_s": t_scan}
    for label, bits in (("mixed", result.bits), ("uniform4", 4)):
        sim = QuantSim.from_model(model, 8, bits)
        sim.calibrate(calibration_batches(calib, CALIB_BATCH))
        out[f"{label}_acc"] = evaluate(sim, test, EVAL_BATCH)[1]
        widths = bits if isinstance(bits, dict) else dict.fromkeys(result.bits, bits)
        out[f"{label}_weight_bytes"] = weight_size_bits(model, widths) / 8
    return out


def peer_fx(model: nn.Module, calib: torch.Tensor, test: ImageSet) -> dict[str, Any]:
    _, acc = evaluate(fx_quantize(model, calib), test, EVAL_BATCH)
    return {"acc": acc, "detail": fx_detail()}


def peer_ort(name: str, model: nn.Module, calib: torch.Tensor, test: ImageSet, work: Path, threads: int) -> dict:
    session = ort_session(ort_quantize(name, model, calib, work), threads)
    correct = 0
    for x, y in batches(test, EVAL_BATCH):
        logits = session.run(None, {"input": x.numpy()})[0]
        correct += int((logits.argmax(1) == y.numpy()).sum())
    return {"acc": correct / len(test), "detail": ort_detail()}


def row_peer(name: str, peer: str, calib: torch.Tensor, test: ImageSet, args: argparse.Namespace, fp32: float) -> dict:
    """A peer's int8 PTQ accuracy on ``name`` (or the error that stopped it: recorded, not fatal) beside fp32."""
    model = load_model(BASELINES / name)
    if peer == "fx":
        row = recorded(lambda: peer_fx(model, calib, test))
    else:
        row = recorded(lambda: peer_ort(name, model, calib, test, args.cache / "onnx", args.threads))
    return {**row, "fp32_acc": fp32}


# ---------------------------------------------------------------- report


def len_test(rows: dict[str, dict]) -> int:
    """Test images behind the accuracies (every cached row records it)."""
    return int(next((r["test_images"] for r in rows.values() if "test_images" in r), 10000))


def render(rows: dict[str, dict], planned: list[str], args: argparse.Namespace) -> str:
    missing = [k for k in planned if k not in rows]
    fp32 = {m: rows[f"fp32-{m}"]["fp32_acc"] for m in MODELS if f"fp32-{m}" in rows}
    lines = [
        "# Quantization benchmark (Fashion-MNIST)",
        "",
        "Produced by `benchmarks/quantize_models.py` from the float baselines in `benchmarks/baselines/`. "
        "Every number is measured; rows are cached in the cache folder and this file is regenerated after each row.",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/quantize_models.py --threads {args.threads} "
        f"--test-images {args.test_images}` (add `--fresh` to ignore cached rows); "
        f"this file was last written by `{' '.join(['.venv/bin/python', *sys.argv])}`",
        "",
        f"- machine: {machine_summary()}",
        f"- threads: {args.threads} (torch intra-op; onnxruntime intra-op {args.threads}); "
        "the integer executor is leanml's numpy reference",
        f"- test set: {args.test_images} Fashion-MNIST test images"
        + (" (full)" if args.test_images >= 10000 else " (seeded subset)"),
        f"- batch sizes: evaluation {EVAL_BATCH}, calibration {CALIB_BATCH} ({CALIB_IMAGES} seeded train images, "
        f"the same for leanml and the peers), QAT / fine-tuning {TRAIN_BATCH} "
        "(SGD momentum 0.9, cosine LR, shift+flip augmentation, 55k train images)",
        f"- fp32 baselines on this test set: {', '.join(f'{m} {pct(a)}' for m, a in fp32.items()) or 'pending'}",
        f"- rows still missing: {', '.join(missing) if missing else 'none (run complete)'}",
        "",
    ]
    km = sorted((r for k, r in rows.items() if k.startswith("kmeans-")), key=lambda r: (-r["bits"], r["lr"]))
    if km:
        lines += [
            "## K-means weight quantization + k-means QAT (vgg, course Lab 2)",
            "",
            "All conv and linear weights share 2^b fp32 centroids per layer; QAT updates each centroid to the mean "
            "of its weights after every SGD step (labels fixed). Size = b-bit indices + fp32 codebooks, "
            "other parameters (biases, BN) at 32 bits. Goal: 4-bit within 0.5 pt of fp32 after 1 QAT epoch; "
            "2-bit within 1.5 pt after ≤ 5 epochs.",
            "",
            "| bits | fp32 acc | after k-means | Δ pt | after QAT | Δ pt | QAT epochs | lr | size | fp32 size "
            "| ≤ distinct/layer | QAT time | goal |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in km:
            goal = KMEANS_GOAL.get(r["bits"])
            verdict = "— (no goal)" if goal is None else ok(r["fp32_acc"] - r["qat_acc"] <= goal + EPS)
            lines.append(
                f"| {r['bits']} | {pct(r['fp32_acc'])} | {pct(r['kmeans_acc'])} "
                f"| {pts(r['kmeans_acc'], r['fp32_acc'])} "
                f"| {pct(r['qat_acc'])} | {pts(r['qat_acc'], r['fp32_acc'])} | {r['epochs']} | {r['lr']:g} "
                f"| {r['total_bytes'] / 1024:.1f} KiB ({r['fp32_bytes'] / r['total_bytes']:.1f}×) "
                f"| {r['fp32_bytes'] / 1024:.1f} KiB | {r['max_distinct']} | {r['qat_s'] / 60:.1f} min | {verdict} |"
            )
        lines.append("")
    for section, title in (("ptq", "int8 post-training quantization"), ("qat", "int8 quantization-aware training")):
        sec = [(k, r) for k, r in rows.items() if k.startswith(section + "-")]
        if not sec:
            continue
        sec.sort(key=lambda kr: (MODELS.index(kr[0].split("-")[1]), list(OBSERVERS).index(kr[1]["config"]["observer"])))
        cfg = sec[0][1]["config"]
        what = f"{CALIB_IMAGES} calibration images, per-channel int8 weights, BN folded"
        if section == "qat":
            what = f"PTQ (minmax) then {cfg['qat_epochs']} QAT epoch(s) at lr {cfg['qat_lr']:g}, straight-through"
        lines += [
            f"## {title}",
            "",
            f"{what}. fake-quant = leanml's QuantSim; integer = leanml's integer-only executor (IntegerModel). "
            "argmax agree = integer vs fake-quant top-1 agreement; ≤1 LSB = fraction of output logit codes within "
            "1 LSB of the fake-quant ones. Goal: int8 within 0.3 pt of fp32 on every model; integer accuracy "
            "identical to fake-quant.",
            "",
            "| model | observer | fp32 acc | fake-quant | Δ pt | integer | Δ pt | argmax agree | ≤1 LSB "
            "| time quantize / fake eval / int eval | ≤0.3 pt | int = fake |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for key, r in sec:
            worst = min(r["fake_acc"], r["int_acc"])
            lines.append(
                f"| {key.split('-')[1]} | {r['config']['observer']} | {pct(r['fp32_acc'])} | {pct(r['fake_acc'])} "
                f"| {pts(r['fake_acc'], r['fp32_acc'])} | {pct(r['int_acc'])} | {pts(r['int_acc'], r['fp32_acc'])} "
                f"| {100 * r['argmax_agree']:.2f}% | {100 * r['within_1lsb']:.3f}% "
                f"| {r['quant_s']:.0f} s / {r['eval_fake_s']:.0f} s / {r['eval_int_s']:.0f} s "
                f"| {ok(r['fp32_acc'] - worst <= INT8_GOAL + EPS)} | {ok(abs(r['int_acc'] - r['fake_acc']) < EPS)} |"
            )
        lines.append("")
    peers = [m for m in MODELS if f"peers-{m}-fx" in rows or f"peers-{m}-ort" in rows]
    if peers:
        lines += [
            "## Peers: int8 PTQ on the same models and calibration images",
            "",
            "leanml = `quantize_linear` defaults (minmax observer), accuracy of the integer executor, from the ptq "
            "table; leanml QAT = the qat table (1 epoch from that PTQ model). The peers are PTQ only. "
            "torch.ao = FX graph mode `prepare_fx`/`convert_fx` with `get_default_qconfig_mapping('x86')`. "
            "onnxruntime = `quant_pre_process` + `quantize_static` (QDQ, int8 activations and weights, per-channel) "
            "on a TorchScript ONNX export of the float model. Goal: leanml int8 ≥ both peers.",
            "",
            "| model | fp32 acc | leanml int8 PTQ | leanml int8 QAT | torch.ao FX x86 | onnxruntime QDQ | goal |",
            "|---|---|---|---|---|---|---|",
        ]
        notes = []
        for m in peers:
            ours = rows.get(f"ptq-{m}-minmax", {}).get("int_acc")
            qat = rows.get(f"qat-{m}-minmax", {}).get("int_acc")
            cells, accs = [], []
            for peer in ("fx", "ort"):
                r = rows.get(f"peers-{m}-{peer}")
                if r is None:
                    cells.append("pending")
                elif r.get("error"):
                    cells.append("failed (see below)")
                    notes.append(f"- {m} / {peer}: `{r['error']}`")
                else:
                    cells.append(f"{pct(r['acc'])} ({pts(r['acc'], r['fp32_acc'])})")
                    notes.append(f"- {m} / {peer}: {r['detail']}; {r['seconds']:.0f} s")
                    accs.append(r["acc"])
            best_peer = max(accs, default=None)
            if ours is None or best_peer is None:
                goal = "pending"
            elif ours + EPS >= best_peer:
                goal = "met (PTQ)"
            elif qat is not None and qat + EPS >= best_peer:
                goal = f"met by QAT; PTQ {round((best_peer - ours) * len_test(rows))} image(s) short"
            else:
                goal = ok(False) + f" (PTQ {round((best_peer - ours) * len_test(rows))} image(s) short)"
            mine = "pending" if ours is None else f"{pct(ours)} ({pts(ours, fp32.get(m, ours))})"
            mine_qat = "pending" if qat is None else f"{pct(qat)} ({pts(qat, fp32.get(m, qat))})"
            lines.append(f"| {m} | {pct(fp32.get(m))} | {mine} | {mine_qat} | {cells[0]} | {cells[1]} | {goal} |")
        lines += ["", "Peer details:", "", *notes, ""]
    mixed = [m for m in MODELS if f"mixed-{m}-like4" in rows]
    if mixed:
        lines += [
            "## Mixed-precision weights vs uniform 4-bit at the same size",
            "",
            "Per-layer weight widths (2, 3, 4, 5, 6, 8) chosen greedily from each layer's measured sensitivity "
            "(2000 validation images, one layer quantized at a time) so that the weights fit the size of uniform "
            "4-bit weights (+ one fp32 scale per output channel). Both with int8 activations, minmax PTQ on the "
            "same calibration images; fake-quant accuracy on the test set.",
            "",
            "| model | fp32 acc | uniform 4-bit | mixed | Δ mixed − uniform | weights uniform | weights mixed "
            "| widths (layer order) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in mixed:
            r = rows[f"mixed-{m}-like4"]
            widths = " ".join(str(b) for b in r["bits"].values())
            lines.append(
                f"| {m} | {pct(r['fp32_acc'])} | {pct(r['uniform4_acc'])} | {pct(r['mixed_acc'])} "
                f"| {pts(r['mixed_acc'], r['uniform4_acc'])} | {r['uniform4_weight_bytes'] / 1024:.1f} KiB "
                f"| {r['mixed_weight_bytes'] / 1024:.1f} KiB | {widths} |"
            )
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- driver


def fp32_of(rows: Rows, name: str) -> float:
    """The fp32 accuracy of model ``name`` (its ``fp32-<name>`` row, planned first)."""
    return float(rows[f"fp32-{name}"]["fp32_acc"])


def linear_config(observer: str, qat_epochs: int) -> LinearQuantConfig:
    return LinearQuantConfig(observer=observer, batch_size=CALIB_BATCH, qat_epochs=qat_epochs, qat_lr=QAT_LR)


def plan(sections: list[str], models: list[str], args: argparse.Namespace, calib: torch.Tensor,
         test: ImageSet) -> list[Row]:  # fmt: skip
    """The rows in run order: the fp32 baselines first, then each section's (compared with its model's fp32 row)."""
    lr = args.kmeans_lr
    out = [Row(f"fp32-{m}", lambda rows, m=m: row_fp32(m, test)) for m in models]
    for section in sections:
        if section == "kmeans" and "vgg" in models:
            out.extend(Row(f"kmeans-vgg-{b}b-lr{lr:g}", lambda rows, b=b: row_kmeans(b, lr, fp32_of(rows, "vgg"), test))
                       for b in KMEANS_EPOCHS)  # fmt: skip
        elif section == "ptq":
            out.extend(Row(f"ptq-{m}-{obs}", lambda rows, m=m, obs=obs: row_linear(m, linear_config(obs, 0), calib,
                                                                                 fp32_of(rows, m), test))
                       for m in models for obs in OBSERVERS)  # fmt: skip
        elif section == "qat":
            out.extend(Row(f"qat-{m}-minmax", lambda rows, m=m: row_linear(m, linear_config("minmax", 1), calib,
                                                                           fp32_of(rows, m), test))
                       for m in models)  # fmt: skip
        elif section == "peers":
            out.extend(Row(f"peers-{m}-{p}", lambda rows, m=m, p=p: row_peer(m, p, calib, test, args, fp32_of(rows, m)))
                       for m in models for p in ("fx", "ort"))  # fmt: skip
        elif section == "mixed":
            out.extend(Row(f"mixed-{m}-like4", lambda rows, m=m: row_mixed(m, calib, fp32_of(rows, m), test))
                       for m in models)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test-images", type=int, default=10000, help="test images to evaluate (10000 = all)")
    parser.add_argument("--kmeans-lr", type=float, default=1e-3, help="k-means QAT learning rate")
    parser.add_argument("--cache", type=Path, default=ROOT.parent / "runs" / "quant_bench")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "quantization.md")
    parser.add_argument("--fresh", action="store_true", help="recompute rows even if cached")
    args = parser.parse_args()
    sections, models = names(args.sections, SECTIONS, "section"), names(args.models, MODELS, "model")
    test, calib = test_split(args.test_images), calibration_images()
    todo = plan(sections, models, args, calib, test)
    planned = [row.key for row in todo]
    stamp = wall_seconds(test_images=args.test_images, threads=args.threads)
    runner = RowRunner(args.cache, args.out, lambda rows: render(rows, planned, args), stamp=stamp)
    rows = {} if args.fresh else runner.cached(lambda key, row: row.get("test_images") == args.test_images)
    quiet_peer_warnings()
    with torch_threads(args.threads):
        runner.run(todo, rows)


if __name__ == "__main__":
    main()
