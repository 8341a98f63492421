"""The search space (OFA / MCUNet MobileNetV2 family scaled for 28x28) and the architecture encoding.

A network of the space is: a 3x3 stem, one fixed inverted-residual block with
expand ratio 1, then stages of inverted-residual blocks, a 1x1 head, global
pooling and a classifier. Elastic dimensions:

- per block: depthwise kernel size (``kernels``, default {3, 5, 7}) and expand
  ratio (``expands``, default {3, 4, 6});
- per stage: depth, from its base depth up to ``extra_depth`` more (the first
  ``d`` blocks run);
- one width multiplier for every stage, the stem and the first block;
- the input resolution (images are resized from 28x28 before the stem).

An :class:`Arch` is one choice of all of these. It validates its own shape,
round-trips through JSON, and :meth:`SpaceConfig.check` tells why an
architecture is outside a space. :meth:`SpaceConfig.encode` gives the one-hot
vector the accuracy predictor reads; sampling, mutation and crossover take a
seeded :class:`random.Random`.

Example:
    >>> import random
    >>> space = SpaceConfig()
    >>> arch = space.sample(random.Random(0))
    >>> Arch.from_json(arch.to_json()) == arch
    True
    >>> len(space.encode(arch)) == space.encoding_size()
    True
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from leanml.config import Config, require
from leanml.errors import LeanmlError

ELASTIC = ("resolution", "width", "kernel", "depth", "expand")


def make_divisible(value: float, divisor: int) -> int:
    """Round ``value`` to a multiple of ``divisor`` (at least ``divisor``, never 10% below ``value``), as OFA does.

    Example:
        >>> make_divisible(18, 4), make_divisible(12, 8), make_divisible(3, 4)
        (20, 16, 4)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _sorted_unique(values: list[Any]) -> bool:
    return bool(values) and list(values) == sorted(set(values))


@dataclass
class SpaceConfig(Config):
    """Choices of every elastic dimension and the fixed skeleton (stage widths, strides, stem, head)."""

    kernels: list[int] = field(default_factory=lambda: [3, 5, 7])
    expands: list[int] = field(default_factory=lambda: [3, 4, 6])
    widths: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0])
    resolutions: list[int] = field(default_factory=lambda: [20, 24, 28, 32])
    stem: int = 16  # stem and first-block width at multiplier 1.0
    stages: list[list[int]] = field(default_factory=lambda: [[24, 2, 2], [32, 2, 2], [64, 2, 1]])  # [c, depth, s]
    extra_depth: int = 2  # each stage runs base depth + 0..extra_depth blocks
    head: int = 256
    in_channels: int = 1
    num_classes: int = 10
    divisor: int = 4  # channel counts are multiples of this

    def validate(self) -> None:
        require(_sorted_unique(self.kernels) and all(k >= 1 and k % 2 == 1 for k in self.kernels),
                f"space kernels must be distinct odd sizes in increasing order, got {self.kernels}")  # fmt: skip
        require(_sorted_unique(self.expands) and all(e >= 2 for e in self.expands),
                f"space expand ratios must be distinct ints >= 2 in increasing order, got {self.expands}")  # fmt: skip
        require(_sorted_unique(self.widths) and all(0 < w <= 4 for w in self.widths),
                f"space width multipliers must be distinct, in (0, 4], increasing, got {self.widths}")  # fmt: skip
        require(_sorted_unique(self.resolutions) and all(8 <= r <= 256 for r in self.resolutions),
                f"space resolutions must be distinct, in [8, 256], increasing, got {self.resolutions}")  # fmt: skip
        require(bool(self.stages), "the space needs at least one stage")
        for s in self.stages:
            require(len(s) == 3 and all(isinstance(v, int) for v in s) and s[0] >= 1 and s[1] >= 1 and s[2] in (1, 2),
                    f"space stage {s!r} must be [channels >= 1, base depth >= 1, stride 1|2]")  # fmt: skip
        require(self.extra_depth >= 0, f"extra_depth must be >= 0, got {self.extra_depth}")
        require(min(self.stem, self.head, self.in_channels, self.num_classes, self.divisor) >= 1,
                "space stem, head, in_channels, num_classes and divisor must be >= 1")  # fmt: skip

    # --- the skeleton -------------------------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        """Number of elastic stages."""
        return len(self.stages)

    def depth_choices(self, stage: int) -> list[int]:
        """Allowed depths of ``stage``: base .. base + extra_depth.

        Example:
            >>> SpaceConfig().depth_choices(0)
            [2, 3, 4]
        """
        base = self.stages[stage][1]
        return list(range(base, base + self.extra_depth + 1))

    def max_depth(self, stage: int) -> int:
        """Blocks the supernet holds for ``stage``."""
        return self.depth_choices(stage)[-1]

    def channels(self, base: int, width: float) -> int:
        """Channel count of a layer whose width at multiplier 1.0 is ``base``.

        Example:
            >>> SpaceConfig().channels(24, 0.75)
            20
        """
        return make_divisible(base * width, self.divisor)

    def hidden(self, cin: int, expand: int) -> int:
        """Expanded width of a block with ``cin`` input channels and expand ratio ``expand``.

        Example:
            >>> SpaceConfig().hidden(20, 3)
            60
        """
        return make_divisible(cin * expand, self.divisor)

    # --- architectures -----------------------------------------------------------------------------------------
    def check(self, arch: Arch) -> None:
        """Raise :class:`LeanmlError` naming the first choice of ``arch`` that is outside this space.

        Example:
            >>> SpaceConfig().check(Arch(24, 1.0, ((3, 3), (5, 5), (7, 7)), ((3, 3), (4, 4), (6, 6))))
        """
        hint = "sample architectures from this space, or search in the space they come from"
        require(arch.resolution in self.resolutions,
                f"resolution {arch.resolution} is outside the space (choices: {self.resolutions})", hint)  # fmt: skip
        require(arch.width in self.widths, f"width {arch.width} is outside the space (choices: {self.widths})", hint)
        require(len(arch.kernels) == self.num_stages,
                f"the architecture has {len(arch.kernels)} stages, the space has {self.num_stages}", hint)  # fmt: skip
        for s, (ks, es) in enumerate(zip(arch.kernels, arch.expands, strict=True)):
            depths = self.depth_choices(s)
            require(len(ks) in depths, f"stage {s} depth {len(ks)} is outside the space (choices: {depths})", hint)
            for b, (k, e) in enumerate(zip(ks, es, strict=True)):
                where = f"stage {s} block {b}"
                require(k in self.kernels, f"{where} kernel {k} is outside the space (choices: {self.kernels})", hint)
                require(e in self.expands,
                        f"{where} expand ratio {e} is outside the space (choices: {self.expands})", hint)  # fmt: skip

    def largest(self) -> Arch:
        """Every dimension at its largest choice (what the supernet holds).

        Example:
            >>> str(SpaceConfig(stages=[[8, 1, 2]], extra_depth=1).largest())
            'r32 w1 [k7e6,k7e6]'
        """
        return self._uniform(self.resolutions[-1], self.widths[-1], self.kernels[-1], self.expands[-1], True)

    def smallest(self) -> Arch:
        """Every dimension at its smallest choice (the least MACs, params and peak memory in the space).

        Example:
            >>> str(SpaceConfig(stages=[[8, 1, 2]], extra_depth=1).smallest())
            'r20 w0.5 [k3e3]'
        """
        return self._uniform(self.resolutions[0], self.widths[0], self.kernels[0], self.expands[0], False)

    def _uniform(self, r: int, w: float, k: int, e: int, deepest: bool) -> Arch:
        depths = [self.max_depth(s) if deepest else self.depth_choices(s)[0] for s in range(self.num_stages)]
        return Arch(r, w, tuple((k,) * d for d in depths), tuple((e,) * d for d in depths))

    def sample(self, rng: random.Random, elastic: tuple[str, ...] = ELASTIC) -> Arch:
        """A random architecture; dimensions not named in ``elastic`` take their largest choice.

        Example:
            >>> SpaceConfig().sample(random.Random(0), elastic=()) == SpaceConfig().largest()
            True
        """
        unknown = sorted(set(elastic) - set(ELASTIC))
        require(not unknown, f"unknown elastic dimension(s) {unknown}", f"choose from {', '.join(ELASTIC)}")

        def pick(dim: str, choices: list[Any]) -> Any:
            return rng.choice(choices) if dim in elastic else choices[-1]

        r, w = pick("resolution", self.resolutions), pick("width", self.widths)
        kernels, expands = [], []
        for s in range(self.num_stages):
            d = pick("depth", self.depth_choices(s))
            kernels.append(tuple(pick("kernel", self.kernels) for _ in range(d)))
            expands.append(tuple(pick("expand", self.expands) for _ in range(d)))
        return Arch(r, w, tuple(kernels), tuple(expands))

    # --- evolution ---------------------------------------------------------------------------------------------
    def _genome(self, arch: Arch, rng: random.Random) -> tuple[list[int], list[list[int]], list[list[int]]]:
        """(depths, kernels, expands) over every block slot; slots past a stage's depth get random genes."""
        depths = list(arch.depths)
        ks = [list(k) + [rng.choice(self.kernels) for _ in range(self.max_depth(s) - len(k))]
              for s, k in enumerate(arch.kernels)]  # fmt: skip
        es = [list(e) + [rng.choice(self.expands) for _ in range(self.max_depth(s) - len(e))]
              for s, e in enumerate(arch.expands)]  # fmt: skip
        return depths, ks, es

    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.1, resolution_prob: float = 0.5) -> Arch:
        """Resample each gene with probability ``prob`` (the resolution with ``resolution_prob``), as OFA does.

        Example:
            >>> a = SpaceConfig().sample(random.Random(0))
            >>> SpaceConfig().mutate(a, random.Random(1), prob=0.0, resolution_prob=0.0) == a
            True
        """
        self.check(arch)
        r = rng.choice(self.resolutions) if rng.random() < resolution_prob else arch.resolution
        w = rng.choice(self.widths) if rng.random() < prob else arch.width
        depths, ks, es = self._genome(arch, rng)
        for s in range(self.num_stages):
            if rng.random() < prob:
                depths[s] = rng.choice(self.depth_choices(s))
            for b in range(self.max_depth(s)):
                if rng.random() < prob:
                    ks[s][b] = rng.choice(self.kernels)
                if rng.random() < prob:
                    es[s][b] = rng.choice(self.expands)
        return Arch(r, w, tuple(tuple(k[:d]) for k, d in zip(ks, depths, strict=True)),
                    tuple(tuple(e[:d]) for e, d in zip(es, depths, strict=True)))  # fmt: skip

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Each gene (resolution, width, every depth, every block slot) from either parent at random.

        Example:
            >>> a = SpaceConfig().largest()
            >>> SpaceConfig().crossover(a, a, random.Random(0)) == a
            True
        """
        self.check(a)
        self.check(b)
        da, ka, ea = self._genome(a, rng)
        db, kb, eb = self._genome(b, rng)
        r = rng.choice([a.resolution, b.resolution])
        w = rng.choice([a.width, b.width])
        kernels, expands = [], []
        for s in range(self.num_stages):
            d = rng.choice([da[s], db[s]])
            kernels.append(tuple(rng.choice([ka[s][i], kb[s][i]]) for i in range(d)))
            expands.append(tuple(rng.choice([ea[s][i], eb[s][i]]) for i in range(d)))
        return Arch(r, w, tuple(kernels), tuple(expands))

    def shrink(self, arch: Arch, rng: random.Random) -> Arch | None:
        """One random dimension of ``arch`` one step smaller; ``None`` when ``arch`` is the smallest.

        Every step lowers (or keeps) MACs, params and peak memory, so repeating it reaches
        :meth:`smallest`: the search repairs an architecture that breaks a limit this way.

        Example:
            >>> SpaceConfig().shrink(SpaceConfig().smallest(), random.Random(0)) is None
            True
        """
        moves: list[tuple[str, int, int]] = []
        if arch.resolution > self.resolutions[0]:
            moves.append(("resolution", 0, 0))
        if arch.width > self.widths[0]:
            moves.append(("width", 0, 0))
        for s, (ks, es) in enumerate(zip(arch.kernels, arch.expands, strict=True)):
            if len(ks) > self.depth_choices(s)[0]:
                moves.append(("depth", s, 0))
            moves += [("kernel", s, i) for i, k in enumerate(ks) if k > self.kernels[0]]
            moves += [("expand", s, i) for i, e in enumerate(es) if e > self.expands[0]]
        if not moves:
            return None
        dim, s, i = rng.choice(moves)
        r, w = arch.resolution, arch.width
        kernels, expands = [list(k) for k in arch.kernels], [list(e) for e in arch.expands]
        if dim == "resolution":
            r = self.resolutions[self.resolutions.index(r) - 1]
        elif dim == "width":
            w = self.widths[self.widths.index(w) - 1]
        elif dim == "depth":
            kernels[s].pop()
            expands[s].pop()
        elif dim == "kernel":
            kernels[s][i] = self.kernels[self.kernels.index(kernels[s][i]) - 1]
        else:
            expands[s][i] = self.expands[self.expands.index(expands[s][i]) - 1]
        return Arch(r, w, tuple(map(tuple, kernels)), tuple(map(tuple, expands)))

    # --- encoding ----------------------------------------------------------------------------------------------
    def encoding_size(self) -> int:
        """Length of :meth:`encode`'s vector."""
        slots = sum(self.max_depth(s) for s in range(self.num_stages))
        return slots * (len(self.kernels) + len(self.expands)) + len(self.resolutions) + len(self.widths)

    def encode(self, arch: Arch) -> list[float]:
        """One-hot vector: per block slot kernel + expand (all zeros past the stage's depth), resolution, width.

        Example:
            >>> space = SpaceConfig()
            >>> sum(space.encode(space.smallest()))  # 6 blocks x 2 one-hots + resolution + width
            14.0
        """
        self.check(arch)
        vec: list[float] = []
        for s in range(self.num_stages):
            for i in range(self.max_depth(s)):
                k = [0.0] * len(self.kernels)
                e = [0.0] * len(self.expands)
                if i < arch.depths[s]:
                    k[self.kernels.index(arch.kernels[s][i])] = 1.0
                    e[self.expands.index(arch.expands[s][i])] = 1.0
                vec += k + e
        vec += [1.0 if r == arch.resolution else 0.0 for r in self.resolutions]
        vec += [1.0 if w == arch.width else 0.0 for w in self.widths]
        return vec


@dataclass(frozen=True)
class Arch:
    """One architecture: input resolution, width multiplier, and per stage the kernel and expand of each block.

    ``kernels[s]`` and ``expands[s]`` have one entry per active block of stage ``s``
    (so the depth is their length).

    Example:
        >>> a = Arch(24, 0.75, ((3, 5), (7, 3)), ((3, 4), (6, 6)))
        >>> a.depths
        (2, 2)
    """

    resolution: int
    width: float
    kernels: tuple[tuple[int, ...], ...]
    expands: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        hint = 'write it as {"resolution": R, "width": W, "kernels": [[k, ...], ...], "expands": [[e, ...], ...]}'
        require(isinstance(self.resolution, int) and not isinstance(self.resolution, bool),
                f"architecture resolution must be an int, got {self.resolution!r}", hint)  # fmt: skip
        require(isinstance(self.width, int | float) and not isinstance(self.width, bool),
                f"architecture width must be a number, got {self.width!r}", hint)  # fmt: skip
        require(len(self.kernels) == len(self.expands) and len(self.kernels) > 0,
                f"architecture needs one kernel list and one expand list per stage, got {len(self.kernels)} "
                f"and {len(self.expands)}", hint)  # fmt: skip
        for s, (ks, es) in enumerate(zip(self.kernels, self.expands, strict=True)):
            require(len(ks) == len(es) and len(ks) > 0,
                    f"architecture stage {s} has {len(ks)} kernels and {len(es)} expand ratios", hint)  # fmt: skip
            require(all(isinstance(v, int) and not isinstance(v, bool) for v in (*ks, *es)),
                    f"architecture stage {s} kernels and expand ratios must be ints", hint)  # fmt: skip

    @property
    def depths(self) -> tuple[int, ...]:
        """Active blocks per stage."""
        return tuple(len(k) for k in self.kernels)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-safe)."""
        return {"resolution": self.resolution, "width": self.width,
                "kernels": [list(k) for k in self.kernels], "expands": [list(e) for e in self.expands]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> Arch:
        """Inverse of :meth:`to_dict`; malformed data is a :class:`LeanmlError`.

        Example:
            >>> Arch.from_dict({"resolution": 28, "width": 1.0, "kernels": [[3]], "expands": [[4]]}).depths
            (1,)
        """
        keys = {"resolution", "width", "kernels", "expands"}
        if not isinstance(data, dict) or set(data) != keys:
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise LeanmlError(f"malformed architecture: expected keys {sorted(keys)}, got {found}",
                              "pass an architecture as written by leanml nas (arch.json)")  # fmt: skip
        for name in ("kernels", "expands"):
            if not isinstance(data[name], list) or not all(isinstance(s, list) for s in data[name]):
                raise LeanmlError(f"malformed architecture: {name!r} must be a list of lists of ints")
        width = data["width"]
        if isinstance(width, int) and not isinstance(width, bool):
            width = float(width)
        return cls(data["resolution"], width, tuple(tuple(s) for s in data["kernels"]),
                   tuple(tuple(s) for s in data["expands"]))  # fmt: skip

    def to_json(self) -> str:
        """Compact JSON (also a stable key for caches)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Arch:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LeanmlError(f"cannot parse architecture JSON: {e}", "pass a file written by leanml nas") from e
        return cls.from_dict(data)

    def __str__(self) -> str:
        stages = " | ".join(",".join(f"k{k}e{e}" for k, e in zip(ks, es, strict=True))
                            for ks, es in zip(self.kernels, self.expands, strict=True))  # fmt: skip
        return f"r{self.resolution} w{self.width:g} [{stages}]"
