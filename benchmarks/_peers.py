"""Peer int8 PTQ shared by quantize_models.py and deploy_models.py: torch.ao FX (x86) and onnxruntime QDQ.

Both quantize a float model on the given calibration images (batches of 128) and return the peer's own runnable
artefact, so one script can measure accuracy and another latency on exactly the same quantized models.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

CALIB_BATCH = 128


def quiet_peer_warnings() -> None:
    """Ignore the torch.ao / torch.onnx and deprecation warnings the peers' converters repeat on every model."""
    warnings.filterwarnings("ignore", module=r"torch\.(ao|onnx)")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def fx_quantize(model: nn.Module, calib: torch.Tensor) -> nn.Module:
    """torch.ao FX graph mode PTQ with ``get_default_qconfig_mapping('x86')``; sets the x86 quantized engine."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (calib[:1],))
    with torch.no_grad():
        for start in range(0, len(calib), CALIB_BATCH):
            prepared(calib[start : start + CALIB_BATCH])
    return convert_fx(prepared)


def fx_detail() -> str:
    return f"torch {torch.__version__}, engine x86, get_default_qconfig_mapping('x86')"


def ort_quantize(name: str, model: nn.Module, calib: torch.Tensor, work: Path) -> Path:
    """TorchScript ONNX export (opset 17, dynamic batch) + quant_pre_process + quantize_static (QDQ, int8
    activations and weights, per-channel, MinMax calibration); returns the int8 model's path under ``work``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    work.mkdir(parents=True, exist_ok=True)
    fp32_path, pre_path, q_path = (work / f"{name}{s}.onnx" for s in ("", ".pre", ".int8"))
    torch.onnx.export(
        copy.deepcopy(model).eval(), (calib[:1],), str(fp32_path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
    )  # fmt: skip
    quant_pre_process(str(fp32_path), str(pre_path))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.chunks = iter([calib[s : s + CALIB_BATCH].numpy() for s in range(0, len(calib), CALIB_BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.chunks, None)
            return None if chunk is None else {"input": chunk}

    quantize_static(
        str(pre_path), str(q_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return q_path


def ort_session(path: Path, threads: int):  # -> onnxruntime.InferenceSession
    """CPU session with ``threads`` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_detail() -> str:
    import onnx
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, TorchScript exporter opset 17, MinMax calibration"
