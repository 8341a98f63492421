"""Generated C on an emulated Cortex-M (QEMU): bit-exact with the host build, deterministic instruction counts,
flash/SRAM/stack figures; the map and output parsers; clear errors. The QEMU tests skip without the tools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from leanml.deploy.engine import DeployConfig, Deployment, deploy
from leanml.deploy.mcu import (
    MCU_TARGETS,
    find_tool,
    instrument_layers,
    layer_instructions,
    mcu_target,
    parse_harness_output,
    parse_map,
    run_c_on_target,
    run_on_target,
    tools_missing,
)
from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.quant import QuantSim, convert

needs_qemu = pytest.mark.skipif(bool(tools_missing()), reason="needs: " + "; ".join(tools_missing()))


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEANML_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        torch.manual_seed(0)
        sim = QuantSim.from_model(build_model("vgg", layers=[4, "M"]).eval())
        sim.calibrate([torch.randn(8, 1, 28, 28)])
        yield deploy(convert(sim, {"shape": [1, 28, 28]}), DeployConfig())


def inputs(n: int = 3) -> np.ndarray:
    x = np.random.default_rng(0).integers(-128, 128, size=(n, 28, 28, 1)).astype(np.int8)
    x[1 % n] = x[0]  # the same input twice: the same count up to the tick's phase (+-40)
    return x


@needs_qemu
def test_cortex_m4_is_bit_exact_with_the_host_and_deterministic(dep: Deployment) -> None:
    run = run_on_target(dep, inputs(), "cortex-m4")
    assert run.matches_host and run.mismatched == 0 and run.outputs.shape == (3, 10)
    assert abs(run.instructions[0] - run.instructions[1]) <= 40 and run.instructions[0] > 0  # same input: one tick
    assert run.instructions == [40 * t for t in run.ticks]
    assert run_on_target(dep, inputs(), "cortex-m4").instructions == run.instructions  # same count on a rerun
    assert run.flags == ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft", "-O2")
    assert run.sram_bytes >= run.arena_bytes == dep.layout.arena_bytes
    assert 0 < run.stack_bytes < 4096 and run.peak_sram_bytes == run.arena_bytes + run.stack_bytes
    assert 0 < run.model_flash_bytes < run.flash_bytes
    assert run.model_flash_bytes >= dep.graph.weight_bytes()


@needs_qemu
def test_cortex_m7_runs_too_and_extra_flags_are_stated(dep: Deployment) -> None:
    run = run_on_target(dep, inputs(2), "cortex-m7")
    assert run.matches_host and run.instructions[0] > 0 and run.flags[0] == "-mcpu=cortex-m7"
    ref = run_on_target(dep, inputs(2), "cortex-m7", extra_flags=("-DDK_NO_SIMD",))  # the scalar _ref kernels
    assert ref.matches_host and ref.flags_text.endswith("-O2 -DDK_NO_SIMD")


@needs_qemu
def test_layer_instructions_add_up_to_about_the_total(dep: Deployment) -> None:
    rows = layer_instructions(dep, inputs(1)[0], "cortex-m4")
    total = run_on_target(dep, inputs(1), "cortex-m4").instructions[0]
    assert [r["name"] for r in rows] == [op.name for op in dep.graph.ops[1:]]  # op0 quantizes floats: not in run_q
    assert rows[0]["kind"] == "conv" and rows[0]["instructions"] > 0.5 * total
    assert abs(sum(r["instructions"] for r in rows) - total) < 0.02 * total
    assert abs(sum(r["share"] for r in rows) - 1) < 1e-9


def test_instrument_layers_refuses_an_unknown_layout() -> None:
    src = "static void m_layers(const float *input) {\n    layer_a(input, arena);\n    layer_b(input, arena);\n}\n"
    out, names = instrument_layers(src, "m")
    assert names == ["a", "b"] and out.count("LEANML_MCU_MARK(") == 4  # 3 marks + the macro
    with pytest.raises(LeanmlError, match="unexpected statement"):
        instrument_layers(src.replace("layer_b(input, arena);", "other();"), "m")
    with pytest.raises(LeanmlError, match="no x_layers function"):
        instrument_layers(src, "x")


@needs_qemu
def test_run_c_on_target_returns_stdout_and_refuses_a_failing_program() -> None:
    main = '#include <stdio.h>\nint main(void) { printf("%d\\n", 6 * 7); return 0; }\n'
    assert run_c_on_target({}, main, "cortex-m4").strip() == "42"
    with pytest.raises(LeanmlError, match="exited with status"):
        run_c_on_target({}, "int main(void) { return 3; }\n", "cortex-m7")
    with pytest.raises(LeanmlError, match=r"could not compile helper\.c"):
        run_c_on_target({"helper.c": "int f(void) { return x; }\n"}, "int main(void) { return 0; }\n", "cortex-m4")


@needs_qemu
def test_bad_inputs_are_refused(dep: Deployment) -> None:
    with pytest.raises(LeanmlError, match="NHWC"):
        run_on_target(dep, np.zeros((1, 1, 28, 28), np.int8), "cortex-m4")
    with pytest.raises(LeanmlError, match="no emulated board"):
        run_on_target(dep, inputs(1), "host")


def test_targets_and_missing_tools_name_the_fix() -> None:
    assert {t.board for t in MCU_TARGETS.values()} == {"mps2-an386", "mps2-an500"}
    assert mcu_target("cortex-m7").qemu_command(Path("a.elf"))[-1] == "loader,file=a.elf,cpu-num=0"
    with pytest.raises(LeanmlError, match="apt-get install no-such-tool-xyz"):
        find_tool("no-such-tool-xyz")


def test_parse_map_counts_kept_sections_per_object_and_kind() -> None:
    text = ("Discarded input sections\n .text.gone  0x00000000  0x40 /t/model.o\n"
            "Linker script and memory map\n .text.layer_op1\n                0x00008000      0x120 /t/model.o\n"
            " .rodata.w  0x00009000  0x24 /t/model.o\n .bss.arena  0x0000a000  0xf50 /t/model.o\n"
            " .text  0x0000b000  0x10 /usr/lib/libc.a(lib_a-exit.o)\n *fill*  0x0000b010  0x4\n")  # fmt: skip
    got = parse_map(text)
    assert got["model.o"] == {"text": 0x120, "rodata": 0x24, "bss": 0xF50}
    assert got["libc.a(lib_a-exit.o)"] == {"text": 0x10}


def test_parse_harness_output_checks_every_line() -> None:
    outs, ticks, stack = parse_harness_output("boot\nin 0 rc 0 ticks 9 stack 16 out 0180ff\n", 1, 3)
    assert outs.tolist() == [[1, -128, -1]] and ticks == [9] and stack == [16]
    with pytest.raises(LeanmlError, match="1 of 2 inputs"):
        parse_harness_output("in 0 rc 0 ticks 9 stack 16 out 0180ff\n", 2, 3)
    with pytest.raises(LeanmlError, match="returned 1"):
        parse_harness_output("in 0 rc 1 ticks 9 stack 16 out 0180ff\n", 1, 3)
