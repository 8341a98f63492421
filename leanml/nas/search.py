"""Random and evolutionary search under any mix of MACs / params / peak-SRAM / latency limits.

Candidates are scored by the accuracy predictor; costs come from the
efficiency predictor. Every candidate is checked against **every** limit
(:meth:`Limits.violations`), and an unknown resource name is an error, never
skipped. Sampling, mutation and crossover retry up to ``max_tries`` times;
after that a sample is repaired by shrinking it one random step at a time
(:meth:`~leanml.nas.space.SpaceConfig.shrink`) and a mutant or child falls back
to its parent, so the population is always feasible. Limits no architecture
can meet raise a :class:`LeanmlError` naming the resource and the smallest
achievable value.

Evolution follows OFA / the lab: a random feasible population; each
generation keeps the top ``parent_ratio`` as parents, adds
``mutation_ratio * population`` mutants of random parents and fills the rest
with crossovers of two random parents. Random search draws the same number of
feasible candidates. Both run in rounds of ``population`` candidates, save
their state after each round, and resume from it exactly (round ``g`` draws
from a generator seeded by (seed, g)). Pareto fronts (predicted accuracy vs
each resource) are kept over every candidate seen.

Example:
    >>> Limits.from_dict({"peak_sram": 64 * 1024}).limits()
    {'peak_sram': 65536}
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leanml.artifact import artifact_paths, load_artifact, save_artifact
from leanml.config import Config, require
from leanml.errors import LeanmlError
from leanml.nas.efficiency import RESOURCES, Efficiency, EfficiencyModel
from leanml.nas.latency import LatencyTable, layer_keys
from leanml.nas.predictor import AccuracyModel
from leanml.nas.space import Arch, SpaceConfig
from leanml.nas.subnet import net_config
from leanml.progress import track

KIND = "nas_search"


def format_resource(resource: str, value: float) -> str:
    """A readable value: MACs in M, params in K, peak SRAM in KiB, latency in ms.

    Example:
        >>> format_resource("peak_sram", 65536), format_resource("macs", 2.5e6)
        ('64.0 KiB', '2.50 M')
    """
    if resource == "peak_sram":
        return f"{value / 1024:.1f} KiB"
    if resource == "macs":
        return f"{value / 1e6:.2f} M"
    if resource == "params":
        return f"{value / 1e3:.1f} K"
    return f"{value:.3f} ms"


@dataclass
class Limits(Config):
    """Upper limits on resources (``None``: unconstrained). ``peak_sram`` is int8 activation bytes at batch 1."""

    macs: float | None = None
    params: float | None = None
    peak_sram: float | None = None
    latency_ms: float | None = None

    def validate(self) -> None:
        for name, value in self.limits().items():
            require(value > 0, f"the {name} limit must be > 0, got {value}")

    def limits(self) -> dict[str, float]:
        """The limits that are set, by resource name."""
        return {r: getattr(self, r) for r in RESOURCES if getattr(self, r) is not None}

    def violations(self, eff: Efficiency) -> list[str]:
        """The resources whose limit ``eff`` breaks (all of them are checked)."""
        broken = []
        for resource, limit in self.limits().items():
            value = eff.get(resource)
            if value is None:
                raise LeanmlError(f"a {resource} limit needs {resource} figures",
                                  "give the search a latency table (the CLI builds one)")  # fmt: skip
            if value > limit:
                broken.append(resource)
        return broken

    def satisfied(self, eff: Efficiency) -> bool:
        """Whether ``eff`` meets every limit."""
        return not self.violations(eff)


@dataclass
class SearchConfig(Config):
    """Method, limits and the evolution hyper-parameters (defaults: OFA / the lab's)."""

    method: str = "evolution"
    limits: dict[str, float] = field(default_factory=dict)
    population: int = 100
    generations: int = 500
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    resolution_mutate_prob: float = 0.5
    max_tries: int = 100
    seed: int = 0

    def validate(self) -> None:
        require(self.method in SEARCHERS, f"unknown search method {self.method!r}",
                f"choose one of: {', '.join(SEARCHERS)}")  # fmt: skip
        unknown = sorted(set(self.limits) - set(RESOURCES))
        require(not unknown, f"unknown resource limit(s): {', '.join(unknown)}",
                f"limit any of: {', '.join(RESOURCES)}")  # fmt: skip
        Limits.from_dict(self.limits)
        require(self.population >= 2 and self.generations >= 0, "need population >= 2 and generations >= 0")
        require(0 < self.parent_ratio <= 1 and 0 <= self.mutation_ratio <= 1, "need parent_ratio in (0, 1], "
                "mutation_ratio in [0, 1]")  # fmt: skip
        require(0 <= self.mutate_prob <= 1 and 0 <= self.resolution_mutate_prob <= 1, "probabilities must be in [0, 1]")
        require(self.max_tries >= 1, "max_tries must be >= 1")

    def bounds(self) -> Limits:
        """The limits as a :class:`Limits`."""
        return Limits.from_dict(self.limits)

    @property
    def budget(self) -> int:
        """Candidates scored: one round of ``population`` per generation, plus the initial round."""
        return self.population * (self.generations + 1)


@dataclass
class Candidate:
    """An architecture with its predicted accuracy and efficiency."""

    arch: Arch
    accuracy: float
    efficiency: Efficiency

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"arch": self.arch.to_dict(), "accuracy": self.accuracy, "efficiency": self.efficiency.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        """Inverse of :meth:`to_dict`."""
        return cls(Arch.from_dict(data["arch"]), float(data["accuracy"]), Efficiency(**data["efficiency"]))


def pareto_front(candidates: list[Candidate], resource: str) -> list[Candidate]:
    """Candidates no other beats on both accuracy (higher) and ``resource`` (lower), by increasing resource.

    Example:
        >>> e = lambda m: Efficiency(m, 0, 0)
        >>> a = SpaceConfig().smallest()
        >>> front = pareto_front([Candidate(a, 0.8, e(1)), Candidate(a, 0.7, e(2)), Candidate(a, 0.9, e(3))], "macs")
        >>> [c.accuracy for c in front]
        [0.8, 0.9]
    """
    front: list[Candidate] = []
    best = float("-inf")
    for c in sorted(candidates, key=lambda c: (c.efficiency.get(resource) or 0.0, -c.accuracy)):
        if c.accuracy > best:
            front.append(c)
            best = c.accuracy
    return front


@dataclass
class SearchState:
    """Everything a search needs to continue: rounds done, population, best per round, fronts."""

    rounds: int = 0
    population: list[Candidate] = field(default_factory=list)
    best: list[float] = field(default_factory=list)  # best predicted accuracy after each round
    fronts: dict[str, list[Candidate]] = field(default_factory=dict)
    evaluated: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (saved after every round)."""
        return {"rounds": self.rounds, "population": [c.to_dict() for c in self.population], "best": self.best,
                "fronts": {r: [c.to_dict() for c in f] for r, f in self.fronts.items()},
                "evaluated": self.evaluated}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchState:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["rounds"]), [Candidate.from_dict(c) for c in data["population"]], list(data["best"]),
                   {r: [Candidate.from_dict(c) for c in f] for r, f in data["fronts"].items()},
                   int(data["evaluated"]))  # fmt: skip


@dataclass
class SearchResult:
    """The best candidate, the final population (best first, each architecture once), the Pareto fronts and the
    search's progress."""

    best: Candidate
    population: list[Candidate]
    fronts: dict[str, list[Candidate]]
    history: list[float]
    evaluated: int
    config: SearchConfig
    space: SpaceConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what the CLI prints with ``--json``)."""
        fronts = {r: [c.to_dict() for c in f] for r, f in self.fronts.items()}
        return {"best": self.best.to_dict(), "history": self.history, "evaluated": self.evaluated,
                "config": self.config.to_dict(), "space": self.space.to_dict(), "fronts": fronts,
                "population": [c.to_dict() for c in self.population]}  # fmt: skip


def fastest_arch(space: SpaceConfig, table: LatencyTable) -> Arch:
    """The architecture with the least table latency (example: see ``tests/nas/test_search.py``).

    Exact: extra blocks only add time, so each stage takes its smallest depth; with
    resolution and width fixed, each block's entry depends only on its own kernel and
    expand ratio, so each block takes its fastest pair.
    """
    best: tuple[float, Arch] | None = None
    for r in space.resolutions:
        for w in space.widths:
            depths = [space.depth_choices(s)[0] for s in range(space.num_stages)]
            keys = {}
            for k in space.kernels:
                for e in space.expands:
                    uniform = Arch(r, w, tuple((k,) * d for d in depths), tuple((e,) * d for d in depths))
                    keys[(k, e)] = layer_keys(net_config(space, uniform), r)
            slot = 2  # keys: stem, first block, then the stage blocks
            kernels, expands = [], []
            for d in depths:
                picks = []
                for j in range(slot, slot + d):
                    times = {ke: table.entries.get(ks[j], float("inf")) for ke, ks in keys.items()}
                    picks.append(min(times, key=times.__getitem__))
                kernels.append(tuple(k for k, _ in picks))
                expands.append(tuple(e for _, e in picks))
                slot += d
            arch = Arch(r, w, tuple(kernels), tuple(expands))
            latency = table.predict(net_config(space, arch), r)
            if best is None or latency < best[0]:
                best = (latency, arch)
    assert best is not None
    return best[1]


def check_limits(limits: Limits, efficiency: EfficiencyModel) -> Arch:
    """An architecture that meets every limit (the repair target), or a :class:`LeanmlError` naming the resource
    that no architecture can meet and the smallest achievable value.

    The smallest architecture has the least MACs, params and peak SRAM of the space; for latency, the
    fastest architecture of the table is used.

    Example:
        >>> check_limits(Limits(peak_sram=64 * 1024), EfficiencyModel(SpaceConfig())) == SpaceConfig().smallest()
        True
    """
    space = efficiency.space
    smallest = space.smallest()
    low = efficiency(smallest)
    broken = limits.violations(low)
    if not broken:
        return smallest
    hint = "raise the limit, or search a space with smaller widths or resolutions"
    hard = [r for r in broken if r != "latency_ms"]
    if hard:
        raise LeanmlError("no architecture in the space meets " + "; ".join(
            f"{r} <= {format_resource(r, limits.limits()[r])} (the smallest achievable is "
            f"{format_resource(r, low.get(r) or 0.0)})" for r in hard), hint)  # fmt: skip
    assert efficiency.latency is not None
    fast = fastest_arch(space, efficiency.latency)
    quick = efficiency(fast)
    limit = limits.limits()["latency_ms"]
    if (quick.latency_ms or 0.0) > limit:
        raise LeanmlError(f"no architecture in the space meets latency_ms <= {format_resource('latency_ms', limit)} "
                          f"(the smallest achievable is {format_resource('latency_ms', quick.latency_ms or 0.0)})",
                          hint)  # fmt: skip
    if limits.satisfied(quick):
        return fast
    raise LeanmlError(f"no architecture found that meets every limit together: the smallest one exceeds latency "
                      f"({format_resource('latency_ms', low.latency_ms or 0.0)}), the fastest one exceeds "
                      f"{', '.join(limits.violations(quick))}", "relax one of the limits")  # fmt: skip


class _Searcher:
    """Feasible candidates for one search: sampling, mutation, crossover and repair, all checked on every limit."""

    def __init__(self, accuracy: AccuracyModel, efficiency: EfficiencyModel, cfg: SearchConfig) -> None:
        self.accuracy, self.efficiency, self.cfg = accuracy, efficiency, cfg
        self.space = efficiency.space
        self.limits = cfg.bounds()
        self.anchor = check_limits(self.limits, efficiency)

    def ok(self, arch: Arch) -> bool:
        return self.limits.satisfied(self.efficiency(arch))

    def score(self, archs: list[Arch]) -> list[Candidate]:
        accs = self.accuracy.predict(archs)
        out = [Candidate(a, acc, self.efficiency(a)) for a, acc in zip(archs, accs, strict=True)]
        for c in out:  # never hand back a candidate that breaks a limit
            if not self.limits.satisfied(c.efficiency):
                raise AssertionError(f"infeasible candidate {c.arch} reached scoring: {c.efficiency}")
        return out

    def repair(self, arch: Arch, rng: random.Random) -> Arch:
        while not self.ok(arch):
            nxt = self.space.shrink(arch, rng)
            if nxt is None:
                return self.anchor
            arch = nxt
        return arch

    def sample(self, rng: random.Random) -> Arch:
        arch = self.space.sample(rng)
        for _ in range(self.cfg.max_tries - 1):
            if self.ok(arch):
                return arch
            arch = self.space.sample(rng)
        return self.repair(arch, rng)

    def mutate(self, parent: Arch, rng: random.Random) -> Arch:
        for _ in range(self.cfg.max_tries):
            child = self.space.mutate(parent, rng, self.cfg.mutate_prob, self.cfg.resolution_mutate_prob)
            if self.ok(child):
                return child
        return parent

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        for _ in range(self.cfg.max_tries):
            child = self.space.crossover(a, b, rng)
            if self.ok(child):
                return child
        return a


def _evolution_round(s: _Searcher, population: list[Candidate], rng: random.Random) -> list[Candidate]:
    """Round 0: a random feasible population; then parents + mutants + crossovers (the lab's generation)."""
    n = s.cfg.population
    if not population:
        return s.score([s.sample(rng) for _ in range(n)])
    parents = sorted(population, key=lambda c: -c.accuracy)[: max(1, round(s.cfg.parent_ratio * n))]
    mutants = round(s.cfg.mutation_ratio * n)
    children = [s.mutate(rng.choice(parents).arch, rng) for _ in range(mutants)]
    children += [s.crossover(rng.choice(parents).arch, rng.choice(parents).arch, rng) for _ in range(n - mutants)]
    return parents + s.score(children)


def _random_round(s: _Searcher, population: list[Candidate], rng: random.Random) -> list[Candidate]:
    """``population`` fresh feasible samples; the state keeps the best ``population`` seen."""
    fresh = s.score([s.sample(rng) for _ in range(s.cfg.population)])
    return sorted(population + fresh, key=lambda c: -c.accuracy)[: s.cfg.population]


Round = Callable[[_Searcher, list[Candidate], random.Random], list[Candidate]]
SEARCHERS: dict[str, Round] = {"evolution": _evolution_round, "random": _random_round}


def _merge_fronts(fronts: dict[str, list[Candidate]], new: list[Candidate], resources: list[str]) -> None:
    for r in resources:
        fronts[r] = pareto_front(fronts.get(r, []) + new, r)


def _load_state(out: Path, cfg: SearchConfig, space: SpaceConfig) -> SearchState:
    _, meta = load_artifact(out, kind=KIND)
    if meta.get("search_config") != cfg.to_dict() or meta.get("space") != space.to_dict():
        raise LeanmlError(f"cannot resume {out}: it was searched with another config or space",
                          "resume with the same settings and predictor, or write to a new --out")  # fmt: skip
    return SearchState.from_dict(meta["state"])


def search(
    accuracy: AccuracyModel,
    cfg: SearchConfig,
    latency: LatencyTable | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_round: Callable[[int, SearchState], None] | None = None,
) -> SearchResult:
    """Search the predictor's space for the most accurate architecture within ``cfg.limits``.

    With ``out``, the state is saved after every round and ``resume=True`` continues it.
    ``on_round(rounds_done, state)`` runs after each save.

    Example:
        >>> cfg = SearchConfig(limits={"macs": 5e6, "peak_sram": 48 * 1024}, population=20, generations=10)
        >>> result = search(AccuracyModel.load("runs/nas/predictor"), cfg)  # doctest: +SKIP
        >>> result.best.efficiency.macs <= 5e6  # doctest: +SKIP
        True
    """
    if "latency_ms" in cfg.limits and latency is None:
        raise LeanmlError("a latency limit needs a latency table", "pass one (leanml nas search builds it)")
    efficiency = EfficiencyModel(accuracy.space, latency)
    searcher = _Searcher(accuracy, efficiency, cfg)
    resources = [r for r in RESOURCES if r != "latency_ms" or latency is not None]
    target = artifact_paths(out)[0].with_suffix("") if out is not None else None
    state = SearchState()
    if target is not None and artifact_paths(target)[0].exists():
        if not resume:
            raise LeanmlError(f"search state {target} already exists", "pass --resume to continue it, or another --out")
        state = _load_state(target, cfg, accuracy.space)
    rounds = cfg.generations + 1
    step = SEARCHERS[cfg.method]
    todo = range(state.rounds, rounds)
    for g in track(todo, len(todo), f"{cfg.method} search", progress):
        before = {id(c) for c in state.population}
        state.population = step(searcher, state.population, random.Random(f"{cfg.seed}-{g}"))
        new = [c for c in state.population if id(c) not in before]
        state.evaluated += cfg.population
        _merge_fronts(state.fronts, new, resources)
        state.best.append(max(c.accuracy for c in state.population))
        state.rounds = g + 1
        if target is not None:
            meta = {"space": accuracy.space.to_dict(), "search_config": cfg.to_dict(), "state": state.to_dict(),
                    "complete": state.rounds == rounds, "predictor_metrics": accuracy.metrics,
                    "latency": latency.meta if latency is not None else None}  # fmt: skip
            save_artifact(target, {}, meta, kind=KIND)
        if on_round is not None:
            on_round(state.rounds, state)
    ranked = _distinct_ranked(state.population)
    for c in ranked + [c for f in state.fronts.values() for c in f]:
        if not searcher.limits.satisfied(c.efficiency):
            raise AssertionError(f"search returned {c.arch}, which breaks {searcher.limits.violations(c.efficiency)}")
    return SearchResult(ranked[0], ranked, state.fronts, state.best, state.evaluated, cfg, accuracy.space)


def _distinct_ranked(population: list[Candidate]) -> list[Candidate]:
    """Best first, each architecture once (an evolved population repeats its fittest members)."""
    seen: set[Arch] = set()
    out = []
    for c in sorted(population, key=lambda c: -c.accuracy):
        if c.arch not in seen:
            seen.add(c.arch)
            out.append(c)
    return out


def load_search(path: str | Path) -> SearchResult:
    """The result stored in a search state file (complete or not).

    Example:
        >>> load_search("runs/nas/search").best.arch  # doctest: +SKIP
    """
    _, meta = load_artifact(path, kind=KIND)
    state = SearchState.from_dict(meta["state"])
    ranked = _distinct_ranked(state.population)
    require(bool(ranked), f"search {path} has no candidates yet", "run the search first")
    cfg, space = SearchConfig.from_dict(meta["search_config"]), SpaceConfig.from_dict(meta["space"])
    return SearchResult(ranked[0], ranked, state.fronts, state.best, state.evaluated, cfg, space)
