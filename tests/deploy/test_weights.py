"""4-bit weights in the deployed C: packing round trip, and a model whose layers hold 4-bit weights gives the same
output codes packed (two per byte, the w4 kernels) as unpacked (the int8 kernels), with less flash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leanml.deploy.engine import DeployConfig, deploy_graph
from leanml.deploy.ir import Conv, Linear, lower
from leanml.deploy.weights import fits_w4, pack_w4, unpack_w4
from leanml.models import build_model
from tests.deploy.test_engine import integer_model


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1001])
def test_pack_round_trip(n: int) -> None:
    w = np.random.default_rng(n).integers(-8, 8, size=n).astype(np.int8)
    packed = pack_w4(w)
    assert packed.dtype == np.uint8 and len(packed) == (n + 1) // 2
    assert np.array_equal(unpack_w4(packed, n), w)
    assert fits_w4(w) and not fits_w4(np.array([8], np.int8))


def four_bit_graph(name: str) -> object:
    """The model lowered, then every weighted layer's weights squeezed into [-7, 7] (as mixed precision leaves a
    4-bit layer: symmetric codes held in int8)."""
    torch.manual_seed(0)
    graph = lower(integer_model(build_model(name)), (1, 28, 28))
    for op in graph.ops:
        if isinstance(op, (Conv, Linear)):
            op.weight = np.clip(op.weight // 16, -7, 7).astype(np.int8)
    return graph


@pytest.mark.parametrize(("name", "patch"), [("vgg", 0), ("mobilenetv2", 0), ("mobilenetv2", 3)])
def test_packed_weights_are_bit_exact_and_smaller(name: str, patch: int) -> None:
    """Plain layers, row-streamed blocks (the default plan streams the first vgg convs) and patch stages."""
    x = np.random.default_rng(0).integers(-128, 128, size=(6, 1, 28, 28)).astype(np.int8)
    packed = deploy_graph(four_bit_graph(name), DeployConfig(sub_byte_weights=True, patch=patch))  # type: ignore[arg-type]
    dense = deploy_graph(four_bit_graph(name), DeployConfig(sub_byte_weights=False, patch=patch))  # type: ignore[arg-type]
    assert np.array_equal(packed.model.run_int8(x), dense.model.run_int8(x))
    ops = [inner for op in packed.graph.ops for inner in getattr(op, "ops", [op])]  # patch stages hold ops
    packed_ops = [op for op in ops if getattr(op, "weight_bits", 8) == 4]
    saved = dense.graph.weight_bytes() - packed.graph.weight_bytes()
    assert saved == sum(op.weight.size // 2 for op in packed_ops) > 0  # half of every packed weight byte
    assert "uint8_t" in packed.sources[next(k for k in packed.sources if k.endswith(".c"))]


def test_int8_weights_stay_int8() -> None:
    graph = lower(integer_model(build_model("vgg")), (1, 28, 28))
    dep = deploy_graph(graph, DeployConfig())
    assert all(getattr(op, "weight_bits", 8) == 8 for op in dep.graph.ops)


def test_packed_weights_run_bit_exact_on_cortex_m4() -> None:
    from leanml.deploy.mcu import run_on_target, tools_missing

    if tools_missing():
        pytest.skip(f"needs the Cortex-M toolchain: {' && '.join(tools_missing())}")
    torch.manual_seed(1)
    graph = lower(integer_model(build_model("vgg", layers=[4, "M", 8])), (1, 28, 28))
    for op in graph.ops:
        if isinstance(op, (Conv, Linear)):
            op.weight = np.clip(op.weight // 16, -7, 7).astype(np.int8)
    dep = deploy_graph(graph, DeployConfig(target="cortex-m4", in_place=False))
    assert sum(getattr(op, "weight_bits", 8) == 4 for op in dep.graph.ops) >= 2
    x = np.random.default_rng(2).integers(-128, 128, size=(2, 28, 28, 1)).astype(np.int8)
    run = run_on_target(dep, x, "cortex-m4")
    assert run.matches_host and np.array_equal(run.outputs, dep.model.run_int8(x.transpose(0, 3, 1, 2)))
