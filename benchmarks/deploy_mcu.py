"""MCU deploy benchmark: leanml beside TFLite Micro (SRAM, Cortex-M4 instructions, flash, bit-exactness) and
LiteRT (host latency) → results/deploy_mcu.md.

Models: the five int8 ``.tflite`` files of ../shared/models/tflite (imported with ``load_tflite``, reference
figures from its README), the three zoo models (vgg, resnet, mobilenetv2: leanml PTQ as deploy_models.py does;
TFLM and LiteRT run their litert-torch ``.tflite`` conversion, the one deploy_models.py makes in
runs/deploy_bench/litert with runs/litert-venv), and those three ``.tflite`` conversions imported into leanml
(``<m>.tflite``: the same int8 model for leanml, TFLM and LiteRT).

Rows per model, each cached as JSON in --cache (default runs/deploy_mcu/<row>.json), skipped on the next run
(--fresh recomputes everything, --fresh-latency re-times only, a row that failed is retried):
  model-<m>    deterministic: TFLM x86 arena (pip tflite-micro, recording allocator), leanml's plan per deploy
               config (default and patch=3), bit-exactness on the host (vs the pip TFLM interpreter for .tflite
               models, vs leanml's integer reference for the PTQ ones), the Cortex-M4 run under QEMU
               (leanml.deploy.mcu.run_on_target: instructions per inference, flash, static SRAM, stack, M4 == host)
  latency-<m>  host latency through leanml's one latency helper: leanml's ``<prefix>_run_q`` (int8 codes in place)
               vs LiteRT ``invoke()`` (int8 input set) on the ``.tflite``, 1 and 2 threads, batch 1 and batch 8

Run: .venv/bin/python benchmarks/deploy_mcu.py [--models kws_ref_model,vgg] [--fresh | --fresh-latency]
     .venv/bin/python benchmarks/deploy_mcu.py --quick   # dry run: few repeats, own cache and output under runs/
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import _litert
import numpy as np
from _deploy_mcu_report import (
    BATCH,
    DRY,
    FULL,
    KINDS,
    REFERENCE,
    SHARED,
    VARIANTS,
    ZOO,
    Policy,
    model_kind,
    render,
)
from _rows import Row, RowRunner, log, names, recorded, wall_seconds

from leanml.deploy.codegen import c_prefix
from leanml.deploy.engine import DeployConfig, Deployment, deploy, deploy_graph
from leanml.deploy.ir import Graph
from leanml.deploy.mcu import run_on_target
from leanml.deploy.tflite import load_tflite
from leanml.profile import measure_latency
from leanml.profile.machine import load_averages
from leanml.quant import IntegerModel

ROOT = Path(__file__).resolve().parent
SHARED_DIR = ROOT.parent.parent / "shared" / "models" / "tflite"
DEPLOY_CACHE = ROOT.parent / "runs" / "deploy_bench"  # deploy_models.py's cache: its litert conversions
TARGET = "cortex-m4"
CONFIGS = {"default": DeployConfig(), "patch3": DeployConfig(patch=3)}
THREADS = 2  # the multi-thread row: DeployConfig(threads=THREADS), timed beside LiteRT's num_threads=THREADS
assert set(CONFIGS) == set(VARIANTS)


# ---------------------------------------------------------------- inputs and references


def rand_codes(n: int, seed: int = 0) -> np.ndarray:
    """The README's ``rand`` input for seed 0: ``default_rng(seed).integers(-128, 128, n, int16).astype(int8)``."""
    return np.random.default_rng(seed).integers(-128, 128, size=n, dtype=np.int16).astype(np.int8)


def test_inputs(n: int, randoms: int) -> dict[str, np.ndarray]:
    """Flat int8 inputs: ``zero``, ``rand`` (the README's), then ``seed1..seed<randoms>``."""
    inputs = {"zero": np.zeros(n, np.int8), "rand": rand_codes(n)}
    inputs.update({f"seed{s}": rand_codes(n, s) for s in range(1, randoms + 1)})
    return inputs


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TFLM_ARENA_SCRIPT = """
import sys, numpy as np, tflite_micro
it = tflite_micro.runtime.Interpreter.from_file(sys.argv[1], arena_size=8 << 20)
d = it.get_input_details(0)
it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
it.invoke()
sys.stdout.flush()
it.print_allocations()
"""


def tflm_arena(path: Path) -> dict[str, int]:
    """The pip TFLM interpreter's ``Arena allocation total/head/tail`` (x86, 8 MiB arena, one invoke on zeros), read
    from ``print_allocations()`` (its C++ output) in a subprocess."""
    proc = subprocess.run([sys.executable, "-c", TFLM_ARENA_SCRIPT, str(path)], capture_output=True, text=True)
    text = proc.stdout + proc.stderr  # TFLM's MicroPrintf writes to stderr in the pip build
    found = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text))
    if proc.returncode != 0 or "total" not in found:
        raise RuntimeError(f"TFLM arena of {path.name}: rc {proc.returncode}: {text[-800:]}")
    return {k: int(v) for k, v in found.items()}


def tflm_outputs(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The pip TFLM interpreter's (reference kernels, x86) flat output per flat input."""
    import tflite_micro

    interp = tflite_micro.runtime.Interpreter.from_file(str(path), arena_size=8 << 20)
    d = interp.get_input_details(0)
    out = {}
    for key, x in inputs.items():
        interp.set_input(x.reshape(d["shape"]).astype(d["dtype"]), 0)
        interp.invoke()
        out[key] = np.asarray(interp.get_output(0)).reshape(-1).copy()
    return out


def zoo_tflite(name: str, calib: Any, args: argparse.Namespace) -> Path:
    """The litert-torch conversion of zoo model ``name`` that deploy_models.py makes (made here when missing)."""
    out = DEPLOY_CACHE / "litert"
    if not (out / f"{name}.tflite").exists():
        calib_npy = DEPLOY_CACHE / "calib.npy"
        if not calib_npy.exists():
            DEPLOY_CACHE.mkdir(parents=True, exist_ok=True)
            np.save(calib_npy, calib.numpy().astype(np.float32))
        _litert.convert(name, calib_npy, out, args.litert_venv, False)
    return out / f"{name}.tflite"


def model_path(m: str, calib: Any, args: argparse.Namespace) -> Path:
    """The .tflite that TFLM and LiteRT run for model ``m``."""
    if m in SHARED:
        return SHARED_DIR / f"{m}.tflite"
    return zoo_tflite(m.removesuffix(".tflite"), calib, args)


# ---------------------------------------------------------------- leanml builds


class Leanml:
    """leanml's deployments of model ``m`` (one per deploy config; a config that cannot build records its error)
    and how its input codes are laid out."""

    def __init__(self, m: str, calib: Any, args: argparse.Namespace) -> None:
        self.imodel: IntegerModel | None = None
        graph: Graph | None = None
        if model_kind(m) == "ptq":
            from deploy_models import int8_model

            self.imodel = int8_model(m, calib)
            c, h, w = self.imodel.input_shape or (1, 28, 28)
            self.hwc: tuple[int, int, int] = (h, w, c)
        else:
            graph = load_tflite(model_path(m, calib, args))
            h, w, c = graph.input_shape
            self.hwc = (h, w, c)

        self.path = None if graph is None else model_path(m, calib, args)
        self.deps: dict[str, Deployment] = {}
        self.errors: dict[str, str] = {}
        for v, cfg in CONFIGS.items():
            got = recorded(partial(self.build, cfg))
            if "error" in got:
                self.errors[v] = got["error"]
            else:
                self.deps[v] = got["dep"]

    def build(self, cfg: DeployConfig) -> dict[str, Any]:
        """``{"dep": deployment}`` of this model with ``cfg`` (a fresh import per build: deploy marks the graph)."""
        if self.imodel is not None:
            return {"dep": deploy(self.imodel, cfg)}
        assert self.path is not None
        return {"dep": deploy_graph(load_tflite(self.path), cfg)}

    def threaded(self, threads: int) -> Deployment:
        """The default deployment in the host multi-thread mode."""
        return self.build(DeployConfig(threads=threads))["dep"]

    @property
    def numel(self) -> int:
        h, w, c = self.hwc
        return h * w * c

    def nchw(self, flat: np.ndarray) -> np.ndarray:
        """Flat NHWC codes → (N, C, H, W) for ``run_int8``."""
        return flat.reshape(-1, *self.hwc).transpose(0, 3, 1, 2)


Arrays = dict[str, np.ndarray]


def host_exact(lm: Leanml, dep: Deployment, inputs: Arrays, ref: Arrays) -> dict[str, Any]:
    """The host C's outputs against ``ref`` (TFLM's or the integer reference's) on every input."""
    bad, elements = {}, 0
    for key, x in inputs.items():
        got = dep.model.run_int8(lm.nchw(x)).reshape(-1)
        elements += got.size
        if (n := int((got != ref[key].reshape(-1)).sum())) != 0:
            bad[key] = n
    return {"inputs": len(inputs), "elements": elements, "mismatched": sum(bad.values()), "bad_inputs": bad}


def mcu_row(lm: Leanml, dep: Deployment, inputs: Arrays, ref: Arrays) -> dict[str, Any]:
    """The Cortex-M4 run on the zero and rand inputs: instructions, sizes, M4 == host, M4 == ``ref``."""
    keys = ("zero", "rand")
    x = np.stack([inputs[k].reshape(lm.hwc) for k in keys])
    run = run_on_target(dep, x, TARGET)
    perm = dep.model.output_perm
    outs = run.outputs if perm is None else run.outputs[:, perm]
    return {
        "flags": list(run.flags), "instructions": dict(zip(keys, run.instructions, strict=True)),
        "flash_bytes": run.flash_bytes, "model_flash_bytes": run.model_flash_bytes, "sram_bytes": run.sram_bytes,
        "stack_bytes": run.stack_bytes, "arena_bytes": run.arena_bytes, "matches_host": run.matches_host,
        "host_mismatched": run.mismatched,
        "ref_mismatched": {k: int((outs[i] != ref[k].reshape(-1)).sum()) for i, k in enumerate(keys)},
        "outputs": {k: outs[i].astype(np.int8).tobytes().hex() for i, k in enumerate(keys)},
    }  # fmt: skip


def readme_outputs(m: str, mcu: dict[str, Any]) -> dict[str, bool] | None:
    """leanml's M4 outputs == the README's TFLM+CMSIS-NN outputs (hex, or sha256 for long outputs)."""
    ref = REFERENCE.get(m)
    if ref is None:
        return None
    same = {}
    for k in ("zero", "rand"):
        want, got = ref[f"out_{k}"], mcu["outputs"][k]
        same[k] = want == (f"sha256:{sha256(bytes.fromhex(got))}" if want.startswith("sha256:") else got)
    return same


# ---------------------------------------------------------------- rows


def row_model(m: str, calib: Any, images: Any, args: argparse.Namespace, policy: Policy) -> dict[str, Any]:
    from deploy_models import source_state

    lm = Leanml(m, calib, args)
    inputs = test_inputs(lm.numel, policy.randoms)
    out: dict[str, Any] = {"source": source_state(), "input_hwc": list(lm.hwc), "inputs": list(inputs)}
    out["input_sha256"] = {k: sha256(inputs[k].tobytes()) for k in ("zero", "rand")}
    ref_fig = REFERENCE.get(m)
    if ref_fig:
        out["input_sha256_ok"] = all(out["input_sha256"][k] == ref_fig[f"sha_{k}"] for k in ("zero", "rand"))
    path = recorded(lambda: {"path": model_path(m, calib, args)})
    if "path" in path:
        p = path["path"]
        out["tflite"] = {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256(p.read_bytes())}
        out["tflm_arena"] = recorded(lambda: tflm_arena(p))
    else:
        out["tflite"] = path
    refs: dict[str, np.ndarray]
    if lm.imodel is None:  # .tflite: the oracle is the pip TFLM interpreter
        refs = tflm_outputs(Path(out["tflite"]["path"]), inputs)
        out["oracle"] = "pip tflite-micro interpreter (reference kernels, x86)"
    else:  # PTQ: leanml's integer reference, on the random codes and on test images
        imodel = lm.imodel
        refs = {k: imodel.run_int8(lm.nchw(x)).reshape(-1) for k, x in inputs.items()}
        out["oracle"] = "leanml integer reference (numpy)"
        if images is not None and len(images):
            q = imodel.quantize_input(images)  # (N, C, H, W) int8 codes
            ref = imodel.run_int8(q).reshape(len(q), -1)
            flat = np.ascontiguousarray(q.transpose(0, 2, 3, 1).astype(np.int8)).reshape(len(q), -1)
            inputs.update({f"test{i}": flat[i] for i in range(len(q))})
            refs.update({f"test{i}": ref[i] for i in range(len(q))})
            out["test_images"] = len(q)
    variants: dict[str, Any] = {}
    for v in CONFIGS:
        if v in lm.errors:
            variants[v] = {"error": lm.errors[v]}
            continue
        dep = lm.deps[v]
        summary = dep.summary()
        summary.pop("library")
        entry: dict[str, Any] = {"config": CONFIGS[v].to_dict(), "summary": summary}
        entry["host"] = host_exact(lm, dep, inputs, refs)
        entry["mcu"] = recorded(partial(mcu_row, lm, dep, inputs, refs))
        if "error" not in entry["mcu"]:
            entry["mcu"]["readme_outputs_equal"] = readme_outputs(m, entry["mcu"])
        log(f"  {m} {v}: arena {summary['arena_bytes']:,} B, host mismatches {entry['host']['mismatched']}, "
            f"M4 {entry['mcu'].get('instructions', entry['mcu'].get('error'))}")  # fmt: skip
        variants[v] = entry
    out["variants"] = variants
    return out


def litert_loadable(path: Path) -> Path:
    """``path``, or a copy LiteRT can load: ai-edge-litert refuses a per-tensor quantized tensor whose
    ``quantized_dimension`` lies outside its rank (person_detect's biases say 3 on 1-d tensors; TFLM ignores it).
    The copy (under runs/) sets those dimensions to 0 and changes nothing else."""
    import tflite

    raw = bytearray(path.read_bytes())
    graph = tflite.Model.GetRootAsModel(raw, 0).Subgraphs(0)
    fixed = 0
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        q = t.Quantization()
        if q is None or q.ScaleLength() == 0 or q.QuantizedDimension() < max(t.ShapeLength(), 1):
            continue
        slot = q._tab.Offset(16)  # QuantizationParameters.quantized_dimension (vtable slot 6)
        struct.pack_into("<i", raw, q._tab.Pos + slot, 0)
        fixed += 1
    if not fixed:
        return path
    out = ROOT.parent / "runs" / "deploy_mcu" / "litert_loadable" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(raw))
    return out


def litert_runner(path: Path, threads: int, batch: int = 1) -> Any:
    """A LiteRT interpreter (default XNNPACK path) on ``path`` with the rand input set; batch > 1 resizes."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    (inp,) = interp.get_input_details()
    shape = [int(d) for d in inp["shape"]]
    if batch != 1:
        interp.resize_tensor_input(inp["index"], [batch, *shape[1:]])
    interp.allocate_tensors()
    n = int(np.prod(shape))
    x = np.concatenate([rand_codes(n, s) for s in range(batch)]).reshape([batch, *shape[1:]])
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    return interp


def row_latency(m: str, calib: Any, args: argparse.Namespace, policy: Policy) -> dict[str, Any]:
    """Engine calls only, int8 codes in place: leanml ``run_q`` vs LiteRT ``invoke()``; batch 1 and ``BATCH``."""
    from deploy_models import source_state

    out: dict[str, Any] = {}
    load_before = load_averages()

    def timed(key: str, fn: Any, threads: int, batch: int = 1) -> None:
        load = load_averages()[0]
        stats = measure_latency(fn, policy.warmup, policy.repeats, threads, batch, policy.min_seconds).to_dict()
        out[key] = {**stats, "loadavg_1min": load}
        log(f"  {m} {key}: {stats['median_ms']:.4f} ms (p10 {stats['p10_ms']:.4f}, p90 {stats['p90_ms']:.4f}, "
            f"{stats['repeats']} calls, load {load:.2f})")  # fmt: skip

    lm = Leanml(m, calib, args)
    n = lm.numel
    xs = np.ascontiguousarray(np.concatenate([rand_codes(n, s) for s in range(BATCH)]).reshape(BATCH, n))
    threaded = lm.threaded(THREADS)  # DeployConfig(threads=2): the host multi-thread mode (same int8 model)
    timings = [(v, dep, 1) for v, dep in lm.deps.items()] + [("default", threaded, THREADS)]
    for v, dep, threads in timings:
        lib = ctypes.CDLL(str(dep.model.library))
        run_q = getattr(lib, f"{c_prefix(dep.config.prefix)}_run_q")
        run_q.argtypes, run_q.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int
        codes = np.zeros((BATCH, dep.model.output_size), dtype=np.int8)
        timed(f"leanml-{v}/{threads}", lambda f=run_q, c=codes: f(xs[0].ctypes.data, c[0].ctypes.data), threads)
        if v == "default" and threads == 1:
            run_b = getattr(lib, f"{c_prefix(dep.config.prefix)}_run_q_batch")  # BATCH inputs, one after another
            run_b.argtypes, run_b.restype = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p], ctypes.c_int
            timed(f"leanml-{v}/1/b{BATCH}", lambda f=run_b, c=codes: f(xs.ctypes.data, BATCH, c.ctypes.data), 1,
                  BATCH)  # fmt: skip
    path = litert_loadable(model_path(m, calib, args))
    lite: dict[str, Any] = {"tflite": str(path), "runtime": f"ai-edge-litert {_litert.runtime_version()}"}

    def litert() -> dict[str, Any]:
        for threads in (1, 2):
            interp = litert_runner(path, threads)
            timed(f"litert/{threads}", interp.invoke, threads)
            if threads == 1:
                (inp,), (o,) = interp.get_input_details(), interp.get_output_details()
                lite.update(input_dtype=str(inp["dtype"].__name__), output_dtype=str(o["dtype"].__name__),
                            input_shape=[int(d) for d in inp["shape"]],
                            rand_output=interp.get_tensor(o["index"]).astype(np.int8).tobytes().hex())  # fmt: skip
                tflm = recorded(lambda: {"out": tflm_outputs(path, {"rand": rand_codes(n)})["rand"]})
                if "out" in tflm:  # LiteRT (XNNPACK) vs the TFLM reference kernels on the same .tflite: informative
                    lite["rand_output_equals_tflm"] = lite["rand_output"] == tflm["out"].astype(np.int8).tobytes().hex()
        batched_lite = recorded(lambda: {"interp": litert_runner(path, 1, BATCH)})
        if "interp" in batched_lite:
            timed(f"litert/1/b{BATCH}", batched_lite["interp"].invoke, 1, BATCH)
        else:
            lite[f"batch{BATCH}_error"] = batched_lite["error"]
        return {}

    # a .tflite LiteRT still refuses is recorded; leanml's times stay
    if "error" in (failed := recorded(litert)):
        lite["error"] = failed["error"]
    return {"engines": out, "litert": lite, "errors": lm.errors, "source": source_state(), "batch": BATCH,
            "loadavg_before": load_before, "loadavg_after": load_averages()}  # fmt: skip


# ---------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    every = [*SHARED, *ZOO, *(f"{z}.tflite" for z in ZOO)]
    parser.add_argument("--models", default=",".join(every))
    parser.add_argument("--cache", type=Path, help="row cache (default runs/deploy_mcu, --quick runs/deploy_mcu_quick)")
    parser.add_argument("--out", type=Path, help="results file (default results/deploy_mcu.md; --quick: in its cache)")
    parser.add_argument("--litert-venv", type=Path, default=ROOT.parent / "runs" / "litert-venv")
    parser.add_argument("--fresh", action="store_true", help="recompute every row")
    parser.add_argument("--fresh-latency", action="store_true", help="re-time only (latency rows)")
    parser.add_argument("--quick", action="store_true", help="dry run: few repeats, few inputs (not final figures)")
    args = parser.parse_args()
    policy = DRY if args.quick else FULL
    args.cache = args.cache or ROOT.parent / "runs" / ("deploy_mcu_quick" if args.quick else "deploy_mcu")
    args.out = args.out or (args.cache / "deploy_mcu.md" if args.quick else ROOT / "results" / "deploy_mcu.md")
    models = names(args.models, every, "model")
    calib = test = None
    if any(model_kind(m) != "shared" for m in models):
        from quantize_models import calibration_images, test_split

        calib = calibration_images()
        test = test_split(max(policy.test_images, 1)) if any(model_kind(m) == "ptq" for m in models) else None
    images = None
    if test is not None:
        import torch

        from leanml.data import batches

        images = torch.cat([x for x, _ in batches(test, 500)])[: policy.test_images]
    measure: dict[str, Callable[[str], dict[str, Any]]] = {
        "model": lambda m: row_model(m, calib, images, args, policy),
        "latency": lambda m: row_latency(m, calib, args, policy),
    }

    def measured(kind: str, m: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda rows: recorded(partial(measure[kind], m))

    todo = [Row(f"{k}-{m}", measured(k, m)) for m in models for k in KINDS]
    planned = [row.key for row in todo]

    def keep(key: str, row: dict[str, Any]) -> bool:
        """Rows of this policy; a failed row is retried (e.g. a .tflite that did not import before)."""
        stale = args.fresh_latency and key.startswith("latency-")
        return row.get("policy") == policy.name and "error" not in row and not stale

    runner = RowRunner(args.cache, args.out, lambda rows: render(rows, planned, models, args, policy),
                       stamp=wall_seconds(policy=policy.name))  # fmt: skip
    runner.run(todo, {} if args.fresh else runner.cached(keep))


if __name__ == "__main__":
    main()
