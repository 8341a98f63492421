"""LiteRT side of deploy_models.py: make the litert venv, convert in it, run the .tflite files with ai-edge-litert.

Conversion (litert-torch, jax, ...) happens in the separate venv made by setup_litert.sh, in a subprocess running
litert_convert.py; the .tflite files are then run in this process with ai-edge-litert, which installs next to the
project's torch (it is in the `[bench]` extra), so every engine is timed by the same latency helper.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent


def ensure_venv(venv: Path) -> None:
    """Create or check the litert venv (idempotent; a few minutes the first time)."""
    proc = subprocess.run(["bash", str(ROOT / "setup_litert.sh"), str(venv)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"setup_litert.sh failed: {(proc.stdout + proc.stderr).strip()[-1500:]}")


def convert(name: str, calib_npy: Path, out: Path, venv: Path, fresh: bool) -> dict[str, Any]:
    """``out/<name>.tflite`` (full int8, PTQ on the images in ``calib_npy``) and its conversion record."""
    record = out / f"{name}.json"
    if fresh or not record.exists() or not (out / f"{name}.tflite").exists():
        ensure_venv(venv)
        cmd = [str(venv / "bin" / "python"), str(ROOT / "litert_convert.py"), "--calib", str(calib_npy),
               "--out", str(out), "--models", name]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0 or not record.exists():
            tail = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if "Location" not in line)
            raise RuntimeError(f"litert_convert.py failed ({proc.returncode}): {tail[-1500:]}")
    return json.loads(record.read_text())


def runtime_version() -> str:
    from importlib.metadata import version

    return version("ai-edge-litert")


class LiteRT:
    """A .tflite model with int8 input/output behind a float-in, float-out call (like leanml's compiled model).

    ``xnnpack=True`` is LiteRT's default CPU path (the XNNPACK delegate applied by default); ``False`` uses the
    built-in optimized kernels without default delegates. Input quantization rounds half away from zero, as
    LiteRT's QUANTIZE op does.
    """

    def __init__(self, path: Path, threads: int, xnnpack: bool = True) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kwargs: dict[str, Any] = {}
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.interp = Interpreter(model_path=str(path), num_threads=threads, **kwargs)
        self.interp.allocate_tensors()
        (inp,), (out,) = self.interp.get_input_details(), self.interp.get_output_details()
        self.in_index, self.out_index, self.in_dtype = inp["index"], out["index"], inp["dtype"]
        (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
        self.s_in, self.z_in = np.float32(s_in), z_in
        self.s_out, self.z_out = np.float32(s_out), z_out
        self.input_shape = tuple(inp["shape"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float (1, C, H, W) → dequantized float logits (1, classes)."""
        v = np.asarray(x, dtype=np.float32) / self.s_in
        q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + self.z_in, -128, 127).astype(self.in_dtype)
        self.interp.set_tensor(self.in_index, q)
        self.interp.invoke()
        return (self.interp.get_tensor(self.out_index).astype(np.float32) - self.z_out) * self.s_out


def accuracy(runner: LiteRT, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy, one image per call (the model has batch 1)."""
    correct = sum(int(runner(images[i : i + 1]).argmax() == labels[i]) for i in range(len(images)))
    return correct / len(images)


if __name__ == "__main__":  # quick manual check: python benchmarks/_litert.py runs/deploy_bench/litert/vgg.tflite
    r = LiteRT(Path(sys.argv[1]), 1)
    print(r.input_shape, r(np.zeros(r.input_shape, np.float32)))
