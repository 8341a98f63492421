"""The static memory plan: no two live tensors ever overlap; in-place depthwise and scratch are accounted."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leanml.deploy.ir import Depthwise, lower
from leanml.deploy.planner import ALIGN, memory_report, place_buffers, place_segments, plan_memory
from leanml.models import build_model
from leanml.profile import activation_buffers, trace_ops
from leanml.profile.memory import TensorNode, tensor_lifetimes
from leanml.quant import QuantSim, convert


def assert_no_overlap(segments, offsets):
    """No two segments of different buffers (each: list of (bytes, first, last) from the buffer's offset) that are
    live at a common step share a byte."""
    for i in range(len(segments)):
        assert offsets[i] % ALIGN == 0
        for j in range(i):
            for si, ai, bi in segments[i]:
                for sj, aj, bj in segments[j]:
                    live_together = ai <= bj and aj <= bi and si and sj
                    apart = offsets[i] + si <= offsets[j] or offsets[j] + sj <= offsets[i]
                    assert not live_together or apart, (i, j)


buffers = st.lists(
    st.tuples(st.integers(1, 5000), st.integers(0, 30), st.integers(0, 10)).map(lambda t: (t[0], t[1], t[1] + t[2])),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(buffers, st.sampled_from(["greedy_by_size", "greedy_by_start", "best"]))
def test_placement_never_overlaps_live_buffers(bufs, strategy):
    plan = place_buffers(bufs, strategy)
    assert_no_overlap([[b] for b in bufs], plan.offsets)
    lower_bound = max(sum(s for s, a, b in bufs if a <= t <= b) for t in range(42))
    assert lower_bound <= plan.arena_bytes <= sum(-(-s // ALIGN) * ALIGN for s, _, _ in bufs)


def integer_graph(name: str):
    torch.manual_seed(0)
    model = build_model(name).eval()
    sim = QuantSim.from_model(model)
    sim.calibrate([torch.randn(4, 1, 28, 28)])
    return model, lower(convert(sim), (1, 28, 28))


def test_plans_of_the_reference_models_are_sound_and_in_place_pays_on_mobilenetv2():
    for name in ("vgg", "resnet", "mobilenetv2"):
        model, graph = integer_graph(name)
        layout = plan_memory(graph)
        p = layout.placement
        assert_no_overlap(p.segments, p.offsets)
        report = memory_report(graph, layout)
        assert report.lower_bound_bytes <= report.arena_bytes <= report.tflm_bytes <= report.naive_bytes
        no_inplace = plan_memory(graph, in_place=False)
        if name == "mobilenetv2":  # in place, each depthwise step holds one map + one channel instead of two maps
            steps = [i for i, op in enumerate(graph.ops) if isinstance(op, Depthwise)
                     and op.name not in layout.streamed and op.name not in layout.blocks]  # fmt: skip
            assert len(steps) >= 3  # the others run row-streamed inside blocks
            readers = [sum(op.inputs.count(graph.ops[i].inputs[0]) for op in graph.ops) for i in steps]
            assert [graph.ops[i].name in layout.in_place for i in steps] == [n == 1 for n in readers]
            for i in steps:
                if graph.ops[i].name not in layout.in_place:
                    continue
                saved = no_inplace.lifetimes.live_numel[i] - layout.lifetimes.live_numel[i]
                assert saved == graph.ops[i].out_numel
        # without in-place ops the lifetimes are the one memory model's, as profile reports them (int8)
        assert no_inplace.lifetimes.peak_numel == activation_buffers(trace_ops(model, (1, 28, 28))).peak_numel


segment_buffers = st.lists(
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 20), st.integers(0, 6)), min_size=1, max_size=3).map(
        lambda segs: [(n, a, a + d) for n, a, d in segs]
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(segment_buffers, st.sampled_from(["greedy_by_size", "greedy_by_start", "best"]))
def test_segment_placement_never_overlaps_live_segments(bufs, strategy):
    plan = place_segments(bufs, strategy)
    assert_no_overlap(bufs, plan.offsets)
    for off, segs in zip(plan.offsets, bufs, strict=True):
        assert all(off + -(-n // ALIGN) * ALIGN <= plan.arena_bytes for n, _, _ in segs)


def test_a_buffer_grows_only_from_the_step_its_larger_tensor_is_written():
    nodes = [TensorNode("x", "x", (), 10, is_input=True), TensorNode("y", "pw", ("x",), 30, True),
             TensorNode("z", "fc", ("y",), 5)]  # fmt: skip
    plan = tensor_lifetimes(nodes, ["z"])
    assert len(plan.buffers) == 2 and plan.buffers[0].numel == 30
    assert plan.live_numel == [10, 30, 35]  # x alone, then x and y sharing a buffer: the larger, then y + z
    # two buffers: x/y growing at step 1 and one of 20 bytes at step 0: it fits in y's future tail
    assert place_segments([[(16, 0, 1), (48, 1, 2)], [(32, 0, 0)]], "greedy_by_size").arena_bytes == 48
