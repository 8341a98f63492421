"""Deploy benchmark: leanml's C engine beside LiteRT, onnxruntime and torch int8, batch 1 → results/deploy.md.

Rows per model (vgg, resnet, mobilenetv2), each cached as JSON in --cache (default runs/deploy_bench/<row>.json)
and skipped on the next run (--fresh recomputes everything, --fresh-latency re-times only):
  fp32-<m>     float baseline accuracy
  leanml-<m>   leanml int8 PTQ (quantize_linear, minmax, 512 calibration images) → deploy() → C engine:
               accuracy, bit-exactness against the integer reference on every test image, the integer reference's
               accuracy, SRAM arena vs a TFLite-Micro-style plan, Cortex-M4 section sizes
  litert-<m>   litert-torch PT2E static int8 PTQ on the same images → .tflite (converted in runs/litert-venv, made
               by benchmarks/setup_litert.sh), run with ai-edge-litert (XNNPACK default path and built-in kernels)
  ort-<m>      onnxruntime quantize_static QDQ int8 (same as quantize_models.py's peer)
  fx-<m>       torch.ao FX x86 int8 (same as quantize_models.py's peer)
  latency-<m>  every engine at batch 1 through leanml's one latency helper (float input → float logits per call)

Run: .venv/bin/python benchmarks/deploy_models.py [--models vgg,resnet] [--fresh | --fresh-latency]
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _litert
import numpy as np
import torch
from _deploy_report import KINDS, MIN_SECONDS, REPEATS, VARIANT_KEY, WARMUP, render
from _peers import CALIB_BATCH, fx_detail, fx_quantize, ort_detail, ort_quantize, ort_session, quiet_peer_warnings
from _rows import Row, RowRunner, log, names, recorded, wall_seconds
from quantize_models import calibration_images, test_split
from torch import nn

from leanml.data import ImageSet, batches
from leanml.deploy.build import CROSS_TARGETS, OPT_FLAGS, target_section_sizes
from leanml.deploy.codegen import c_prefix
from leanml.deploy.engine import DeployConfig, Deployment, deploy
from leanml.profile import measure_latency
from leanml.profile.machine import load_averages
from leanml.quant import IntegerModel, LinearQuantConfig, quantize_linear
from leanml.threads import torch_threads
from leanml.train import evaluate, load_checkpoint, load_model

ROOT = Path(__file__).resolve().parent
BASELINES = ROOT / "baselines"
MODELS = ("vgg", "resnet", "mobilenetv2")
EVAL_BATCH = 500
QUANT_CFG = LinearQuantConfig(observer="minmax", batch_size=CALIB_BATCH)
# leanml deploy variants: the default, and patch-based inference of the first stage (MCUNetV2) on a 3x3 grid
VARIANTS = {"default": DeployConfig(), "patch3": DeployConfig(patch=3)}


# ---------------------------------------------------------------- building the engines


def int8_model(name: str, calib: torch.Tensor) -> IntegerModel:
    """PTQ of baseline ``name``; the integer model carries the checkpoint's input block, so ``DeployConfig()``
    (input_shape None = the model's stored shape) builds for the shape the model was trained at."""
    ckpt = load_checkpoint(BASELINES / name)
    result = quantize_linear(ckpt.model, QUANT_CFG, calibration=calib)
    assert result.integer_model is not None  # 8-bit activations always convert
    return result.integer_model.with_meta(ckpt.meta.get("input"))


def leanml_engines(name: str, calib: torch.Tensor) -> tuple[IntegerModel, dict[str, Deployment]]:
    """The integer model and its deployments, one per entry of ``VARIANTS``."""
    imodel = int8_model(name, calib)
    return imodel, {v: deploy(imodel, cfg) for v, cfg in VARIANTS.items()}


def source_state() -> str:
    """The last commit touching the engine (leanml/deploy, leanml/quant) and any uncommitted changes there."""
    git, paths = ["git", "-C", str(ROOT.parent)], ["leanml/deploy", "leanml/quant"]
    last = subprocess.run([*git, "log", "-1", "--format=%h", "--", *paths], capture_output=True, text=True).stdout
    dirty = subprocess.run([*git, "status", "--porcelain", *paths], capture_output=True, text=True).stdout
    changed = len(dirty.splitlines())
    return f"{last.strip() or '?'}" + (f" + {changed} uncommitted file(s)" if changed else "")


def ort_model(name: str, calib: torch.Tensor, cache: Path) -> Path:
    path = cache / "onnx" / f"{name}.int8.onnx"
    return path if path.exists() else ort_quantize(name, load_model(BASELINES / name), calib, cache / "onnx")


# ---------------------------------------------------------------- rows


def row_fp32(name: str, test: ImageSet) -> dict[str, Any]:
    return {"acc": evaluate(load_model(BASELINES / name), test, EVAL_BATCH)[1]}


def row_leanml(name: str, calib: torch.Tensor, test: ImageSet) -> dict[str, Any]:
    """Integer reference accuracy; per deploy variant: C accuracy, bit-exactness on every test image, SRAM, flash."""
    t0 = time.perf_counter()
    imodel, deps = leanml_engines(name, calib)
    t_build = time.perf_counter() - t0
    target = "cortex-m4"
    n = ref_ok = 0
    t_ref = 0.0
    stats = {
        v: dict.fromkeys(("c_ok", "cf_ok", "mismatched", "float_mismatched", "elements", "eval_c_s"), 0) for v in deps
    }
    for x, y in batches(test, EVAL_BATCH):
        labels = y.numpy()
        q = imodel.quantize_input(x)
        t0 = time.perf_counter()
        ref = imodel.run_int8(q).reshape(len(q), -1)
        t_ref += time.perf_counter() - t0
        ref_float = imodel.dequantize_output(ref).numpy()
        n += len(labels)
        ref_ok += int((ref.argmax(1) == labels).sum())
        for v, dep in deps.items():
            st = stats[v]
            t0 = time.perf_counter()
            got = dep.model.run_int8(q)  # C engine on the same int8 codes
            st["eval_c_s"] += time.perf_counter() - t0
            c_float = dep.model(x).numpy()  # the deployed entry point: float in, quantize + run + dequantize in C
            st["elements"] += ref.size
            st["mismatched"] += int((ref != got).sum())
            st["float_mismatched"] += int((c_float != ref_float).sum())
            st["c_ok"] += int((got.argmax(1) == labels).sum())
            st["cf_ok"] += int((c_float.argmax(1) == labels).sum())
    variants = {}
    for v, dep in deps.items():
        st = stats[v]
        summary = dep.summary()
        library = Path(summary.pop("library")).name
        config = {**VARIANTS[v].to_dict(), "input_shape": list(dep.input_shape)}  # the shape it was built for
        variants[v] = {
            "config": config, "c_acc": st.pop("c_ok") / n, "c_float_acc": st.pop("cf_ok") / n, **st,
            "summary": summary, "library": library,
            "sections": target_section_sizes(dep.sources, target),
        }  # fmt: skip
    return {
        "quant_config": QUANT_CFG.to_dict(), "ref_acc": ref_ok / n, "images": n, "variants": variants,
        "target": target, "target_flags": list(CROSS_TARGETS[target]), "host_flags": list(OPT_FLAGS),
        "build_s": t_build, "eval_ref_s": t_ref, "source": source_state(),
    }  # fmt: skip


def as_arrays(test: ImageSet) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*batches(test, EVAL_BATCH), strict=True)
    return torch.cat(xs).numpy(), torch.cat(ys).numpy()


def row_litert(name: str, calib: torch.Tensor, test: ImageSet, args: argparse.Namespace) -> dict[str, Any]:
    calib_npy = args.cache / "calib.npy"
    if args.fresh or not calib_npy.exists():
        args.cache.mkdir(parents=True, exist_ok=True)
        np.save(calib_npy, calib.numpy().astype(np.float32))
    info = _litert.convert(name, calib_npy, args.cache / "litert", args.litert_venv, args.fresh)
    images, labels = as_arrays(test)
    path = Path(info["tflite"])
    return {
        "convert": info,
        "runtime": f"ai-edge-litert {_litert.runtime_version()}",
        "acc": _litert.accuracy(_litert.LiteRT(path, 1), images, labels),
        "acc_builtin": _litert.accuracy(_litert.LiteRT(path, 1, xnnpack=False), images, labels),
    }


def row_ort(name: str, calib: torch.Tensor, test: ImageSet, cache: Path) -> dict[str, Any]:
    session = ort_session(ort_quantize(name, load_model(BASELINES / name), calib, cache / "onnx"), 1)
    correct = 0
    for x, y in batches(test, EVAL_BATCH):
        correct += int((session.run(None, {"input": x.numpy()})[0].argmax(1) == y.numpy()).sum())
    return {"acc": correct / len(test), "detail": ort_detail()}


def row_fx(name: str, calib: torch.Tensor, test: ImageSet) -> dict[str, Any]:
    return {"acc": evaluate(fx_quantize(load_model(BASELINES / name), calib), test, EVAL_BATCH)[1],
            "detail": fx_detail()}  # fmt: skip


def row_latency(name: str, calib: torch.Tensor, test: ImageSet, cache: Path) -> dict[str, Any]:
    """Every engine on the same image, batch 1: float (1, 1, 28, 28) in, float logits out, per timed call."""
    x = next(batches(test, 1))[0]
    xn = x.numpy()
    out: dict[str, Any] = {}
    load_before = load_averages()

    def timed(key: str, fn: Any, threads: int) -> None:
        out[key] = measure_latency(fn, WARMUP, REPEATS, threads, 1, MIN_SECONDS).to_dict()
        log(f"  {name} {key}: {out[key]['median_ms']:.3f} ms (p10 {out[key]['p10_ms']:.3f}, "
            f"p90 {out[key]['p90_ms']:.3f}, {out[key]['repeats']} calls)")  # fmt: skip

    imodel, deps = leanml_engines(name, calib)
    for v, dep in deps.items():
        timed(f"{VARIANT_KEY[v]}/1", lambda d=dep: d.model(x), 1)
    # engine only: the generated C entry point on int8 HWC codes already in place, no Python glue
    dep = deps["default"]
    run_q = getattr(ctypes.CDLL(str(dep.model.library)), f"{c_prefix(dep.config.prefix)}_run_q")
    run_q.argtypes, run_q.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int
    hwc = np.ascontiguousarray(imodel.quantize_input(x).transpose(0, 2, 3, 1), dtype=np.int8)
    codes = np.zeros(dep.model.output_size, dtype=np.int8)
    timed("leanml-core/1", lambda: run_q(hwc.ctypes.data, codes.ctypes.data), 1)
    timed("ref/1", lambda: imodel(x), 1)
    tflite = cache / "litert" / f"{name}.tflite"
    if tflite.exists():
        for threads in (1, 2):
            runner = _litert.LiteRT(tflite, threads)
            timed(f"litert/{threads}", lambda r=runner: r(xn), threads)
        runner = _litert.LiteRT(tflite, 1)
        runner(xn)  # sets the int8 input tensor; then time invoke() alone
        timed("litert-core/1", runner.interp.invoke, 1)
        builtin = _litert.LiteRT(tflite, 1, xnnpack=False)
        timed("litert-builtin/1", lambda: builtin(xn), 1)
    q_path = ort_model(name, calib, cache)
    for threads in (1, 2):
        session = ort_session(q_path, threads)
        timed(f"ort/{threads}", lambda s=session: s.run(None, {"input": xn}), threads)
    model: nn.Module = load_model(BASELINES / name).eval()
    fx = fx_quantize(model, calib)
    with torch.inference_mode():
        for threads in (1, 2):
            timed(f"fx/{threads}", lambda: fx(x), threads)
        timed("fp32/1", lambda: model(x), 1)
    libraries = {v: dep.model.library.name for v, dep in deps.items()}
    return {
        "engines": out,
        "source": source_state(),
        "libraries": libraries,
        "loadavg_before": load_before,
        "loadavg_after": load_averages(),
    }


# ---------------------------------------------------------------- driver


def plan(models: list[str], args: argparse.Namespace, calib: torch.Tensor, test: ImageSet) -> list[Row]:
    """Every kind of row (``KINDS``) per model, model by model; the peers' rows record their errors."""
    measure: dict[str, Callable[[str], dict[str, Any]]] = {
        "fp32": lambda m: row_fp32(m, test),
        "leanml": lambda m: row_leanml(m, calib, test),
        "litert": lambda m: recorded(lambda: row_litert(m, calib, test, args)),
        "ort": lambda m: recorded(lambda: row_ort(m, calib, test, args.cache)),
        "fx": lambda m: recorded(lambda: row_fx(m, calib, test)),
        "latency": lambda m: recorded(lambda: row_latency(m, calib, test, args.cache)),
    }
    return [Row(f"{k}-{m}", lambda rows, k=k, m=m: measure[k](m)) for m in models for k in KINDS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="threads for the accuracy runs")
    parser.add_argument("--test-images", type=int, default=10000, help="test images to evaluate (10000 = all)")
    parser.add_argument("--cache", type=Path, default=ROOT.parent / "runs" / "deploy_bench")
    parser.add_argument("--litert-venv", type=Path, default=ROOT.parent / "runs" / "litert-venv")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "deploy.md")
    parser.add_argument("--fresh", action="store_true", help="recompute every row (and re-convert the .tflite files)")
    parser.add_argument("--fresh-latency", action="store_true", help="re-time only (latency rows)")
    args = parser.parse_args()
    models = names(args.models, MODELS, "model")
    test, calib = test_split(args.test_images), calibration_images()
    todo = plan(models, args, calib, test)
    planned = [row.key for row in todo]

    def keep(key: str, row: dict[str, Any]) -> bool:
        stale = args.fresh_latency and key.startswith("latency-")
        return row.get("test_images") == args.test_images and not stale

    stamp = wall_seconds(test_images=args.test_images)
    runner = RowRunner(args.cache, args.out, lambda rows: render(rows, planned, models, args), stamp=stamp)
    rows = {} if args.fresh else runner.cached(keep)
    quiet_peer_warnings()
    with torch_threads(args.threads):
        runner.run(todo, rows)


if __name__ == "__main__":
    main()
