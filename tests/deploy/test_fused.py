"""In-place 1x1 convs and row-streamed residual blocks: the same bits as the reference and the plain layer-by-layer
C (SIMD and scalar builds), less SRAM; the five shared ``.tflite`` models within half of TFLite Micro's arena."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from leanml.deploy.build import OPT_FLAGS, CompiledModel, compile_shared
from leanml.deploy.codegen import c_prefix, generate_c
from leanml.deploy.engine import DeployConfig, Deployment, deploy, verify
from leanml.deploy.ir import Add, Conv, Conv1x1, lower
from leanml.deploy.planner import POINTWISE_CHUNK_BYTES, plan_memory, timeline_buffers
from leanml.deploy.stream import stream_candidates
from leanml.errors import LeanmlError
from tests.deploy.test_engine import _cache, integer_model  # noqa: F401  (fixture: build cache per session)

# TFLite Micro's arena (x86 pip interpreter, "Arena allocation total") per shared model, from its README
TFLM_ARENA = {"ad01_int8": 3984, "kws_ref_model": 24272, "pretrainedResnet_quant": 55984, "person_detect": 85264,
              "vww_96_int8": 103680}  # fmt: skip


class Pointwise(nn.Module):
    """1x1 convs that shrink, keep and grow channels (the two in-place directions), chunks not dividing the map."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 40, 3, padding=1)
        self.shrink = nn.Conv2d(40, 24, 1)
        self.keep = nn.Conv2d(24, 24, 1)
        self.grow = nn.Conv2d(24, 160, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(160, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.grow(torch.relu(self.keep(self.shrink(torch.relu(self.stem(x))))))
        return self.fc(torch.flatten(self.pool(y), 1))


class Residual(nn.Module):
    """An identity residual block and a downsampling one (3x3 stride 2 + a 1x1 stride-2 shortcut), odd sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.a1, self.a2 = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.Conv2d(32, 32, 3, padding=1)
        self.short = nn.Conv2d(16, 32, 1, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.a2(torch.relu(self.a1(x))))
        x = self.b2(torch.relu(self.b1(x))) + self.short(x)
        return self.fc(torch.flatten(self.pool(x), 1))


class Chain(nn.Module):
    """A high-resolution conv chain (stride-2 stem, depthwise, 1x1 grow, strided depthwise, 1x1) to stream."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.dw1 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw1 = nn.Conv2d(8, 24, 1)
        self.dw2 = nn.Conv2d(24, 24, 3, stride=2, padding=1, groups=24)
        self.pw2 = nn.Conv2d(24, 16, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.pw1(torch.relu(self.dw1(torch.relu(self.stem(x))))))
        return self.fc(torch.flatten(self.pool(self.pw2(torch.relu(self.dw2(y)))), 1))


class Odd(nn.Module):
    """Odd geometry for forced streaming: 5x5 stride 2, grouped, valid strided depthwise, 1x1 stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 8, 5, stride=2, padding=2)
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.c = nn.Conv2d(8, 8, 3, stride=2, padding=0, groups=8)
        self.d = nn.Conv2d(8, 12, 1, stride=2)
        self.e = nn.Conv2d(12, 6, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.e(torch.relu(self.d(torch.relu(self.c(torch.relu(self.b(torch.relu(self.a(x)))))))))
        return self.fc(torch.flatten(self.pool(y), 1))


def scalar_build(dep: Deployment) -> CompiledModel:
    """The same deployment built with the plain `_ref` kernels only (-DDK_NO_SIMD)."""
    m = dep.model
    library = compile_shared(dep.sources, (*OPT_FLAGS, "-DDK_NO_SIMD"))
    return CompiledModel(
        library, c_prefix(dep.config.prefix), m.input_chw, m.output_size, m.output_perm, m.output_scale, m.output_zp
    )


@pytest.mark.parametrize(("module", "shape"), [(Pointwise, (1, 27, 23)), (Residual, (1, 27, 25)), (Chain, (1, 57, 49))])
def test_in_place_and_streamed_ops_equal_the_reference_and_the_plain_build(module, shape):
    imodel = integer_model(module(), shape)
    fused, plain = deploy(imodel, DeployConfig()), deploy(imodel, DeployConfig(in_place=False))
    x = torch.randn(4, *shape) * 1.5
    assert verify(fused, imodel, x).identical and verify(plain, imodel, x).identical
    q = imodel.quantize_input(x)
    assert np.array_equal(scalar_build(fused).run_int8(q), plain.model.run_int8(q))
    assert fused.layout.arena_bytes < plain.layout.arena_bytes
    if module is Pointwise:
        ones = [op.name for op in fused.graph.ops if isinstance(op, Conv1x1)]
        assert set(ones) <= fused.layout.in_place and len(ones) == 3
    else:
        blocks = fused.layout.blocks.values()
        assert blocks and all(isinstance(b.last, Add if module is Residual else Conv) for b in blocks)
        assert "/* runs row by row" in fused.sources["leanml_model.c"]


def test_in_place_pointwise_peak_is_the_larger_map_plus_a_chunk():
    imodel = integer_model(Pointwise(), (1, 27, 23))
    dep = deploy(imodel, DeployConfig())
    graph, layout = dep.graph, dep.layout
    for i, op in enumerate(graph.ops):
        if isinstance(op, Conv1x1):  # live at its step: max(in, out) + the chunk, not in + out
            big = max(op.out_numel, int(np.prod(op.in_shapes[0])))
            live = layout.lifetimes.live_numel[i]
            assert live == big, (op.name, live, big)
            assert layout.scratch_bytes[op.name] <= max(POINTWISE_CHUNK_BYTES, op.in_shapes[0][1] * op.in_shapes[0][2])
    # the one memory model: the planner's per-step figure is the placement's lower bound
    assert layout.peak_live_bytes <= layout.arena_bytes


def test_streamed_blocks_have_no_mac_overhead_and_small_line_buffers():
    graph = lower(integer_model(Residual(), (1, 27, 25)), (1, 27, 25))
    layout = plan_memory(graph)
    assert layout.blocks
    for block in layout.blocks.values():
        assert block.macs() == sum(op.macs() for op in (*block.ops, block.last))
        assert block.scratch_bytes < block.last.out_numel  # a few rows, never a whole map
    assert set(layout.streamed) <= {op.name for op in graph.ops}  # the graph (and its MACs) is unchanged


def test_plan_without_in_place_is_the_tflm_style_plan():
    imodel = integer_model(Residual(), (1, 27, 25))
    graph = lower(imodel, (1, 27, 25))
    layout = plan_memory(graph, in_place=False)
    assert not layout.in_place and not layout.blocks and not layout.streamed


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TFLM_ARENA))
def test_shared_models_are_bit_exact_within_half_of_tflm_arena(name):
    if importlib.util.find_spec("tflite_micro") is None or importlib.util.find_spec("tflite") is None:
        pytest.skip("needs tflite and tflite_micro: pip install 'leanml[tflite]' tflite-micro")
    from leanml.deploy.engine import deploy_graph
    from leanml.deploy.tflite import load_tflite
    from tests.deploy.test_tflite import MODELS, leanml_outputs, model_path, readme_rand_input, tflm_outputs

    path = model_path(name)
    dep = deploy_graph(load_tflite(path), DeployConfig())
    assert dep.layout.arena_bytes <= 0.5 * TFLM_ARENA[name], dep.layout.arena_bytes
    rand = readme_rand_input(MODELS[name][0])[0]
    other = np.random.default_rng(1).integers(-128, 128, rand.shape).astype(np.int8)
    inputs = np.stack([np.zeros_like(rand), rand, other])
    want = tflm_outputs(path, inputs)
    assert np.array_equal(leanml_outputs(dep, inputs), want)
    h, w, c = dep.graph.input_shape
    nchw = inputs.reshape(len(inputs), h, w, c).transpose(0, 3, 1, 2)
    assert np.array_equal(scalar_build(dep).run_int8(nchw).astype(np.int8), want)


def test_timeline_buffers_fit_the_arena_and_never_collide():
    imodel = integer_model(Chain(), (1, 57, 49))
    dep = deploy(imodel, DeployConfig())
    bufs = timeline_buffers(dep.graph, dep.layout)
    rows = [b for b in bufs if str(b["tensor"]).endswith(".rows")]
    regions = [b for b in bufs if b not in rows]
    assert rows and all(b["offset"] + b["size"] <= dep.layout.arena_bytes for b in bufs)
    for r in rows:  # line buffers lie inside their block's scratch
        scratch = next(b for b in regions if b["tensor"] == f"{dep.graph.ops[r['first_op']].name}.scratch")
        assert scratch["offset"] <= r["offset"] and r["offset"] + r["size"] <= scratch["offset"] + scratch["size"]
    for a in regions:  # live at a common op: apart, or one written over the other (same offset)
        for b in regions:
            live = a["first_op"] <= b["last_op"] and b["first_op"] <= a["last_op"]
            apart = a["offset"] + a["size"] <= b["offset"] or b["offset"] + b["size"] <= a["offset"]
            assert a is b or not live or apart or a["offset"] == b["offset"], (a, b)


@pytest.mark.slow  # ~40 s: every grid tries every cut, each planned with streaming
def test_auto_patch_picks_patches_for_mobilenetv2_only_when_they_beat_streaming():
    from leanml.deploy.engine import deploy_graph
    from leanml.deploy.patch import PatchStage, auto_patch, stage_summary
    from leanml.models import build_model

    imodel = integer_model(build_model("mobilenetv2"))
    graph = lower(imodel, (1, 28, 28))
    patched = auto_patch(graph)
    summary = stage_summary(patched)
    assert summary is not None and float(summary["patch_extra_macs_pct"]) <= 5.0
    assert plan_memory(patched).arena_bytes <= 0.95 * plan_memory(graph).arena_bytes
    dep = deploy_graph(patched, DeployConfig())
    assert any(isinstance(op, PatchStage) for op in dep.graph.ops)
    assert verify(dep, imodel, torch.randn(3, 1, 28, 28) * 1.5).identical
    chain = lower(integer_model(Chain(), (1, 57, 49)), (1, 57, 49))
    assert auto_patch(chain, max_extra_macs_pct=0.0) is chain  # every patching costs MACs here


@pytest.mark.slow  # ~30 s: one build per range
def test_every_streamable_range_of_odd_convs_is_bit_exact():
    shape = (2, 31, 29)
    imodel = integer_model(Odd(), shape)
    graph = lower(imodel, shape)
    plain = deploy(imodel, DeployConfig(in_place=False))
    q = imodel.quantize_input(torch.randn(3, *shape) * 1.5)
    want = plain.model.run_int8(q)
    ranges = [r for r in stream_candidates(graph, max_ops=5) if len(r) in (2, 5)]
    assert len(ranges) >= 5
    m = plain.model
    for steps in ranges:
        layout = plan_memory(graph, stream=[steps])
        block = next(iter(layout.blocks.values()))
        library = compile_shared(generate_c(graph, layout, "fz"))
        got = CompiledModel(library, "fz", m.input_chw, m.output_size, m.output_perm, m.output_scale, m.output_zp)
        assert np.array_equal(got.run_int8(q), want), (steps, block.in_place)
    with pytest.raises(LeanmlError, match="cannot be row-streamed"):
        plan_memory(graph, stream=[[len(graph.ops) - 2, len(graph.ops) - 1]])  # flatten + linear
