"""Every opcode the ``.tflite`` importer lowers, bit-exact against the pip TFLite Micro interpreter.

Each case writes a tiny int8 model (:mod:`tests.deploy.tflite_models`), deploys it to C and compares the int8
output codes with TFLM's reference kernels on seeded random input codes (and the extremes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tflm = pytest.importorskip("tflite_micro")
pytest.importorskip("tflite")

from leanml.deploy.engine import DeployConfig, Deployment, deploy_graph  # noqa: E402
from leanml.deploy.ir import Graph  # noqa: E402
from leanml.deploy.tflite import load_tflite  # noqa: E402
from tests.deploy.tflite_models import Net  # noqa: E402


def _deploy(net: Net, x: int, y: int, tmp_path: Path) -> tuple[Graph, Deployment, bytes]:
    data = net.to_bytes([x], [y])
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    graph = load_tflite(path)
    return graph, deploy_graph(graph, DeployConfig()), data


def check(net: Net, x: int, y: int, tmp_path: Path, trials: int = 4, extremes: bool = True) -> None:
    """Deploy ``net`` (input ``x``, output ``y``) and compare with TFLM on ``trials`` seeded inputs, the first
    two all -128 and all 127 when ``extremes``."""
    graph, dep, data = _deploy(net, x, y, tmp_path)
    it = tflm.runtime.Interpreter.from_bytes(data, arena_size=4 << 20)
    shape = net.tensors[x].shape
    h, w, c = graph.input_shape
    rng = np.random.default_rng(1)
    for trial in range(trials):
        xs = rng.integers(-128, 128, shape).astype(np.int8)
        if extremes and trial < 2:
            xs[:] = (-128, 127)[trial]
        it.set_input(xs, 0)
        it.invoke()
        ref = it.get_output(0).reshape(-1)
        got = dep.model.run_int8(xs.reshape(1, h, w, c).transpose(0, 3, 1, 2)).reshape(-1)
        np.testing.assert_array_equal(got, ref, err_msg=f"trial {trial}")


# (input H, W, C, kernel, stride, padding, fused activation, per-channel weights, bias)
CONVS = [
    (8, 8, 3, 3, 2, "SAME", "NONE", True, True),  # even size, stride 2: pad 0 before, 1 after
    (7, 7, 3, 3, 2, "SAME", "NONE", True, True),  # odd size: pad 1 both sides
    (6, 7, 2, 4, 1, "SAME", "NONE", True, True),  # even kernel: pad 1 before, 2 after
    (5, 6, 4, 2, 2, "SAME", "RELU", True, True),
    (9, 6, 3, 3, 1, "VALID", "RELU6", True, True),
    (9, 9, 3, 3, 2, "VALID", "RELU_N1_TO_1", True, True),
    (6, 6, 5, 3, 1, "SAME", "NONE", False, True),  # per-tensor weights
    (5, 5, 8, 1, 1, "VALID", "RELU6", True, True),  # 1x1: the GEMM kernel
    (5, 5, 8, 1, 2, "SAME", "NONE", False, False),  # 1x1 stride 2, no bias
    (2, 3, 2, 5, 1, "SAME", "RELU", True, True),  # kernel larger than the input: taps off both sides
    (7, 8, 3, 1, 3, "VALID", "NONE", True, True),  # stride larger than the kernel
]


@pytest.mark.parametrize("h,w,c,k,s,pad,act,per_channel,bias", CONVS)
def test_conv2d(h: int, w: int, c: int, k: int, s: int, pad: str, act: str, per_channel: bool, bias: bool,
                tmp_path: Path) -> None:  # fmt: skip
    net = Net(seed=h * 100 + w)
    x = net.act((1, h, w, c), 0.01 if act != "NONE" else 0.05, 5)
    y = net.conv(x, 6, (k, k), s, pad, act, per_channel, bias=bias)
    check(net, x, y, tmp_path)


# (input H, W, C, depth multiplier, kernel, stride, padding, per-channel)
DEPTHWISE = [
    (8, 8, 4, 1, 3, 1, "SAME", True),
    (7, 7, 4, 1, 3, 2, "SAME", True),
    (9, 8, 5, 1, 3, 2, "VALID", False),
    (6, 6, 3, 2, 3, 1, "SAME", True),  # multiplier 2 on 3 channels: a grouped conv
    (6, 5, 1, 8, 3, 2, "SAME", True),  # multiplier 8 on one channel: a standard conv
    (8, 6, 3, 1, 5, 2, "SAME", True),  # 5x5, stride 2 on even sizes: asymmetric padding
]


@pytest.mark.parametrize("h,w,c,mult,k,s,pad,per_channel", DEPTHWISE)
def test_depthwise(h: int, w: int, c: int, mult: int, k: int, s: int, pad: str, per_channel: bool,
                   tmp_path: Path) -> None:  # fmt: skip
    net = Net(seed=c * 10 + mult)
    x = net.act((1, h, w, c), 0.02, -7)
    y = net.conv(x, 0, (k, k), s, pad, "RELU6", per_channel, depth_multiplier=mult)
    check(net, x, y, tmp_path)


@pytest.mark.parametrize("shape,act,per_channel", [((1, 40), "NONE", False), ((1, 3, 3, 4), "RELU", False),
                                                 ((1, 1, 1, 16), "NONE", False), ((1, 30), "RELU6", True)])  # fmt: skip
def test_fully_connected(shape: tuple[int, ...], act: str, per_channel: bool, tmp_path: Path) -> None:
    """From a vector and straight from a 4-D map (TFLM flattens NHWC; so does the IR); per-tensor and
    per-channel weights."""
    net = Net(seed=len(shape))
    x = net.act(shape, 0.03, 11)
    y = net.fc(x, 10, act, per_channel)
    check(net, x, y, tmp_path)


def test_conv_then_fully_connected(tmp_path: Path) -> None:
    net = Net(seed=3)
    x = net.act((1, 6, 6, 2), 0.04, 0)
    y = net.fc(net.conv(x, 4, (3, 3), 2, "SAME", "RELU"), 5)
    check(net, x, y, tmp_path)


@pytest.mark.parametrize("act", ["NONE", "RELU"])
def test_add_residual(act: str, tmp_path: Path) -> None:
    """ADD of the input and a conv of it: two different scales and zero points, then a new output scale."""
    net = Net(seed=4)
    x = net.act((1, 5, 5, 4), 0.05, -3)
    c = net.conv(x, 4, (3, 3), 1, "SAME", out_q=(0.11, 9))
    y = net.add_op(x, c, (0.13, -5), act)
    check(net, x, y, tmp_path)


def test_add_two_branches(tmp_path: Path) -> None:
    net = Net(seed=5)
    x = net.act((1, 4, 4, 3), 0.02, 1)
    a = net.conv(x, 6, (1, 1), 1, "VALID", out_q=(0.5, 20))
    b = net.conv(x, 6, (3, 3), 1, "SAME", out_q=(0.03, -40))
    y = net.add_op(a, b, (0.4, 0), "RELU6")
    check(net, x, y, tmp_path)


# (mode, input H, W, kernel, stride, padding, fused activation)
POOLS = [
    ("avg", 8, 8, 2, 2, "VALID", "NONE"),
    ("avg", 7, 5, 3, 2, "VALID", "NONE"),
    ("avg", 6, 6, 6, 1, "VALID", "NONE"),  # global
    ("avg", 6, 6, 2, 2, "VALID", "RELU6"),  # fused clamp: a Clamp op after the pool
    ("max", 8, 8, 2, 2, "VALID", "NONE"),
    ("max", 7, 7, 3, 2, "SAME", "NONE"),
    ("max", 8, 7, 2, 2, "SAME", "RELU"),
    ("max", 6, 6, 3, 1, "SAME", "NONE"),
]


@pytest.mark.parametrize("mode,h,w,k,s,pad,act", POOLS)
def test_pool(mode: str, h: int, w: int, k: int, s: int, pad: str, act: str, tmp_path: Path) -> None:
    net = Net(seed=h)
    x = net.act((1, h, w, 3), 0.05, -10)
    y = net.pool(x, mode, (k, k), s, pad, act)
    check(net, x, y, tmp_path)


def test_reshape_then_softmax(tmp_path: Path) -> None:
    """conv → RESHAPE to a vector → FULLY_CONNECTED → SOFTMAX: the usual classifier tail."""
    net = Net(seed=6)
    x = net.act((1, 4, 4, 2), 0.05, 0)
    c = net.conv(x, 3, (3, 3), 2, "SAME", "RELU")
    r = net.reshape(c, (1, 12))
    f = net.fc(r, 7, out_q=(0.12, 4))
    y = net.softmax(f)
    check(net, x, y, tmp_path)


def test_reshape_map_to_map(tmp_path: Path) -> None:
    net = Net(seed=7)
    x = net.act((1, 4, 6, 2), 0.05, 0)
    c = net.conv(x, 4, (1, 1), 1, "VALID")
    y = net.conv(net.reshape(c, (1, 8, 3, 4)), 3, (3, 3), 1, "SAME")
    check(net, x, y, tmp_path)


@pytest.mark.parametrize("n,scale,beta", [(2, 0.1, 1.0), (10, 0.05, 1.0), (10, 0.25, 0.5), (37, 0.01, 2.0),
                                          (100, 1 / 16, 1.0), (511, 0.003, 1.0), (1000, 0.15, 1.0),
                                          (1000, 0.05, 0.7)])  # fmt: skip
def test_softmax(n: int, scale: float, beta: float, tmp_path: Path) -> None:
    """Rows of 2..1000. A row whose exps sum to >= 512 (e.g. 512 equal maxima) trips an assertion in TFLM's
    RoundingDivideByPOT (shift 32), so rows of 512 and more are compared on random codes only."""
    net = Net(seed=n)
    x = net.act((1, n), scale, 3)
    y = net.softmax(x, beta)
    check(net, x, y, tmp_path, trials=6, extremes=n < 512)


def test_softmax_per_pixel(tmp_path: Path) -> None:
    """SOFTMAX of a map normalizes each pixel's channels."""
    net = Net(seed=8)
    x = net.act((1, 3, 2, 5), 0.07, -2)
    y = net.softmax(x)
    check(net, x, y, tmp_path)


def test_float_ends(tmp_path: Path) -> None:
    """QUANTIZE first, DEQUANTIZE last: the float API equals TFLM's float output exactly (ties, saturation)."""
    net = Net(seed=9)
    xf = net.add((1, 6, 5, 2), "float32")
    x = net.op("QUANTIZE", [xf], [net.act((1, 6, 5, 2), 0.037, -4)], "QuantizeOptions")
    c = net.conv(x, 3, (3, 3), 2, "SAME", out_q=(0.21, 6))
    y = net.op("DEQUANTIZE", [c], [net.add((1, 3, 3, 3), "float32")], "DequantizeOptions")
    data = net.to_bytes([xf], [y])
    path = tmp_path / "f.tflite"
    path.write_bytes(data)
    dep = deploy_graph(load_tflite(path), DeployConfig())
    it = tflm.runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
    rng = np.random.default_rng(2)
    codes = rng.integers(-140, 140, (1, 6, 5, 2))
    for xs in (rng.normal(0, 2, (1, 6, 5, 2)), (codes + 0.5) * 0.037, codes * 0.037, rng.normal(0, 20, (1, 6, 5, 2))):
        xs = xs.astype(np.float32)
        it.set_input(xs, 0)
        it.invoke()
        ref = it.get_output(0).reshape(-1)
        got = dep.model(xs.transpose(0, 3, 1, 2)).numpy().reshape(-1)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ref)


def test_fully_connected_multiplier_in_double(tmp_path: Path) -> None:
    """Per-tensor FC: the pip TFLM computes in_scale * w_scale / out_scale in double (as conv does); the float32
    product would give a Q31 multiplier 22 units lower and these three accumulators one code higher each."""
    net = Net()
    in_s, w_s = 0.064059205, 0.027708884
    x = net.act((1, 1), in_s, 0)
    w = net.add((3, 1), "int8", w_s, 0, 0, np.ones((3, 1), np.int8))
    b = net.add((3,), "int32", in_s * w_s, 0, 0, np.array([-7947774, -7674889, -6242243], np.int32))
    y = net.op("FULLY_CONNECTED", [x, w, b], [net.act((1, 3), 121.09332, 0)], "FullyConnectedOptions")
    _, dep, _ = _deploy(net, x, y, tmp_path)
    got = dep.model.run_int8(np.zeros((1, 1, 1, 1), np.int8))
    np.testing.assert_array_equal(got.reshape(-1), [-117, -113, -92])
    check(net, x, y, tmp_path)


@pytest.mark.parametrize("case", ["add_self", "reshape_only", "softmax_of_fc_4d"])
def test_small_graphs(case: str, tmp_path: Path) -> None:
    """Corner graphs: an add of a tensor with itself, a model that only reshapes its input, an FC declaring a
    [1, 1, 1, n] output (keep_num_dims) fed to a softmax."""
    net = Net(seed=11)
    x = net.act((1, 3, 4, 2), 0.05, -3)
    if case == "add_self":
        y = net.add_op(x, x, (0.08, 2))
    elif case == "reshape_only":
        y = net.reshape(x, (1, 24))
    else:
        f = net.fc(x, 6)
        net.tensors[f].shape = (1, 1, 1, 6)
        net.ops[-1].fields["KeepNumDims"] = True
        y = net.softmax(f)
    check(net, x, y, tmp_path)


def test_uint8_ends(tmp_path: Path) -> None:
    """QUANTIZE uint8 -> int8 first and int8 -> uint8 last (same scale, zero point + 128): TFLite shifts the codes
    by 128, so the C engine's int8 codes are TFLM's uint8 codes - 128 on both ends."""
    net = Net(seed=12)
    xu = net.act((1, 6, 6, 3), 0.04, 133, dtype="uint8")
    x = net.op("QUANTIZE", [xu], [net.act((1, 6, 6, 3), 0.04, 5)], "QuantizeOptions")
    c = net.conv(x, 4, (3, 3), 2, "SAME", "RELU", out_q=(0.09, -100))
    y = net.op("QUANTIZE", [c], [net.act((1, 3, 3, 4), 0.09, 28, dtype="uint8")], "QuantizeOptions")
    data = net.to_bytes([xu], [y])
    (tmp_path / "u.tflite").write_bytes(data)
    dep = deploy_graph(load_tflite(tmp_path / "u.tflite"), DeployConfig())
    it = tflm.runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
    rng = np.random.default_rng(3)
    for trial in range(3):
        xs = rng.integers(0, 256, (1, 6, 6, 3)).astype(np.uint8)
        it.set_input(xs, 0)
        it.invoke()
        ref = it.get_output(0).reshape(-1).astype(np.int64)
        got = dep.model.run_int8((xs.astype(np.int16) - 128).astype(np.int8).transpose(0, 3, 1, 2)).reshape(-1)
        np.testing.assert_array_equal(got + 128, ref, err_msg=f"trial {trial}")


# (PAD ((top, bottom), (left, right)), PADV2 value or None, consumer: conv padding / "dw")
PADS = [
    (((0, 1), (0, 1)), None, "VALID"),  # Keras ZeroPadding2D before a stride-2 VALID conv
    (((1, 1), (1, 1)), None, "dw"),
    (((2, 1), (1, 3)), None, "SAME"),  # the PAD's rows and the conv's own padding add up
    (((1, 0), (0, 2)), 5, "VALID"),  # PADV2 with the zero point as its constant
]


@pytest.mark.parametrize("hw,value,consumer", PADS)
def test_pad_folded_into_conv(hw: tuple[tuple[int, int], tuple[int, int]], value: int | None, consumer: str,
                              tmp_path: Path) -> None:  # fmt: skip
    """PAD (zero points, same quantization) read only by a conv folds into the conv's padding, bit-exact."""
    net = Net(seed=13)
    x = net.act((1, 7, 6, 3), 0.05, 5)
    p = net.pad(x, hw, value)
    if consumer == "dw":
        y = net.conv(p, 0, (3, 3), 2, "VALID", depth_multiplier=1)
    else:
        y = net.conv(p, 4, (3, 3), 2, consumer, "RELU")
    graph, _, _ = _deploy(net, x, y, tmp_path)
    assert [op.kind for op in graph.ops] == ["quantize", "depthwise" if consumer == "dw" else "conv"]
    check(net, x, y, tmp_path)


def test_view_keeps_its_source(tmp_path: Path) -> None:
    """A RESHAPE view of a tensor that a depthwise (which may run in place) also reads: the view, read last,
    still sees the conv's output."""
    net = Net(seed=21)
    x = net.act((1, 4, 4, 4), 0.05, 0)
    c = net.conv(x, 4, (3, 3), 1, "SAME", out_q=(0.2, 3))
    r = net.reshape(c, (1, 64))
    d = net.conv(c, 0, (3, 3), 1, "SAME", depth_multiplier=1, out_q=(0.3, -3))
    y = net.add_op(net.reshape(d, (1, 64)), r, (0.4, 1))
    check(net, x, y, tmp_path)


def test_sequence_input(tmp_path: Path) -> None:
    """A [1, T, C] input (keyword spotting's frames x features), reshaped to a map, and a softmax over [1, T, C]."""
    net = Net(seed=23)
    x = net.act((1, 12, 5), 0.05, -1)
    c = net.conv(net.reshape(x, (1, 12, 5, 1)), 4, (3, 3), 2, "SAME", "RELU")
    y = net.softmax(net.reshape(c, (1, 6, 12)))
    check(net, x, y, tmp_path)


@pytest.mark.parametrize("hw", [((2, 0), (2, 0)), ((0, 2), (0, 2))])
def test_pad_folded_into_depthwise_between_convs(hw: tuple[tuple[int, int], tuple[int, int]], tmp_path: Path) -> None:
    """One-sided padding wider than the kernel's half folded into a depthwise the planner may run in place."""
    net = Net(seed=24)
    x = net.act((1, 6, 6, 8), 0.05, 0)
    c = net.conv(x, 8, (1, 1), 1, "VALID", out_q=(0.2, 3))
    d = net.conv(net.pad(c, hw), 0, (3, 3), 1, "VALID", depth_multiplier=1, out_q=(0.3, -3))
    y = net.conv(d, 4, (1, 1), 1, "VALID")
    check(net, x, y, tmp_path)


@pytest.mark.parametrize("where", ["map", "vector", "one_channel", "output"])
def test_requantize(where: str, tmp_path: Path) -> None:
    """int8 -> int8 QUANTIZE between layers (TFLite's Requantize) on a map, a vector, one channel, at the end."""
    net = Net(seed=25)
    x = net.act((1, 5, 4, 1 if where == "one_channel" else 3), 0.05, 4)
    c = net.conv(x, 1 if where == "one_channel" else 6, (3, 3), 1, "SAME", out_q=(0.15, -9))
    if where == "vector":
        c = net.fc(c, 12, out_q=(0.3, 7))
    shape = net.tensors[c].shape
    r = net.op("QUANTIZE", [c], [net.act(shape, 0.07, 20)], "QuantizeOptions")
    y = r if where == "output" else (net.fc(r, 5) if where == "vector" else net.conv(r, 4, (1, 1), 1, "VALID"))
    check(net, x, y, tmp_path)


def test_relu6_bound_divides_in_float32(tmp_path: Path) -> None:
    """TFLM quantizes the RELU6 bound as round(6.0f / scale) in float32: for scale 2.4f that is 2.5f -> 3 (code
    -125), where a float64 division gives 2.4999999 -> 2 (code -126). Outputs above 6 pin the float32 rule."""
    net = Net(seed=26)
    x = net.act((1, 5, 5, 3), 0.1, 0)
    y = net.conv(x, 8, (3, 3), 1, "SAME", "RELU6", out_q=(2.4, -128))
    _, dep, _ = _deploy(net, x, y, tmp_path)
    got = dep.model.run_int8(np.full((1, 3, 5, 5), 127, np.int8))
    assert got.max() <= -125 and (got == -125).any()
    check(net, x, y, tmp_path)


@pytest.mark.parametrize(
    ("keep_dims", "out_q", "hw"),
    [(False, None, (3, 3)), (False, (0.02, 5), (5, 7)), (True, None, (4, 4)), (True, (0.03, -3), (6, 5))],
)
def test_mean_over_the_spatial_axes(keep_dims: bool, out_q: tuple[float, int] | None, hw: tuple[int, int],
                                    tmp_path: Path) -> None:  # fmt: skip
    net = Net(seed=7)
    x = net.act((1, *hw, 6), 0.05, -10)
    scale, zp = out_q or net.q(x)
    y = net.act((1, 1, 1, 6) if keep_dims else (1, 6), scale, zp)
    axes = net.add((2,), "int32", data=np.array([1, 2], np.int32))
    net.op("MEAN", [x, axes], [y], "ReducerOptions", KeepDims=keep_dims)
    check(net, x, y, tmp_path, trials=6)
