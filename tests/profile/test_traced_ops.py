from torch import nn

from leanml.profile import op_macs, op_shape, trace_ops


def test_traced_ops_take_their_kind_from_the_registry():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU6(), nn.Conv2d(4, 4, 3, groups=4),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(), nn.Linear(4, 2))  # fmt: skip
    kinds = [op_shape(n).kind for n in trace_ops(net, (1, 8, 8))]
    assert kinds == ["input", "conv", "norm", "activation", "depthwise", "pool", "view", "view", "linear", "other"]


def test_traced_macs_read_the_mac_table():
    nodes = {n.name: n for n in trace_ops(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(144, 3)),
                                          (2, 8, 8))}  # fmt: skip
    assert op_macs(nodes["0"]) == 4 * 6 * 6 * 1 * 9 and op_macs(nodes["2"]) == 3 * 144 and op_macs(nodes["1"]) == 0
