"""Predictor data: sample architectures, measure each subnet's validation accuracy (after BN recalibration).

Measuring runs through the executor interface (serial, local process pool,
Ray): each task receives the supernet path, a chunk of architectures as
JSON and the (calibration, evaluation) images it was given (the caller loads
them: this module never fetches data); it loads the supernet itself and
returns accuracies. The sample file is saved
after every round of tasks; ``resume=True`` keeps what was measured and
continues (the architecture list is derived from the seed, so it is the same).

Example:
    >>> cfg = SampleConfig(count=8, val_images=100, calib_images=100, backend="serial")
    >>> data = load_data("fashion-mnist")  # doctest: +SKIP
    >>> samples = sample_architectures("runs/nas/supernet", cfg, "runs/nas/samples",
    ...                                data.train, data.val)  # doctest: +SKIP
    >>> len(samples.records)  # doctest: +SKIP
    8
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leanml.artifact import artifact_paths, load_artifact, save_artifact
from leanml.config import Config, require
from leanml.data import ImageSet
from leanml.errors import LeanmlError
from leanml.executor import ExecutorConfig, run_tasks
from leanml.nas.checkpoint import load_supernet, space_difference
from leanml.nas.data import subnet_accuracy
from leanml.nas.efficiency import EfficiencyModel
from leanml.nas.space import Arch, SpaceConfig
from leanml.progress import make_console
from leanml.threads import torch_threads

KIND = "nas_samples"


@dataclass
class SampleConfig(Config):
    """How many architectures, how each is measured, and where the tasks run."""

    count: int = 1000
    val_images: int = 5000
    calib_images: int = 2000
    seed: int = 0
    chunk: int = 8  # architectures per task
    threads: int = 1  # torch threads inside each task
    backend: str = "local"
    workers: int = 2
    address: str | None = None

    def validate(self) -> None:
        require(self.count >= 1, f"count must be >= 1, got {self.count}")
        require(self.val_images >= 1 and self.calib_images >= 1, "val_images and calib_images must be >= 1")
        require(self.chunk >= 1 and self.threads >= 1, "chunk and threads must be >= 1")
        self.executor()

    def executor(self) -> ExecutorConfig:
        """The executor these tasks run on."""
        return ExecutorConfig(backend=self.backend, workers=self.workers, address=self.address)

    def measurement(self) -> dict[str, Any]:
        """The fields that make two accuracies comparable (must match to resume or merge)."""
        return {"val_images": self.val_images, "calib_images": self.calib_images, "seed": self.seed}


@dataclass(frozen=True)
class MeasureTask:
    """One chunk of architectures (JSON) to measure on one supernet, with the images to measure on."""

    supernet: str
    archs: tuple[str, ...]
    calib: ImageSet
    evaluation: ImageSet
    threads: int


def measure_task(task: MeasureTask) -> list[float]:
    """Accuracy of each architecture of the task (module level, so process pools and Ray can run it).

    Example:
        >>> arch = SpaceConfig().smallest().to_json()
        >>> task = MeasureTask("runs/nas/supernet", (arch,), calib, val, 1)  # doctest: +SKIP
        >>> measure_task(task)  # doctest: +SKIP
        [0.81]
    """
    with torch_threads(task.threads):
        net = load_supernet(task.supernet).supernet
        return [subnet_accuracy(net, Arch.from_json(a), task.calib, task.evaluation) for a in task.archs]


def measure_archs(
    supernet: str | Path,
    archs: list[Arch],
    cfg: SampleConfig,
    train: ImageSet,
    evaluation: ImageSet,
    progress: bool = True,
) -> list[float]:
    """Accuracy (after BN recalibration) of each architecture, measured in chunks through the executor.

    BN is recalibrated on a seeded sample of ``cfg.calib_images`` of ``train``; accuracy is measured on a
    seeded sample of ``cfg.val_images`` of ``evaluation`` (the validation split, or the test split for a
    final check).

    Example:
        >>> measure_archs("runs/nas/supernet", [SpaceConfig().largest()], SampleConfig(),
        ...               data.train, data.val)  # doctest: +SKIP
        [0.91]
    """
    calib = train.sample(cfg.calib_images, cfg.seed)
    sample = evaluation.sample(cfg.val_images, cfg.seed)
    chunks = [archs[i : i + cfg.chunk] for i in range(0, len(archs), cfg.chunk)]
    tasks = [MeasureTask(str(supernet), tuple(a.to_json() for a in c), calib, sample, cfg.threads)
             for c in chunks]  # fmt: skip
    results = run_tasks(measure_task, tasks, cfg.executor(), progress, f"measuring {len(archs)} subnets")
    return [acc for chunk in results for acc in chunk]


def sample_list(space: SpaceConfig, count: int, seed: int) -> list[Arch]:
    """``count`` distinct architectures drawn uniformly from ``space`` with a seeded generator.

    Example:
        >>> len(set(sample_list(SpaceConfig(), 50, 0)))
        50
    """
    rng = random.Random(seed)
    seen: dict[Arch, None] = {}
    for _ in range(count * 100):
        if len(seen) == count:
            break
        seen.setdefault(space.sample(rng))
    require(len(seen) == count, f"the space has fewer than {count} distinct architectures", "sample fewer")
    return list(seen)


@dataclass
class SampleSet:
    """Measured (architecture, accuracy) pairs of one space, with each architecture's efficiency."""

    space: SpaceConfig
    records: list[dict[str, Any]] = field(default_factory=list)  # {"arch", "val_acc", "macs", ...}
    meta: dict[str, Any] = field(default_factory=dict)

    def pairs(self) -> list[tuple[Arch, float]]:
        """(architecture, accuracy) pairs."""
        return [(Arch.from_dict(r["arch"]), float(r["val_acc"])) for r in self.records]

    def save(self, path: str | Path) -> None:
        """Save as an artifact (no tensors)."""
        save_artifact(path, {}, {"space": self.space.to_dict(), "records": self.records, **self.meta}, kind=KIND)

    @classmethod
    def load(cls, path: str | Path) -> SampleSet:
        """Load a sample file written by :meth:`save`."""
        _, meta = load_artifact(path, kind=KIND)
        space = SpaceConfig.from_dict(meta.pop("space"))
        records = meta.pop("records")
        for key in ("format", "version", "weights_sha256"):
            meta.pop(key, None)
        return cls(space, records, meta)


def sample_architectures(
    supernet: str | Path,
    cfg: SampleConfig,
    out: str | Path,
    train: ImageSet,
    val: ImageSet,
    resume: bool = False,
    progress: bool = True,
) -> SampleSet:
    """Measure ``cfg.count`` random architectures of the supernet's space; save to ``out`` after every round.

    BN recalibration uses ``train`` and accuracy ``val`` (seeded samples, see :func:`measure_archs`).
    """
    space = load_supernet(supernet).space
    efficiency = EfficiencyModel(space)
    exists = artifact_paths(out)[0].exists()
    if exists and not resume:
        raise LeanmlError(f"sample file {out} already exists", "pass --resume to extend it, or choose another --out")
    done = SampleSet(space, meta={"supernet": str(supernet), "measurement": cfg.measurement()})
    if resume and exists:
        done = SampleSet.load(out)
        if diff := space_difference(done.space, space):
            raise LeanmlError(f"{out} was sampled from another space (differs in {', '.join(diff)})",
                              "write the samples of this supernet to a new --out")  # fmt: skip
        if done.meta.get("measurement") != cfg.measurement():
            raise LeanmlError(f"{out} was measured differently ({done.meta.get('measurement')})",
                              "resume with the same --val-images, --calib-images and --seed")  # fmt: skip
    measured = {Arch.from_dict(r["arch"]) for r in done.records}
    todo = [a for a in sample_list(space, cfg.count, cfg.seed) if a not in measured]
    per_round = cfg.chunk * cfg.executor().workers * 4
    console = make_console()
    for start in range(0, len(todo), per_round):
        batch = todo[start : start + per_round]
        accs = measure_archs(supernet, batch, cfg, train, val, progress)
        for arch, acc in zip(batch, accs, strict=True):
            done.records.append({"arch": arch.to_dict(), "val_acc": acc, **efficiency(arch).to_dict()})
        done.save(out)
        console.print(f"measured {len(done.records)}/{cfg.count} subnets")
    if not todo:
        done.save(out)
    return done
