"""Convert the float baselines to full-int8 LiteRT (.tflite) models with litert-torch. Runs in the litert venv.

Not run with the project's .venv: litert-torch pulls jax, transformers and ai-edge-quantizer, so it lives in its own
venv made by benchmarks/setup_litert.sh. benchmarks/deploy_models.py calls this script in a subprocess:

    runs/litert-venv/bin/python benchmarks/litert_convert.py --calib runs/deploy_bench/calib.npy \
        --out runs/deploy_bench/litert --models vgg,resnet,mobilenetv2

Static int8 post-training quantization the litert-torch way (PT2E): `torch.export` the float model (batch dimension
dynamic for calibration), `prepare_pt2e` with litert-torch's `PT2EQuantizer` and
`get_symmetric_quantization_config(is_per_channel=True)` (int8 per-channel symmetric weights, int8 per-tensor
affine activations with a histogram observer), run the given calibration images through it, `convert_pt2e`, then
`litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))` at batch 1. The .tflite comes out with int8
input and output tensors (their scale / zero point in the tensor details) and int8 kernels throughout.

Writes <out>/<model>.tflite and <out>/<model>.json (versions, op census, agreement with the PT2E torch model).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # leanml from the work tree (its few dependencies come with litert-torch)

CALIB_BATCH = 128


def op_census(path: Path) -> dict[str, int]:
    """Operator name -> count in the .tflite, and how many ops compute in float."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    plain = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # list the model's own ops, not the XNNPACK node
    interp = Interpreter(model_path=str(path), experimental_op_resolver_type=plain)
    interp.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in interp.get_tensor_details()}
    ops: collections.Counter[str] = collections.Counter()
    float_ops = 0
    for op in interp._get_ops_details():
        ops[op["op_name"]] += 1
        outs = [i for i in op["outputs"] if i >= 0]
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE") and any(dtypes.get(i) == np.float32 for i in outs):
            float_ops += 1
    return {**dict(sorted(ops.items())), "float_compute_ops": float_ops}


def convert_one(name: str, calib: torch.Tensor, out: Path) -> dict:
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from leanml.train import load_model

    model = load_model(ROOT / "baselines" / name).eval()
    sample = (calib[:1],)
    t0 = time.perf_counter()
    batch = torch.export.Dim("batch", min=1, max=len(calib))
    exported = torch.export.export(model, (calib[:2],), dynamic_shapes=({0: batch},)).module()
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for start in range(0, len(calib), CALIB_BATCH):
            prepared(calib[start : start + CALIB_BATCH])
    quantized = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
    for module in quantized.modules():  # the graph is already in eval form; clear the flag litert-torch warns about
        module.training = False
    edge = litert_torch.convert(quantized, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    path = out / f"{name}.tflite"
    edge.export(str(path))
    seconds = time.perf_counter() - t0
    # agreement of the .tflite (int8 in/out, run through our own quantize/dequantize) with the PT2E torch model
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    (inp,), (outp,) = interp.get_input_details(), interp.get_output_details()
    (s_in, z_in), (s_out, z_out) = inp["quantization"], outp["quantization"]
    agree, max_diff = 0, 0.0
    n_check = min(64, len(calib))
    for i in range(n_check):
        x = calib[i : i + 1]
        with torch.no_grad():
            ref = quantized(x).numpy()
        q = np.clip(np.round(x.numpy() / s_in) + z_in, -128, 127).astype(inp["dtype"])
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        got = (interp.get_tensor(outp["index"]).astype(np.float32) - z_out) * s_out
        agree += int(ref.argmax() == got.argmax())
        max_diff = max(max_diff, float(np.abs(ref - got).max()))
    import ai_edge_litert
    import torchao

    return {
        "model": name,
        "tflite": str(path),
        "tflite_bytes": path.stat().st_size,
        "convert_s": seconds,
        "litert_torch": litert_torch.__version__,
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        "torch": torch.__version__,
        "torchao": torchao.__version__,
        "api": "torch.export (dynamic batch) -> torchao prepare_pt2e(PT2EQuantizer().set_global("
        "get_symmetric_quantization_config(is_per_channel=True))) -> calibrate -> convert_pt2e(fold_quantize=False)"
        " -> move_exported_model_to_eval -> litert_torch.convert(quant_config=QuantConfig(pt2e_quantizer=...))",
        "calib_images": len(calib),
        "check_images": n_check,
        "argmax_agree_vs_pt2e": agree / n_check,
        "max_abs_diff_vs_pt2e": max_diff,
        "input_dtype": np.dtype(inp["dtype"]).name,
        "output_dtype": np.dtype(outp["dtype"]).name,
        "output_scale_lsb": float(s_out),
        "ops": op_census(path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calib", type=Path, required=True, help=".npy float32 (N, 1, 28, 28) calibration images")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="vgg,resnet,mobilenetv2")
    args = parser.parse_args()
    torch.manual_seed(0)
    calib = torch.from_numpy(np.load(args.calib)).float()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in [m for m in args.models.split(",") if m]:
        info = convert_one(name, calib, args.out)
        (args.out / f"{name}.json").write_text(json.dumps(info, indent=2))
        print(json.dumps({k: v for k, v in info.items() if k != "ops"}), flush=True)


if __name__ == "__main__":
    main()
