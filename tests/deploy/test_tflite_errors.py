"""What the ``.tflite`` importer refuses: each case is one :class:`LeanmlError` naming the thing and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite")

from leanml.deploy.tflite import TFLITE_LOWERINGS, load_tflite
from leanml.errors import LeanmlError
from tests.deploy.tflite_models import Net


def _conv_net(**conv: object) -> tuple[Net, int, int]:
    net = Net(seed=0)
    x = net.act((1, 6, 6, 3), 0.05, 2)
    return net, x, net.conv(x, 4, (3, 3), **conv)  # type: ignore[arg-type]


def _unsupported() -> bytes:
    net, x, c = _conv_net()
    y = net.op("TANH", [c], [net.act((1, 6, 6, 4), 1 / 128, 0)])
    return net.to_bytes([x], [y])


def _uint8_activation() -> bytes:
    net = Net()
    x = net.act((1, 4, 4, 2), 0.05, 128, dtype="uint8")
    return net.to_bytes([x], [net.pool(x, "max", (2, 2), 2)])


def _float_activation() -> bytes:
    net = Net()
    x = net.add((1, 4, 4, 2), "float32")
    y = net.add((1, 2, 2, 2), "float32")
    net.op("MAX_POOL_2D", [x], [y], "Pool2DOptions", Padding=1, StrideW=2, StrideH=2, FilterWidth=2, FilterHeight=2)
    return net.to_bytes([x], [y])


def _per_channel_activation() -> bytes:
    net, x, y = _conv_net()
    net.tensors[y].scale, net.tensors[y].zero_point, net.tensors[y].qdim = [0.1] * 4, [0] * 4, 3
    return net.to_bytes([x], [y])


def _weight_zero_point() -> bytes:
    net, x, y = _conv_net()
    net.tensors[net.ops[0].inputs[1]].zero_point = [3] * 4
    return net.to_bytes([x], [y])


def _dilation() -> bytes:
    net, x, y = _conv_net(dilation=2, padding="VALID")
    return net.to_bytes([x], [y])


def _broadcast_add() -> bytes:
    net, x, c = _conv_net()
    p = net.pool(c, "avg", (6, 6), 1)
    y = net.act((1, 6, 6, 4), 0.1, 0)
    net.op("ADD", [c, p], [y], "AddOptions")
    return net.to_bytes([x], [y])


def _two_subgraphs() -> bytes:
    net, x, y = _conv_net()
    return net.to_bytes([x], [y], subgraphs=2)


def _version_2() -> bytes:
    net, x, y = _conv_net()
    return net.to_bytes([x], [y], version=2)


def _read_before_written() -> bytes:
    net, x, c = _conv_net()
    y = net.pool(c, "max", (2, 2), 2)
    net.ops.reverse()  # the pool now reads the conv's output before the conv runs
    return net.to_bytes([x], [y])


def _two_inputs() -> bytes:
    net, x, c = _conv_net()
    return net.to_bytes([x, c], [c])


def _avg_pool_same() -> bytes:
    net = Net()
    x = net.act((1, 5, 5, 2), 0.05, 0)
    return net.to_bytes([x], [net.pool(x, "avg", (3, 3), 2, "SAME")])


def _softmax_output_q() -> bytes:
    net = Net()
    x = net.act((1, 10), 0.1, 0)
    y = net.softmax(x)
    net.tensors[y].zero_point = [0]
    return net.to_bytes([x], [y])


def _no_layers() -> bytes:
    net = Net()
    xf = net.add((1, 4, 3, 2), "float32")
    q = net.op("QUANTIZE", [xf], [net.act((1, 4, 3, 2), 0.1, 7)], "QuantizeOptions")
    y = net.op("DEQUANTIZE", [q], [net.add((1, 4, 3, 2), "float32")], "DequantizeOptions")
    return net.to_bytes([xf], [y])


def _grouped_conv() -> bytes:
    net, x, y = _conv_net()
    w = net.tensors[net.ops[0].inputs[1]]
    w.shape, w.data = (4, 3, 3, 1), np.zeros((4, 3, 3, 1), np.int8)  # 1 input channel per filter for 3 channels
    return net.to_bytes([x], [y])


def _constant_add() -> bytes:
    net, x, c = _conv_net()
    k = net.add((1, 6, 6, 4), "int8", 0.1, 0, data=np.ones((1, 6, 6, 4), np.int8))
    return net.to_bytes([x], [net.add_op(c, k, (0.1, 0))])


def _truncated() -> bytes:
    net, x, y = _conv_net()
    return net.to_bytes([x], [y])[:200]


# case -> (model bytes, words the message must contain)
CASES: dict[str, tuple[Callable[[], bytes], tuple[str, ...]]] = {
    "unsupported opcode": (_unsupported, ("TANH", "supported: ", "CONV_2D")),
    "uint8 activation": (_uint8_activation, ("uint8", "int8")),
    "float activation": (_float_activation, ("float32", "int8")),
    "per-channel activation": (_per_channel_activation, ("4 scales", "per-tensor")),
    "weight zero point": (_weight_zero_point, ("not symmetric", "zero point 0")),
    "dilation": (_dilation, ("dilated", "dilation 1")),
    "broadcasting add": (_broadcast_add, ("broadcasts", "same shape")),
    "two subgraphs": (_two_subgraphs, ("2 subgraphs", "one-subgraph")),
    "schema version": (_version_2, ("schema version 2",)),
    "read before written": (_read_before_written, ("before", "order")),
    "two inputs": (_two_inputs, ("2 inputs", "one input")),
    "avg pool SAME": (_avg_pool_same, ("pads", "VALID")),
    "softmax output quantization": (_softmax_output_q, ("zero point 0", "-128")),
    "no layers": (_no_layers, ("no operator",)),
    "grouped conv": (_grouped_conv, ("1 weight input channels for 3", "grouped")),
    "constant add": (_constant_add, ("reads the constant tensor", "takes computed tensors")),
    "truncated": (_truncated, ("truncated or corrupt",)),
    "not a flatbuffer": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(100), ("not a TFLite flatbuffer", "TFLite converter")),
    "empty": (lambda: b"", ("not a TFLite flatbuffer",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused(case: str, tmp_path: Path) -> None:
    make, words = CASES[case]
    path = tmp_path / "m.tflite"
    path.write_bytes(make())
    with pytest.raises(LeanmlError) as info:
        load_tflite(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text, text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LeanmlError, match="does not exist"):
        load_tflite(tmp_path / "nope.tflite")


def test_unsupported_lists_every_lowering(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(_unsupported())
    with pytest.raises(LeanmlError) as info:
        load_tflite(path)
    assert all(op in str(info.value) for op in TFLITE_LOWERINGS)


def test_writer_model_imports(tmp_path: Path) -> None:
    """The base model of the cases above imports: each refusal comes from the one thing changed."""
    net, x, y = _conv_net()
    path = tmp_path / "m.tflite"
    path.write_bytes(net.to_bytes([x], [y]))
    graph = load_tflite(path)
    assert [op.kind for op in graph.ops] == ["quantize", "conv"]
    assert np.array_equal(graph.ops[1].weight, net.tensors[net.ops[0].inputs[1]].data)  # type: ignore[attr-defined]


def test_uint8_end_with_rescale(tmp_path: Path) -> None:
    """A uint8 input whose QUANTIZE rescales (not TFLite's shift by 128) would need a requantize kernel."""
    net = Net()
    xu = net.act((1, 4, 4, 2), 0.04, 128, dtype="uint8")
    x = net.op("QUANTIZE", [xu], [net.act((1, 4, 4, 2), 0.05, 0)], "QuantizeOptions")
    path = tmp_path / "u.tflite"
    path.write_bytes(net.to_bytes([xu], [net.pool(x, "max", (2, 2), 2)]))
    with pytest.raises(LeanmlError, match=r"with a rescale, not a shift by 128.*inference_input_type=tf\.int8"):
        load_tflite(path)


def _pad_net(hw: tuple[tuple[int, int], tuple[int, int]] = ((1, 1), (1, 1)), value: int | None = None) -> tuple[
        Net, int, int]:  # fmt: skip
    net = Net(seed=1)
    x = net.act((1, 5, 5, 2), 0.05, 2)
    return net, x, net.pad(x, hw, value)


def _pad_case(which: str) -> bytes:
    if which == "pool":
        net, x, p = _pad_net()
        y = net.pool(p, "max", (2, 2), 2)
    elif which == "two readers":
        net, x, p = _pad_net()
        y = net.add_op(net.conv(p, 2, (3, 3), 1, "SAME", out_q=(0.05, 2)), p, (0.1, 0))
    elif which == "output":
        net, x, y = _pad_net()
    elif which == "value":
        net, x, p = _pad_net(value=7)
        y = net.conv(p, 2, (3, 3), 1, "VALID")
    else:  # channels
        net, x, p = _pad_net()
        net.tensors[net.ops[0].inputs[1]].data = np.array([[0, 0], [1, 1], [1, 1], [0, 2]], np.int32)
        net.tensors[p].shape = (1, 7, 7, 4)
        y = net.conv(p, 2, (3, 3), 1, "VALID")
    return net.to_bytes([x], [y])


@pytest.mark.parametrize("which,words", [("pool", ("feeds MAX_POOL_2D", "pad kernel")),
                                         ("two readers", ("feeds CONV_2D", "ADD")),
                                         ("output", ("feeds the model output",)),
                                         ("value", ("code 7", "zero points")),
                                         ("channels", ("[0, 2]", "H and W only"))])  # fmt: skip
def test_pad_not_folded(which: str, words: tuple[str, ...], tmp_path: Path) -> None:
    path = tmp_path / "p.tflite"
    path.write_bytes(_pad_case(which))
    with pytest.raises(LeanmlError) as info:
        load_tflite(path)
    assert all(w in str(info.value) for w in words), str(info.value)
