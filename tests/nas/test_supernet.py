import random

import torch

from leanml.nas.data import recalibrate_bn
from leanml.nas.elastic import ElasticBatchNorm, ElasticDepthwise, center_crop, transform_kernel
from leanml.nas.supernet import Supernet, get_subnet
from leanml.profile import profile_model
from leanml.train import load_checkpoint, save_checkpoint
from tests.conftest import randomize_bn
from tests.nas.conftest import tiny_space


def perturbed_supernet(space):
    """A supernet whose BN statistics and kernel-transform matrices are far from their initial values."""
    net = Supernet(space)
    randomize_bn(net)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "matrices" in name:
                p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def test_subnet_equals_the_supernet_with_that_architecture_active(space):
    net = perturbed_supernet(space)
    archs = [space.largest(), space.smallest()] + [space.sample(random.Random(s)) for s in range(8)]
    for arch in archs:
        x = torch.randn(4, 1, arch.resolution, arch.resolution)
        sub = get_subnet(net, arch).eval()
        with torch.no_grad():
            expected = net.set_active(arch)(x)
            assert torch.allclose(sub(x), expected, atol=1e-5), str(arch)
        assert sum(p.numel() for p in sub.parameters()) < sum(p.numel() for p in net.parameters())


def test_default_space_extraction_matches_too():
    from leanml.nas.space import SpaceConfig

    space = SpaceConfig()
    net = perturbed_supernet(space)
    for seed in range(3):
        arch = space.sample(random.Random(seed))
        x = torch.randn(2, 1, arch.resolution, arch.resolution)
        with torch.no_grad():
            assert torch.allclose(get_subnet(net, arch).eval()(x), net.set_active(arch)(x), atol=1e-4)


def test_kernel_transform_uses_the_center_and_the_matrices():
    w = torch.randn(3, 1, 7, 7)
    eye = {"7to5": torch.eye(25), "5to3": torch.eye(9)}
    assert torch.equal(transform_kernel(w, 5, [3, 5, 7], eye), center_crop(w, 5))
    assert torch.equal(transform_kernel(w, 7, [3, 5, 7], eye), w)
    double = {"7to5": 2 * torch.eye(25), "5to3": 3 * torch.eye(9)}
    assert torch.allclose(transform_kernel(w, 3, [3, 5, 7], double), 6 * center_crop(w, 3))
    dw = ElasticDepthwise(4, [3, 5, 7])
    assert dw(torch.randn(1, 4, 9, 9), kernel=3).shape == (1, 4, 9, 9)


def test_elastic_batch_norm_updates_only_the_active_slice():
    bn = ElasticBatchNorm(6).train()
    bn(torch.randn(8, 4, 3, 3) + 5.0)
    assert (bn.running_mean[:4] > 0.1).all() and (bn.running_mean[4:] == 0).all()


def test_subnet_is_a_normal_checkpoint(tmp_path, space):
    net = perturbed_supernet(space)
    arch = space.sample(random.Random(3))
    sub = get_subnet(net, arch).eval()
    save_checkpoint(tmp_path / "sub", sub, {"nas": {"arch": arch.to_dict()}})
    loaded = load_checkpoint(tmp_path / "sub")
    x = torch.randn(2, 1, arch.resolution, arch.resolution)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), sub(x))
    assert profile_model(loaded.model, (1, arch.resolution, arch.resolution), measure=False).macs > 0


def test_bn_recalibration_replaces_the_statistics(space):
    net = perturbed_supernet(space)
    arch = space.sample(random.Random(1))
    sub = get_subnet(net, arch)
    before = sub.stem[1].running_mean.clone()
    images = [torch.randn(16, 1, arch.resolution, arch.resolution) for _ in range(2)]
    recalibrate_bn(sub, images)
    assert not sub.training and not torch.allclose(sub.stem[1].running_mean, before)
    assert sub.stem[1].momentum == 0.1
    assert tiny_space() == space
