"""``deploy``: an integer model → IR → memory plan → C → compiled library, verified against the reference.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> from leanml.quant import QuantSim, convert
    >>> sim = QuantSim.from_model(build_model("vgg", layers=[4, "M"]).eval())
    >>> sim.calibrate([torch.randn(2, 1, 28, 28)])
    >>> imodel = convert(sim)
    >>> dep = deploy(imodel, DeployConfig(input_shape=[1, 28, 28]))  # doctest: +SKIP
    >>> verify(dep, imodel, torch.randn(4, 1, 28, 28)).identical  # doctest: +SKIP
    True

The input shape is the model's own (its stored ``input`` block) unless
``DeployConfig.input_shape`` gives one; a given shape that differs from the
stored one is refused.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leanml.config import Config, require
from leanml.deploy.build import CROSS_TARGETS, CSRC, OPT_FLAGS, CompiledModel, compile_shared, target_section_sizes
from leanml.deploy.codegen import c_prefix, generate_c
from leanml.deploy.ir import Graph, lower
from leanml.deploy.patch import patch_graph, stage_summary
from leanml.deploy.planner import (
    STRATEGIES,
    MemoryLayout,
    MemoryReport,
    memory_report,
    plan_memory,
    timeline_buffers,
)
from leanml.deploy.weights import use_sub_byte_weights
from leanml.errors import LeanmlError
from leanml.profile.timing import LatencyStats, measure_latency
from leanml.quant.integer import IntegerModel

TARGETS = ("host", *CROSS_TARGETS)
MAX_THREADS = 8  # the pool's limit (csrc/leanml_pool.h)


@dataclass
class DeployConfig(Config):
    """How to build: input shape (C, H, W; None = the model's stored one), C prefix, in-place depthwise, placement
    strategy, target."""

    input_shape: list[int] | None = None
    prefix: str = "leanml_model"
    in_place: bool = True
    strategy: str = "best"
    target: str = "host"
    patch: int = 0  # n > 0: run the first stage in n x n patches (MCUNetV2)
    patch_until: str | None = None  # tensor ending the patch stage (default: the cut with the smallest arena)
    # layers whose weights all fit in 4 bits stored two per byte (lossless); None: on for Cortex-M targets (flash),
    # off on the host (the 4-bit kernels are plain loops: speed)
    sub_byte_weights: bool | None = None
    threads: int = 1  # host only: > 1 splits each layer over that many threads (POSIX threads; in-place off)

    @property
    def packs_sub_byte(self) -> bool:
        """Whether 4-bit layers are packed: ``sub_byte_weights``, or by default on Cortex-M targets only."""
        return self.sub_byte_weights if self.sub_byte_weights is not None else self.target != "host"

    def validate(self) -> None:
        require(self.input_shape is None or (len(self.input_shape) == 3 and all(d >= 1 for d in self.input_shape)),
                f"input_shape must be (C, H, W), got {self.input_shape}")  # fmt: skip
        require(self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r}", f"choose: {', '.join(STRATEGIES)}")
        require(self.patch >= 0, f"patch grid must be >= 0, got {self.patch}", "0 = off, e.g. 3 for 3x3 patches")
        require(self.target in TARGETS, f"unknown target {self.target!r}", f"choose one of: {', '.join(TARGETS)}")
        require(1 <= self.threads <= MAX_THREADS, f"threads must be 1..{MAX_THREADS}, got {self.threads}")
        require(self.threads == 1 or self.target == "host", f"threads={self.threads} needs the host target",
                "a microcontroller build runs on one core: use threads=1")  # fmt: skip


@dataclass
class Deployment:
    """Everything deploy produced: the IR, the memory layout and report, the C sources, the loaded library."""

    config: DeployConfig
    graph: Graph
    layout: MemoryLayout
    memory: MemoryReport
    sources: dict[str, str]
    model: CompiledModel
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) it was built for
    flash_note: str | None = None  # compression in the model's history that the dense int8 C does not exploit

    def summary(self) -> dict[str, Any]:
        """MACs, flash (constant bytes) and SRAM figures as plain data (``flash_note`` when the history has one)."""
        out = {"macs": self.graph.macs(), "weight_bytes": self.graph.weight_bytes(), **self.memory.to_dict(),
               **(stage_summary(self.graph) or {}), "library": str(self.model.library),
               "input_shape": list(self.input_shape)}  # fmt: skip
        if self.flash_note is not None:
            out["flash_note"] = self.flash_note
        return out


def resolve_input_shape(model: IntegerModel, cfg: DeployConfig) -> tuple[int, int, int]:
    """The (C, H, W) to build for: ``cfg.input_shape`` or the model's stored shape; a mismatch is refused.

    Example:
        >>> from leanml.quant.integer_ops import QuantizeInput, TensorQ
        >>> m = IntegerModel([QuantizeInput("q", "x", TensorQ(0.1, 0))], "x", TensorQ(0.1, 0), {"shape": [1, 24, 24]})
        >>> resolve_input_shape(m, DeployConfig())
        (1, 24, 24)
    """
    stored = model.input_shape
    if cfg.input_shape is None:
        if stored is None:
            raise LeanmlError("the integer model stores no input shape and none was given",
                              "pass --input-shape C,H,W (DeployConfig.input_shape), or re-quantize it from its "
                              "checkpoint so that it carries its input block")  # fmt: skip
        return stored
    c, h, w = cfg.input_shape
    if stored is not None and (c, h, w) != stored:
        raise LeanmlError(f"deploy refuses a mismatch: input shape {[c, h, w]} given, the model takes {list(stored)}",
                          "drop --input-shape (the model's own shape is used) or pass the stored one")  # fmt: skip
    return (c, h, w)


def flash_note(history: dict[str, Any] | None, sub_byte: bool = True) -> str | None:
    """What the deployed flash does not reflect of the model's history (sparsity, sub-8-bit weights), or None.

    With ``sub_byte`` (``DeployConfig.sub_byte_weights``) layers of at most 4 bits are stored two per byte; 5..7-bit
    layers stay int8, and 2/3-bit layers take 4 bits.

    Example:
        >>> flash_note({"sparsity": 0.628})
        '62.8% weight sparsity is not exploited by the dense int8 kernels: flash is the dense size'
        >>> flash_note({"weight_bits": {"a": 4, "b": 6}})
        '6-bit weights are stored as int8 (4-bit and narrower layers are packed two per byte)'
    """
    if not history:
        return None
    notes = []
    sparsity = history.get("sparsity")
    sparse = isinstance(sparsity, (int, float)) and sparsity > 0
    if sparse:
        notes.append(f"{sparsity:.1%} weight sparsity is not exploited by the dense int8 kernels")
    bits = history.get("weight_bits")
    if isinstance(bits, dict) and bits:
        widths = sorted({int(b) for b in bits.values()})
        wide = [b for b in widths if (4 < b < 8 if sub_byte else b < 8)]
        if wide:
            packed = " (4-bit and narrower layers are packed two per byte)" if sub_byte else ""
            notes.append(f"{'/'.join(map(str, wide))}-bit weights are stored as int8{packed}")
        if sub_byte and any(b < 4 for b in widths):
            notes.append(f"{'/'.join(str(b) for b in widths if b < 4)}-bit weights take 4 bits")
    if not notes:
        return None
    return "; ".join(notes) + (": flash is the dense size" if sparse else "")


def deploy(model: IntegerModel, cfg: DeployConfig) -> Deployment:
    """Lower, plan, generate and compile ``model``; the result runs through ctypes.

    The input shape is ``cfg.input_shape`` or, when None, the model's stored one (see :func:`resolve_input_shape`).
    """
    c, h, w = resolve_input_shape(model, cfg)
    return deploy_graph(lower(model, (c, h, w)), cfg, flash_note(model.history, cfg.packs_sub_byte))


def deploy_graph(layer_graph: Graph, cfg: DeployConfig, note: str | None = None) -> Deployment:
    """Plan, generate and compile an IR graph (from :func:`~leanml.deploy.ir.lower` or the ``.tflite`` importer).

    Example:
        >>> from leanml.deploy.tflite import load_tflite
        >>> dep = deploy_graph(load_tflite("model.tflite"), DeployConfig())  # doctest: +SKIP
    """
    h, w, c = layer_graph.input_shape
    graph = patch_graph(layer_graph, cfg.patch, cfg.patch_until) if cfg.patch else layer_graph
    # threads > 1: no in-place ops (they run on one thread); the host has the SRAM
    layout = plan_memory(graph, cfg.in_place and cfg.threads == 1, cfg.strategy)
    if cfg.packs_sub_byte:  # after planning: ops run by a kernel with no 4-bit twin stay int8
        no_w4 = {op.name for op in graph.ops if op.name in layout.in_place and op.kind == "conv1x1"}
        use_sub_byte_weights(graph, skip=no_w4)
    report = memory_report(layer_graph, layout)
    sources = generate_c(graph, layout, cfg.prefix, cfg.threads)
    library = compile_shared(sources, OPT_FLAGS + (("-pthread",) if cfg.threads > 1 else ()))
    out_numel = next(op.out_numel for op in graph.ops if op.output == graph.output)
    compiled = CompiledModel(library, c_prefix(cfg.prefix), (c, h, w), out_numel, graph.output_perm,
                             graph.output_q.scale, graph.output_q.zero_point)  # fmt: skip
    return Deployment(cfg, graph, layout, report, sources, compiled, (c, h, w), note)


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


def export_project(dep: Deployment, out: str | Path, overwrite: bool = False) -> Path:
    """Write a standalone C project (model sources, kernel header, main.c, Makefile) into ``out``.

    Refuses an existing directory unless ``overwrite``; written to a temp folder first, then renamed.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise LeanmlError(f"{out} already exists", "pass --overwrite to replace it, or choose another --out")
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
    pthread = " -pthread" if dep.config.threads > 1 else ""  # the multi-thread mode is host only: no cross rules
    cross = (
        ""
        if pthread
        else "".join(
            f"{t}: {p}.c {p}.h $(HEADERS)\n\t$(CROSS)gcc -std=c99 -Wall -Wextra -Werror {' '.join(flags)} -c {p}.c "
            f"-o {p}-{t}.o\n\t$(CROSS)size -A -d {p}-{t}.o\n\n"
            for t, flags in CROSS_TARGETS.items()
        )
    )
    headers = " ".join(h.name for h in sorted(CSRC.glob("*.h")))
    (tmp / "Makefile").write_text(
        "# Host: `make` builds and runs main. Microcontrollers: `make cortex-m4` (or cortex-m7) cross-compiles\n"
        "# the model with gcc-arm-none-eabi and prints its sections (flash = text + rodata + data).\n"
        f"CC ?= cc\nCFLAGS ?= -std=c99 -O3 -march=native -Wall -Wextra -Werror{pthread}\n"
        "CROSS ?= arm-none-eabi-\n"
        f"HEADERS = {headers}\n\n"
        f"run: main\n\t./main\n\nmain: main.c {p}.c {p}.h $(HEADERS)\n"
        f"\t$(CC) $(CFLAGS) -o $@ main.c {p}.c -lm\n\n{cross}"
        f"clean:\n\trm -f main *.o\n\n.PHONY: run clean {' '.join(CROSS_TARGETS)}\n"
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def measure_c_latency(dep: Deployment, repeats: int = 50, warmup: int = 5) -> LatencyStats:
    """Latency of the compiled model at batch 1 (float in, float out, quantization in C), via the timing module.

    Example:
        >>> measure_c_latency(dep, repeats=10).median_ms  # doctest: +SKIP
        0.21
    """
    x1 = np.zeros((1, *dep.input_shape), dtype=np.float32)  # (1, C, H, W)
    return measure_latency(lambda: dep.model(x1), warmup=warmup, repeats=repeats, threads=dep.config.threads,
                           batch_size=1)  # fmt: skip


def deploy_summary_row(dep: Deployment) -> dict[str, Any]:
    """One row for comparison tables: flash bytes (weights + constants, and the target's sections when cross-built),
    SRAM bytes (the arena), MACs.

    ``flash_bytes`` is ``graph.weight_bytes()``; with a Cortex-M target the row adds ``text_bytes``,
    ``rodata_bytes`` and ``flash_section_bytes`` (.text + .rodata + .data) from the cross compiler.

    Example:
        >>> deploy_summary_row(dep)["sram_bytes"]  # doctest: +SKIP
        12288
    """
    row: dict[str, Any] = {"flash_bytes": dep.graph.weight_bytes(), "sram_bytes": dep.layout.arena_bytes,
                           "macs": dep.graph.macs(), "target": dep.config.target}  # fmt: skip
    if dep.config.target in CROSS_TARGETS:
        sections = target_section_sizes(dep.sources, dep.config.target)
        row.update(text_bytes=sections["text"], rodata_bytes=sections["rodata"],
                   flash_section_bytes=sections["text"] + sections["rodata"] + sections["data"])  # fmt: skip
    if dep.flash_note is not None:
        row["flash_note"] = dep.flash_note
    return row


def memory_timeline(dep: Deployment) -> dict[str, Any]:
    """The arena plan over time: op names in order and every buffer's offset, size and live op range (inclusive).

    One entry per tensor (tensors sharing a buffer, by a view or an in-place op, share its offset, each over its
    own steps), per op scratch (``<op>.scratch``) and per row-streamed tensor's line buffer (``<tensor>.rows``),
    from :func:`leanml.deploy.planner.timeline_buffers`; ``first_op``/``last_op`` index ``ops``.

    Example:
        >>> t = memory_timeline(dep)  # doctest: +SKIP
        >>> max(b["offset"] + b["size"] for b in t["buffers"]) <= t["arena_bytes"]  # doctest: +SKIP
        True
    """
    buffers = [{k: (v if isinstance(v, str) else int(v)) for k, v in b.items()}
               for b in timeline_buffers(dep.graph, dep.layout)]  # fmt: skip
    return {"arena_bytes": int(dep.layout.arena_bytes), "ops": [op.name for op in dep.graph.ops], "buffers": buffers}


def layer_table(dep: Deployment) -> list[dict[str, Any]]:
    """Per op, in order: name, kind, MACs, flash bytes of its constants, output bytes (int8 activations in SRAM).

    Example:
        >>> sum(r["macs"] for r in layer_table(dep)) == dep.graph.macs()  # doctest: +SKIP
        True
    """
    return [{"name": op.name, "kind": op.kind, "macs": int(op.macs()), "weight_bytes": int(op.weight_bytes()),
             "output_bytes": 0 if op.is_view else int(op.out_numel), "output_shape": list(op.out_shape)}
            for op in dep.graph.ops]  # fmt: skip
