import random

import pytest

from leanml.errors import LeanmlError
from leanml.nas.efficiency import EfficiencyModel
from leanml.nas.latency import LatencyConfig, LatencyTable, build_table, layer_keys, space_keys, validate_table
from leanml.nas.space import SpaceConfig
from leanml.nas.subnet import net_config
from leanml.nas.supernet import Supernet, get_subnet
from leanml.profile import profile_model

FAST = LatencyConfig(warmup=1, repeats=2)


@pytest.mark.parametrize("which", ["tiny", "default"])
def test_macs_params_and_peak_sram_are_exactly_what_profile_reports(which, space):
    space = space if which == "tiny" else SpaceConfig()
    net = Supernet(space)
    model = EfficiencyModel(space)
    archs = [space.largest(), space.smallest()] + [space.sample(random.Random(s)) for s in range(6)]
    for arch in archs:
        prof = profile_model(get_subnet(net, arch), (1, arch.resolution, arch.resolution), measure=False)
        eff = model(arch)
        assert (eff.macs, eff.params, eff.peak_sram) == (prof.macs, prof.params, prof.peak_activation_bytes(1))
        assert eff.latency_ms is None


def test_smallest_architecture_is_the_cheapest_in_every_resource():
    space = SpaceConfig()
    model = EfficiencyModel(space)
    low = model(space.smallest())
    for seed in range(50):
        eff = model(space.sample(random.Random(seed)))
        assert eff.macs >= low.macs and eff.params >= low.params and eff.peak_sram >= low.peak_sram
    rng = random.Random(0)
    arch = space.largest()
    while (nxt := space.shrink(arch, rng)) is not None:  # every shrink step is cheaper or equal
        a, b = model(arch), model(nxt)
        assert b.macs <= a.macs and b.params <= a.params and b.peak_sram <= a.peak_sram
        arch = nxt


def test_latency_table_covers_the_space_and_sums_layers(tmp_path, space):
    table = build_table(space, FAST, progress=False)
    assert set(table.entries) == set(space_keys(space)) and table.meta["engine"] == "pytorch-eager"
    assert all(v > 0 for v in table.entries.values())
    model = EfficiencyModel(space, table)
    for seed in range(5):
        arch = space.sample(random.Random(seed))
        keys = layer_keys(net_config(space, arch), arch.resolution)
        assert model(arch).latency_ms == pytest.approx(sum(table.entries[k] for k in keys))
    table.save(tmp_path / "lat")
    assert LatencyTable.load(tmp_path / "lat").entries == table.entries
    check = validate_table(table, space, [space.smallest(), space.largest()], FAST, progress=False)
    assert len(check.measured_ms) == 2 and check.mean_abs_rel_error >= 0
    other = SpaceConfig(stages=[[8, 1, 2], [16, 1, 2]], extra_depth=1, stem=8, head=16, resolutions=[20])
    with pytest.raises(LeanmlError, match="no entry"):
        EfficiencyModel(other, table)(other.smallest())


def test_rank_statistics():
    from leanml.nas.stats import kendall_tau, ranks, spearman_rho

    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 1, 1], [1, 2, 3]) == 0.0
    assert ranks([3, 1, 2]) == [3.0, 1.0, 2.0]
    assert spearman_rho([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(1.0)


def test_peak_sram_is_the_deploy_planners_figure_for_the_int8_subnet():
    import torch

    from leanml.deploy.ir import lower
    from leanml.deploy.planner import memory_report, plan_memory
    from leanml.quant import QuantSim, convert
    from tests.conftest import randomize_bn

    space = SpaceConfig()
    net = randomize_bn(Supernet(space))
    model = EfficiencyModel(space)
    for seed in range(2):
        arch = space.sample(random.Random(seed))
        r = arch.resolution
        sim = QuantSim.from_model(get_subnet(net, arch).eval())
        sim.calibrate([torch.randn(2, 1, r, r)])
        graph = lower(convert(sim), (1, r, r))
        layout = plan_memory(graph, in_place=False)
        report = memory_report(graph, plan_memory(graph))
        # the planner's lifetimes without in-place depthwise are the NAS figure (the TFLite-Micro-style arena
        # places them with no gap here); deploy's in-place depthwise can only go lower
        assert layout.lifetimes.peak_numel == model(arch).peak_sram == report.tflm_bytes
        assert report.arena_bytes <= model(arch).peak_sram
