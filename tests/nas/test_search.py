import random

import pytest

from leanml.errors import LeanmlError
from leanml.nas.efficiency import EfficiencyModel
from leanml.nas.latency import LatencyConfig, build_table
from leanml.nas.predictor import PredictorConfig, train_predictor
from leanml.nas.search import Limits, SearchConfig, fastest_arch, load_search, pareto_front, search
from leanml.nas.space import SpaceConfig
from tests.nas.test_sample_predictor import synthetic_pairs


@pytest.fixture(scope="module")
def predictor():
    space = SpaceConfig()
    return train_predictor(synthetic_pairs(space, 200), space, PredictorConfig(epochs=30, hidden=64), progress=False)


@pytest.fixture(scope="module")
def tiny_predictor():
    from tests.nas.conftest import tiny_space

    space = tiny_space()
    return train_predictor(synthetic_pairs(space, 60), space, PredictorConfig(epochs=10, hidden=32), progress=False)


def small(method="evolution", **kw):
    return SearchConfig(method=method, population=20, generations=6, **kw)


LIMIT_SETS = [
    {"macs": 3e6},
    {"peak_sram": 30 * 1024},
    {"params": 60e3, "peak_sram": 40 * 1024},
    {"macs": 6e6, "params": 100e3, "peak_sram": 48 * 1024},
]


@pytest.mark.parametrize("method", ["evolution", "random"])
@pytest.mark.parametrize("limits", LIMIT_SETS)
def test_every_returned_architecture_meets_every_limit(predictor, method, limits):
    result = search(predictor, small(method, limits=limits), progress=False)
    bounds = Limits.from_dict(limits)
    model = EfficiencyModel(predictor.space)
    returned = [result.best, *result.population, *(c for f in result.fronts.values() for c in f)]
    for c in returned:
        eff = model(c.arch)  # recomputed, not trusted from the search
        for resource, limit in bounds.limits().items():
            assert eff.get(resource) <= limit, (resource, str(c.arch))
    assert result.evaluated == 20 * 7 and len(result.history) == 7
    assert result.history == sorted(result.history) or method == "random"


def test_evolution_improves_on_its_first_population(predictor):
    result = search(predictor, small(limits={"macs": 6e6}), progress=False)
    assert result.history[-1] >= result.history[0]


def test_ranked_population_lists_each_architecture_once(predictor):
    # an evolved population repeats its fittest members; the result's ranking must not
    cfg = SearchConfig(method="evolution", population=20, generations=10, limits={"macs": 6e6})
    result = search(predictor, cfg, progress=False)
    archs = [c.arch for c in result.population]
    assert len(set(archs)) == len(archs)
    assert [c.accuracy for c in result.population] == sorted((c.accuracy for c in result.population), reverse=True)
    assert result.best.arch == archs[0]


def test_tight_limits_are_met_by_repair(predictor):
    space = predictor.space
    low = EfficiencyModel(space)(space.smallest())
    limits = {"macs": low.macs * 1.05, "peak_sram": low.peak_sram}
    result = search(predictor, small(limits=limits, max_tries=3), progress=False)
    for c in result.population:
        assert c.efficiency.macs <= limits["macs"] and c.efficiency.peak_sram <= limits["peak_sram"]


def test_impossible_limits_name_the_resource_and_the_smallest_value(predictor):
    with pytest.raises(LeanmlError, match=r"peak_sram <= 5.0 KiB \(the smallest achievable is 12.5 KiB\)"):
        search(predictor, small(limits={"peak_sram": 5 * 1024}), progress=False)
    with pytest.raises(LeanmlError, match=r"macs <= 0.10 M \(the smallest achievable is 0.90 M\)"):
        search(predictor, small(limits={"macs": 1e5, "params": 1e9}), progress=False)
    with pytest.raises(LeanmlError, match="unknown resource limit\\(s\\): sram"):
        SearchConfig(limits={"sram": 1e5})
    with pytest.raises(LeanmlError, match="latency limit needs a latency table"):
        search(predictor, small(limits={"latency_ms": 1.0}), progress=False)
    with pytest.raises(LeanmlError, match="unknown search method"):
        SearchConfig(method="annealing")


def test_latency_limits_use_the_table(tiny_predictor):
    space = tiny_predictor.space
    table = build_table(space, LatencyConfig(warmup=1, repeats=2), progress=False)
    fast = fastest_arch(space, table)
    model = EfficiencyModel(space, table)
    fastest = model(fast).latency_ms
    for seed in range(30):
        assert model(space.sample(random.Random(seed))).latency_ms >= fastest - 1e-12
    limit = fastest * 1.5
    result = search(tiny_predictor, small(limits={"latency_ms": limit}), latency=table, progress=False)
    assert all(c.efficiency.latency_ms <= limit for c in result.population)
    assert "latency_ms" in result.fronts
    with pytest.raises(LeanmlError, match=r"latency_ms <= .* \(the smallest achievable is"):
        search(tiny_predictor, small(limits={"latency_ms": fastest / 2}), latency=table, progress=False)


def test_pareto_fronts_are_non_dominated(predictor):
    result = search(predictor, small(), progress=False)
    for resource, front in result.fronts.items():
        values = [c.efficiency.get(resource) for c in front]
        accs = [c.accuracy for c in front]
        assert values == sorted(values) and accs == sorted(accs) and len(set(accs)) == len(accs)
        assert pareto_front(front, resource) == front


@pytest.mark.parametrize("method", ["evolution", "random"])
def test_search_resumes_after_interruption(tmp_path, predictor, method):
    cfg = small(method, limits={"peak_sram": 40 * 1024})
    full = search(predictor, cfg, out=tmp_path / "full", progress=False)

    def interrupt(rounds, state):
        if rounds == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(predictor, cfg, out=tmp_path / "cut", progress=False, on_round=interrupt)
    with pytest.raises(LeanmlError, match="already exists"):
        search(predictor, cfg, out=tmp_path / "cut", progress=False)
    with pytest.raises(LeanmlError, match="another config"):
        search(predictor, small(method, seed=1), out=tmp_path / "cut", resume=True, progress=False)
    resumed = search(predictor, cfg, out=tmp_path / "cut", resume=True, progress=False)
    assert resumed.to_dict() == full.to_dict()
    assert load_search(tmp_path / "full").to_dict() == full.to_dict()
