"""``deploy``: an integer model → IR → memory plan → C → compiled library, verified against the reference.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> from leanml.quant import QuantSim, convert
    >>> sim = QuantSim.from_model(build_model("vgg", layers=[4, "M"]).eval())
    >>> sim.calibrate([torch.randn(2, 1, 28, 28)])
    >>> imodel = convert(sim)
    >>> dep = deploy(imodel, DeployConfig())  # doctest: +SKIP
    >>> verify(dep, imodel, torch.randn(4, 1, 28, 28)).identical  # doctest: +SKIP
    True
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leanml.config import Config, require
from leanml.deploy.build import CROSS_TARGETS, CSRC, CompiledModel, compile_shared
from leanml.deploy.codegen import c_prefix, generate_c
from leanml.deploy.ir import Graph, lower
from leanml.deploy.patch import patch_graph, stage_summary
from leanml.deploy.planner import STRATEGIES, MemoryLayout, MemoryReport, memory_report, plan_memory
from leanml.errors import LeanmlError
from leanml.quant.integer import IntegerModel

TARGETS = ("host", *CROSS_TARGETS)


@dataclass
class DeployConfig(Config):
    """How to build: input shape (C, H, W), C prefix, in-place depthwise, placement strategy, target."""

    input_shape: list[int] = field(default_factory=lambda: [1, 28, 28])
    prefix: str = "leanml_model"
    in_place: bool = True
    strategy: str = "best"
    target: str = "host"
    patch: int = 0  # n > 0: run the first stage in n x n patches (MCUNetV2)
    patch_until: str | None = None  # tensor ending the patch stage (default: the cut with the smallest arena)

    def validate(self) -> None:
        require(len(self.input_shape) == 3 and all(d >= 1 for d in self.input_shape),
                f"input_shape must be (C, H, W), got {self.input_shape}")  # fmt: skip
        require(self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r}", f"choose: {', '.join(STRATEGIES)}")
        require(self.patch >= 0, f"patch grid must be >= 0, got {self.patch}", "0 = off, e.g. 3 for 3x3 patches")
        require(self.target in TARGETS, f"unknown target {self.target!r}", f"choose one of: {', '.join(TARGETS)}")


@dataclass
class Deployment:
    """Everything deploy produced: the IR, the memory layout and report, the C sources, the loaded library."""

    config: DeployConfig
    graph: Graph
    layout: MemoryLayout
    memory: MemoryReport
    sources: dict[str, str]
    model: CompiledModel

    def summary(self) -> dict[str, Any]:
        """MACs, flash (constant bytes) and SRAM figures as plain data."""
        return {"macs": self.graph.macs(), "weight_bytes": self.graph.weight_bytes(), **self.memory.to_dict(),
                **(stage_summary(self.graph) or {}), "library": str(self.model.library)}  # fmt: skip


def deploy(model: IntegerModel, cfg: DeployConfig) -> Deployment:
    """Lower, plan, generate and compile ``model``; the result runs through ctypes."""
    c, h, w = cfg.input_shape
    layer_graph = lower(model, (c, h, w))
    graph = patch_graph(layer_graph, cfg.patch, cfg.patch_until) if cfg.patch else layer_graph
    layout = plan_memory(graph, cfg.in_place, cfg.strategy)
    report = memory_report(layer_graph, layout)
    sources = generate_c(graph, layout, cfg.prefix)
    library = compile_shared(sources)
    out_numel = next(op.out_numel for op in graph.ops if op.output == graph.output)
    compiled = CompiledModel(library, c_prefix(cfg.prefix), (c, h, w), out_numel, graph.output_perm,
                             graph.output_q.scale, graph.output_q.zero_point)  # fmt: skip
    return Deployment(cfg, graph, layout, report, sources, compiled)


@dataclass
class VerifyResult:
    """C output codes vs the integer reference on the same inputs."""

    images: int
    elements: int
    mismatched: int

    @property
    def identical(self) -> bool:
        """Bit for bit equal on every output element."""
        return self.mismatched == 0


def verify(dep: Deployment, reference: IntegerModel, x: torch.Tensor | np.ndarray) -> VerifyResult:
    """Run float inputs (N, C, H, W) through the reference and the compiled model; compare int8 output codes."""
    q = reference.quantize_input(x)
    ref = reference.run_int8(q).reshape(len(q), -1)
    got = dep.model.run_int8(q)
    if ref.shape != got.shape:
        raise LeanmlError(f"compiled output shape {got.shape} differs from the reference's {ref.shape}")
    return VerifyResult(len(q), int(ref.size), int((ref != got).sum()))


def export_project(dep: Deployment, out: str | Path, force: bool = False) -> Path:
    """Write a standalone C project (model sources, kernel header, main.c, Makefile) into ``out``.

    Refuses an existing directory unless ``force``; written to a temp folder first, then renamed.
    """
    out = Path(out)
    if out.exists() and not force:
        raise LeanmlError(f"{out} already exists", "pass --force to replace it, or choose another --out")
    p = c_prefix(dep.config.prefix)
    up = p.upper()
    tmp = out.with_name(out.name + ".tmp-leanml")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, text in dep.sources.items():
        (tmp / name).write_text(text)
    for header in CSRC.glob("*.h"):
        shutil.copyfile(header, tmp / header.name)
    (tmp / "main.c").write_text(
        f'/* Runs the model once on a constant input and prints the output codes. */\n#include <stdio.h>\n'
        f'#include "{p}.h"\n\nint main(void) {{\n'
        f"    static float input[{up}_INPUT_H * {up}_INPUT_W * {up}_INPUT_C];\n"
        f"    static float output[{up}_OUTPUT_SIZE];\n"
        f"    for (int i = 0; i < {up}_INPUT_H * {up}_INPUT_W * {up}_INPUT_C; i++) input[i] = (float)(i % 7) * 0.25f;\n"
        f"    if ({p}_run(input, output) != 0) return 1;\n"
        f'    for (int i = 0; i < {up}_OUTPUT_SIZE; i++) printf("%d %.6f\\n", i, (double)output[i]);\n'
        f"    return 0;\n}}\n"
    )  # fmt: skip
    cross = "".join(
        f"{t}: {p}.c {p}.h $(HEADERS)\n\t$(CROSS)gcc -std=c99 -Wall -Wextra -Werror {' '.join(flags)} -c {p}.c "
        f"-o {p}-{t}.o\n\t$(CROSS)size -A -d {p}-{t}.o\n\n"
        for t, flags in CROSS_TARGETS.items()
    )
    headers = " ".join(h.name for h in sorted(CSRC.glob("*.h")))
    (tmp / "Makefile").write_text(
        "# Host: `make` builds and runs main. Microcontrollers: `make cortex-m4` (or cortex-m7) cross-compiles\n"
        "# the model with gcc-arm-none-eabi and prints its sections (flash = text + rodata + data).\n"
        "CC ?= cc\nCFLAGS ?= -std=c99 -O3 -march=native -Wall -Wextra -Werror\nCROSS ?= arm-none-eabi-\n"
        f"HEADERS = {headers}\n\n"
        f"run: main\n\t./main\n\nmain: main.c {p}.c {p}.h $(HEADERS)\n"
        f"\t$(CC) $(CFLAGS) -o $@ main.c {p}.c -lm\n\n{cross}"
        f"clean:\n\trm -f main *.o\n\n.PHONY: run clean {' '.join(CROSS_TARGETS)}\n"
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
