import torch

from leanml.models import build_model
from leanml.prune.depgraph import permute_channels_, trace_channel_groups
from tests.conftest import randomize_bn


def test_permuting_every_group_keeps_the_function():
    # residual adds, depthwise convs, batch norms and the flatten into the classifier all follow the permutation
    for name in ("mobilenetv2", "resnet", "vgg"):
        model = randomize_bn(build_model(name))
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        x = torch.randn(2, 1, 28, 28)
        with torch.no_grad():
            before = model(x)
        modules = dict(model.named_modules())
        for group in trace_channel_groups(model, (1, 28, 28)):
            if not group.fixed:
                permute_channels_(group, modules, torch.randperm(group.size))
        with torch.no_grad():
            assert torch.allclose(model(x), before, atol=1e-4), name
        assert any(not torch.equal(v, weights[k]) for k, v in model.state_dict().items()), name
