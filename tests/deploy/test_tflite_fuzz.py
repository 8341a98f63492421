"""Seeded fuzzing of the ``.tflite`` importer: damaged bytes and damaged structure.

Bytes: the shared :func:`tests.fuzz_mutations.byte_mutations` of a small written model and of MLPerf Tiny's
``kws_ref_model.tflite``. Structure: a small model whose tensors, operators and options get out-of-range,
negative, non-finite or mismatched values, written as a well-formed flatbuffer. Every case must end in a
:class:`LeanmlError` or in a graph the planner and code generator accept: never another exception, never a hang.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite")

from leanml.deploy.codegen import generate_c
from leanml.deploy.planner import plan_memory
from leanml.deploy.tflite import load_tflite
from leanml.errors import LeanmlError
from tests.deploy.tflite_models import TYPES, Net
from tests.fuzz_mutations import byte_mutations

KWS = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "tflite" / "kws_ref_model.tflite"


def small_net() -> tuple[Net, list[int], list[int]]:
    """A float-ended model with every supported opcode: QUANTIZE, CONV_2D, PAD, DEPTHWISE_CONV_2D, MAX_POOL_2D,
    ADD, AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX, DEQUANTIZE."""
    net = Net(seed=0)
    xf = net.add((1, 8, 8, 2), "float32")
    x = net.op("QUANTIZE", [xf], [net.act((1, 8, 8, 2), 0.05, 3)], "QuantizeOptions")
    c = net.conv(x, 4, (3, 3), 2, "SAME", "RELU6")
    d = net.conv(net.pad(c, ((0, 1), (0, 1))), 0, (2, 2), 1, "VALID", "RELU", depth_multiplier=1, out_q=(0.07, -2))
    m = net.pool(c, "max", (3, 3), 1, "SAME")
    a = net.add_op(d, m, (0.1, 0), "RELU")
    p = net.pool(a, "avg", (2, 2), 2)
    f = net.fc(net.reshape(p, (1, 16)), 5, out_q=(0.2, 1))
    y = net.op("DEQUANTIZE", [net.softmax(f)], [net.add((1, 5), "float32")], "DequantizeOptions")
    return net, [xf], [y]


def _import(data: bytes, path: Path) -> None:
    """Import ``data``: a LeanmlError is an accepted outcome; a graph must also plan and generate C."""
    path.write_bytes(data)
    try:
        graph = load_tflite(path)
    except LeanmlError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    generate_c(graph, plan_memory(graph, True, "best"))


def test_small_model_imports(tmp_path: Path) -> None:
    net, ins, outs = small_net()
    _import(net.to_bytes(ins, outs), tmp_path / "m.tflite")
    assert len(load_tflite(tmp_path / "m.tflite").ops) == 9  # quantize + 8 layers (DEQUANTIZE is in the C API)


def test_byte_mutations_small(tmp_path: Path) -> None:
    net, ins, outs = small_net()
    data = net.to_bytes(ins, outs)
    for case in byte_mutations(data, header_len=len(data) // 2, count=200, seed=1):
        try:
            _import(case.data, tmp_path / "m.tflite")
        except Exception as exc:  # name the case in the failure
            raise AssertionError(f"case {case.name}: {type(exc).__name__}: {exc}") from exc


def test_byte_mutations_kws(tmp_path: Path) -> None:
    if not KWS.is_file():
        pytest.skip(f"{KWS} is missing (the shared reference models)")
    data = KWS.read_bytes()
    for case in byte_mutations(data, header_len=8192, count=80, seed=2):
        try:
            _import(case.data, tmp_path / "m.tflite")
        except Exception as exc:
            raise AssertionError(f"case {case.name}: {type(exc).__name__}: {exc}") from exc


BAD_INTS = (0, -1, -7, 2, 3, 9, 1000, 2**20, 2**31 - 1, -(2**31))
BAD_FLOATS = (0.0, -1.0, float("nan"), float("inf"), 1e-30, 1e30, 3.0e-39)


def _mutate(net: Net, ins: list[int], outs: list[int], rng: random.Random) -> str:
    """Damage one seeded thing of ``net`` (or the graph's inputs/outputs) in place; returns what was done."""
    kind = rng.choice(["shape", "dtype", "scale", "zero_point", "qdim", "data", "opcode", "inputs", "outputs",
                       "option", "order", "graph"])  # fmt: skip
    t = net.tensors[rng.randrange(len(net.tensors))]
    o = net.ops[rng.randrange(len(net.ops))]
    if kind == "shape":
        t.shape = rng.choice([(), (1,), (0, 3), (-1, 4, 4, 2), (1, 2**20, 2**20, 1), (1, 1, 1, 1, 1, 1, 1),
                              tuple(max(1, d + rng.choice([-1, 1])) for d in t.shape)])  # fmt: skip
    elif kind == "dtype":
        t.dtype = rng.choice(sorted(TYPES))
    elif kind == "scale":
        t.scale = rng.choice([[], [rng.choice(BAD_FLOATS)], [0.1] * 3, [0.1] * 4])
        t.zero_point = [0] * len(t.scale)
    elif kind == "zero_point":
        t.zero_point = [rng.choice((*BAD_INTS, 128, -129, 255))] * len(t.zero_point)
    elif kind == "qdim":
        t.qdim = rng.choice([-1, 1, 3, 7])
    elif kind == "data":
        data = np.zeros(rng.choice([0, 1, 7]), np.int8) if t.data is None else t.data.reshape(-1)[: rng.randrange(4)]
        t.data = data
    elif kind == "opcode":
        o.opcode = rng.choice(
            [
                "CONV_2D",
                "DEPTHWISE_CONV_2D",
                "FULLY_CONNECTED",
                "ADD",
                "SOFTMAX",
                "RESHAPE",
                "MAX_POOL_2D",
                "AVERAGE_POOL_2D",
                "QUANTIZE",
                "DEQUANTIZE",
                "MEAN",
                "PAD",
                "CUSTOM",
            ]
        )
    elif kind in ("inputs", "outputs"):
        idx = o.inputs if kind == "inputs" else o.outputs
        choice = rng.randrange(4)
        if choice == 0 and idx:
            idx[rng.randrange(len(idx))] = rng.choice([-1, 999, len(net.tensors) - 1, 0])
        elif choice == 1:
            idx.clear()
        elif choice == 2:
            idx.append(rng.randrange(len(net.tensors)))
        else:
            rng.shuffle(idx)
    elif kind == "option" and o.fields:
        key = rng.choice(sorted(o.fields))
        o.fields[key] = rng.choice(BAD_FLOATS) if key == "Beta" else rng.choice(BAD_INTS)
    elif kind == "order":
        i, j = rng.randrange(len(net.ops)), rng.randrange(len(net.ops))
        net.ops[i], net.ops[j] = net.ops[j], net.ops[i]
    elif kind == "graph":
        target = rng.choice([ins, outs])
        target[:] = rng.choice([[], [999], [0], target + target, [len(net.tensors) - 1]])
    return kind


def test_structure_mutations(tmp_path: Path) -> None:
    base, base_ins, base_outs = small_net()
    rng = random.Random(3)
    outcomes: dict[str, int] = {}
    for i in range(250):
        net, ins, outs = copy.deepcopy(base), list(base_ins), list(base_outs)
        kinds = [_mutate(net, ins, outs, rng) for _ in range(rng.randrange(1, 3))]
        try:
            data = net.to_bytes(ins, outs)
        except (OverflowError, ValueError, TypeError):  # the writer cannot write it (a value too big for its field)
            continue
        try:
            _import(data, tmp_path / "m.tflite")
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except Exception as exc:
            raise AssertionError(f"case {i} ({kinds}): {type(exc).__name__}: {exc}") from exc
    assert 0 < outcomes.get("ok", 0) < 250  # some damage is harmless (a shuffled no-op), most is refused


def test_mutation_kinds_cover_options() -> None:
    """Each opcode of the small model carries its options table, so option damage reaches every lowering."""
    net, _, _ = small_net()
    check: Callable[[str], bool] = lambda code: any(o.opcode == code and o.options for o in net.ops)  # noqa: E731
    assert all(check(c) for c in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SOFTMAX"))


@pytest.mark.parametrize("length", [2**31 - 1, 2**20, 100])
@pytest.mark.parametrize("vector", ["tensors", "operators"])
def test_huge_vector_length(vector: str, length: int, tmp_path: Path) -> None:
    """A damaged vector length is refused up front (or fails on the first entry past the end), never looped over."""
    import tflite

    net, ins, outs = small_net()
    data = bytearray(net.to_bytes(ins, outs))
    graph = tflite.Model.GetRootAsModel(data, 0).Subgraphs(0)
    field = {"tensors": 4, "operators": 10}[vector]  # SubGraph vtable slots
    start = graph._tab.Vector(graph._tab.Offset(field))  # first entry; the length is the uint32 before it
    data[start - 4 : start] = length.to_bytes(4, "little")
    path = tmp_path / "m.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(LeanmlError):
        load_tflite(path)
