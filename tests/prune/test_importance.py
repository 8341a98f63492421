import torch

from leanml.models import build_model
from leanml.prune.depgraph import trace_channel_groups
from leanml.prune.importance import channel_scores


def test_l1_input_scores_the_columns_that_read_each_channel():
    model = build_model("vgg", layers=[4, "M", 6, "M"])
    group = trace_channel_groups(model, (1, 28, 28))[1]  # features.0's output, read by features.4
    reader = dict(model.named_modules())[group.consumers[0][0]]
    expected = reader.weight.detach().abs().sum(dim=(0, 2, 3))  # (4,)
    assert torch.allclose(channel_scores("l1_input", group, dict(model.named_modules()), None), expected)
