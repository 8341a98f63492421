import json
import random

import pytest

from leanml.errors import LeanmlError
from leanml.nas.space import Arch, SpaceConfig, make_divisible


def test_make_divisible_follows_ofa():
    assert [make_divisible(v, 8) for v in (3, 12, 18, 24, 100)] == [8, 16, 24, 24, 104]  # 16 < 0.9 * 18: rounded up
    assert [make_divisible(v, 4) for v in (3, 12, 18, 24)] == [4, 12, 20, 24]


def test_default_space_is_the_ofa_mobilenetv2_family():
    space = SpaceConfig()
    assert space.kernels == [3, 5, 7] and space.expands == [3, 4, 6]
    assert [space.depth_choices(s) for s in range(3)] == [[2, 3, 4]] * 3
    assert min(space.resolutions) == 20 and max(space.resolutions) == 32
    assert space.encoding_size() == 12 * 6 + 4 + 3


def test_sampling_is_seeded_and_stays_in_the_space():
    space = SpaceConfig()
    a = [space.sample(random.Random(7)) for _ in range(2)]
    assert a[0] == a[1]
    archs = {space.sample(random.Random(s)) for s in range(200)}
    assert len(archs) > 190
    for arch in archs:
        space.check(arch)
    assert {a.resolution for a in archs} == set(space.resolutions)
    assert {d for a in archs for d in a.depths} == {2, 3, 4}


def test_json_round_trip_and_one_hot_encoding():
    space = SpaceConfig()
    for seed in range(50):
        arch = space.sample(random.Random(seed))
        assert Arch.from_json(arch.to_json()) == arch
        assert Arch.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
        vec = space.encode(arch)
        assert len(vec) == space.encoding_size() and set(vec) <= {0.0, 1.0}
        assert sum(vec) == 2 * sum(arch.depths) + 2  # one kernel + one expand per active block, resolution, width
    vecs = {tuple(space.encode(space.sample(random.Random(s)))) for s in range(100)}
    assert len(vecs) == 100  # distinct architectures, distinct codes


def test_architectures_outside_the_space_are_named():
    space = SpaceConfig()
    good = space.largest().to_dict()
    cases = [
        ({"resolution": 30}, "resolution 30 is outside the space"),
        ({"width": 0.6}, "width 0.6 is outside the space"),
        ({"kernels": [[7] * 4, [7] * 4, [9] * 4]}, "stage 2 block 0 kernel 9"),
        ({"expands": [[6] * 4, [2] + [6] * 3, [6] * 4]}, "stage 1 block 0 expand ratio 2"),
        ({"kernels": [[7] * 5, [7] * 4, [7] * 4], "expands": [[6] * 5, [6] * 4, [6] * 4]}, "stage 0 depth 5"),
        ({"kernels": [[7] * 4] * 2, "expands": [[6] * 4] * 2}, "has 2 stages, the space has 3"),
    ]
    for change, message in cases:
        with pytest.raises(LeanmlError, match=message):
            space.check(Arch.from_dict({**good, **change}))
    with pytest.raises(LeanmlError, match="malformed architecture"):
        Arch.from_dict({"resolution": 28})
    with pytest.raises(LeanmlError, match="stage 0 has 2 kernels and 1 expand"):
        Arch.from_dict({**good, "kernels": [[3, 3]], "expands": [[3]]})
    with pytest.raises(LeanmlError, match="cannot parse architecture JSON"):
        Arch.from_json("{")


def test_bad_space_configs_are_rejected():
    with pytest.raises(LeanmlError, match="odd sizes"):
        SpaceConfig(kernels=[3, 4])
    with pytest.raises(LeanmlError, match="stride 1\\|2"):
        SpaceConfig(stages=[[8, 1, 3]])
    with pytest.raises(LeanmlError, match="unknown SpaceConfig field"):
        SpaceConfig.from_dict({"kernel": [3]})


def test_mutation_and_crossover_stay_in_the_space():
    space = SpaceConfig()
    rng = random.Random(0)
    a, b = space.sample(rng), space.sample(rng)
    assert space.mutate(a, rng, prob=0.0, resolution_prob=0.0) == a
    changed = 0
    for _ in range(100):
        m = space.mutate(a, rng, prob=0.3)
        space.check(m)
        changed += m != a
        c = space.crossover(a, b, rng)
        space.check(c)
        assert c.resolution in (a.resolution, b.resolution) and c.width in (a.width, b.width)
        for s, d in enumerate(c.depths):
            assert d in (a.depths[s], b.depths[s])
    assert changed > 90


def test_shrinking_reaches_the_smallest_architecture():
    space = SpaceConfig()
    rng = random.Random(0)
    arch = space.largest()
    for _ in range(1000):
        nxt = space.shrink(arch, rng)
        if nxt is None:
            break
        space.check(nxt)
        arch = nxt
    assert arch == space.smallest()
