import torch

from leanml.nas.channel_sort import SORT_IMPORTANCE, channel_groups, sort_channels_
from leanml.prune.importance import channel_scores
from tests.nas.test_supernet import perturbed_supernet


def test_sorting_channels_keeps_the_largest_network_and_orders_importance(space):
    net = perturbed_supernet(space)
    arch = space.largest()
    x = torch.randn(4, 1, arch.resolution, arch.resolution)
    with torch.no_grad():
        before = net.set_active(arch)(x)
        narrow_before = net.set_active(space.smallest())(x[..., :12, :12])
    sort_channels_(net)
    with torch.no_grad():
        assert torch.allclose(net.set_active(arch)(x), before, atol=1e-5)
        assert not torch.allclose(net.set_active(space.smallest())(x[..., :12, :12]), narrow_before)
    modules = dict(net.named_modules())
    for group in channel_groups(net):
        score = channel_scores(SORT_IMPORTANCE, group, modules, None)
        assert (score[:-1] >= score[1:]).all(), group.producers
