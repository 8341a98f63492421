"""The static memory plan: no two live tensors ever overlap; in-place depthwise and scratch are accounted."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leanml.deploy.ir import Depthwise, lower
from leanml.deploy.planner import ALIGN, memory_report, place_buffers, plan_memory
from leanml.models import build_model
from leanml.profile import activation_buffers, trace_ops
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
            steps = [i for i, op in enumerate(graph.ops) if isinstance(op, Depthwise)]
            readers = [sum(op.inputs.count(graph.ops[i].inputs[0]) for op in graph.ops) for i in steps]
            assert [graph.ops[i].name in layout.in_place for i in steps] == [n == 1 for n in readers]
            assert len(layout.in_place) >= len(steps) - 1  # only the first block's input feeds a residual add
            for i in steps:
                if graph.ops[i].name not in layout.in_place:
                    continue
                saved = no_inplace.lifetimes.live_numel[i] - layout.lifetimes.live_numel[i]
                assert saved == graph.ops[i].out_numel
        # without in-place ops the lifetimes are the one memory model's, as profile reports them (int8)
        assert no_inplace.lifetimes.peak_numel == activation_buffers(trace_ops(model, (1, 28, 28))).peak_numel
