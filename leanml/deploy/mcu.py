"""Run generated C on an emulated Cortex-M (QEMU): instructions per inference, flash, SRAM, bit-exactness.

The method is the one the TFLM reference figures in ``../shared/models/README.md`` were measured with: a
bare-metal ELF built with Debian's ``arm-none-eabi-gcc`` (newlib, ``--specs=rdimon.specs``, default rdimon
layout, ``-Wl,--gc-sections``), loaded into Debian's ``qemu-system-arm`` with ``-device loader`` on the MPS2
board of the core (``mps2-an386`` for Cortex-M4, ``mps2-an500`` for Cortex-M7) with ``-semihosting -icount
shift=0``. The harness reads the CMSDK APB timer 0 (25 MHz; one tick = 40 instructions under ``shift=0``)
just before and after ``<prefix>_run_q`` alone, so **instructions = ticks x 40** (+-40), and the count is
deterministic. The stack below the harness's ``sp`` is painted before each call and scanned after it, giving
the inference's stack high-water mark, so ``peak SRAM = arena + stack`` is a measured figure.

The compile flags live in :data:`MCU_TARGETS` (soft-float like TFLM's ``cortex_m_qemu`` build; ``run_q`` uses
no float) and every result states them.

Example:
    >>> run = run_on_target(dep, np.zeros((2, 28, 28, 1), np.int8), "cortex-m4")  # doctest: +SKIP
    >>> run.instructions, run.matches_host  # doctest: +SKIP
    ([706360, 706360], True)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leanml.deploy.build import CROSS_TARGETS, CSRC
from leanml.deploy.codegen import c_prefix
from leanml.errors import LeanmlError
from leanml.native_build import WARN_FLAGS

if TYPE_CHECKING:
    from leanml.deploy.engine import Deployment

CC, SIZE, QEMU = "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"
INSTALL = {CC: "gcc-arm-none-eabi", SIZE: "binutils-arm-none-eabi", QEMU: "qemu-system-arm"}
INSTRUCTIONS_PER_TICK = 40  # CMSDK timer at 25 MHz, -icount shift=0: 1 ns of virtual time per instruction
TIMER_BASE = 0x40000000  # CMSDK APB timer 0: CTRL +0, VALUE +4, RELOAD +8
STACK_PAINT_BYTES = 64 * 1024  # painted below the harness's sp before each call
PAINT_WORD = 0xA5A5A5A5
CODEGEN_FLAGS = ("-ffunction-sections", "-fdata-sections")  # so --gc-sections drops what the ELF does not use
LINK_FLAGS = ("--specs=rdimon.specs", "-Wl,--gc-sections")


@dataclass(frozen=True)
class McuTarget:
    """A Cortex-M core: its QEMU board and CPU, and the flags the C is compiled with."""

    name: str
    board: str
    cpu: str
    flags: tuple[str, ...]

    def qemu_command(self, elf: Path) -> list[str]:
        """The QEMU command line that runs ``elf`` (semihosting, deterministic instruction count)."""
        return [QEMU, "-M", self.board, "-cpu", self.cpu, "-nographic", "-semihosting", "-icount", "shift=0",
                "-device", f"loader,file={elf},cpu-num=0"]  # fmt: skip


MCU_FLAGS = CROSS_TARGETS  # the Cortex-M compile flags: one set, in leanml.deploy.build
MCU_TARGETS: dict[str, McuTarget] = {
    "cortex-m4": McuTarget("cortex-m4", "mps2-an386", "cortex-m4", MCU_FLAGS["cortex-m4"]),
    "cortex-m7": McuTarget("cortex-m7", "mps2-an500", "cortex-m7", MCU_FLAGS["cortex-m7"]),
}


def mcu_target(name: str) -> McuTarget:
    """The :class:`McuTarget` called ``name``; an unknown name is a clear error.

    Example:
        >>> mcu_target("cortex-m4").board
        'mps2-an386'
    """
    if name not in MCU_TARGETS:
        raise LeanmlError(f"no emulated board for target {name!r}",
                          f"running under QEMU needs one of: {', '.join(MCU_TARGETS)}")  # fmt: skip
    return MCU_TARGETS[name]


def find_tool(tool: str) -> str:
    """Path of a cross tool or QEMU; a missing one is an error naming the Debian package.

    Example:
        >>> find_tool("arm-none-eabi-gcc")  # doctest: +SKIP
        '/usr/bin/arm-none-eabi-gcc'
    """
    found = shutil.which(tool)
    if found is None:
        package = INSTALL.get(tool, tool)
        raise LeanmlError(f"{tool} is missing (needed to run the C on an emulated Cortex-M)",
                          f"install it: `apt-get install {package}` (or `make toolchain` as root)")  # fmt: skip
    return found


def tools_missing() -> list[str]:
    """Install commands for the cross compiler and QEMU when absent (empty when both are there).

    Example:
        >>> isinstance(tools_missing(), list)
        True
    """
    return [f"apt-get install {INSTALL[t]}" for t in (CC, QEMU) if shutil.which(t) is None]


@dataclass
class Elf:
    """A linked ELF and what it holds: size's text/data/bss and the linker map's bytes per object and kind."""

    path: Path
    text: int
    data: int
    bss: int
    objects: dict[str, dict[str, int]]  # object file name -> {"text", "rodata", "data", "bss"} bytes

    def object_bytes(self, name: str, *kinds: str) -> int:
        """Bytes of ``kinds`` (text, rodata, data, bss) that object ``name`` (e.g. ``model.o``) put in the ELF."""
        sizes = self.objects.get(name, {})
        return sum(sizes.get(k, 0) for k in kinds)


def _section_kind(section: str) -> str | None:
    for kind in ("text", "rodata", "data", "bss"):
        if section == f".{kind}" or section.startswith(f".{kind}."):
            return kind
    return "bss" if section == "COMMON" else None


def parse_map(text: str) -> dict[str, dict[str, int]]:
    """Bytes per object file (by base name, archive members as ``lib.a(member.o)``) and section kind, from a GNU ld
    map's memory map (discarded sections are not counted).

    Example:
        >>> parse_map("Linker script and memory map\\n .text.f  0x00008000  0x20 /tmp/x/model.o\\n")
        {'model.o': {'text': 32}}
    """
    start = text.find("Linker script and memory map")
    lines = text[start:].splitlines() if start >= 0 else []
    out: dict[str, dict[str, int]] = {}
    pending: str | None = None
    full = re.compile(r"^ (\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
    cont = re.compile(r"^\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
    for line in lines:
        m = full.match(line)
        if m:
            section, size, owner = m.group(1), int(m.group(3), 16), m.group(4)
        elif pending is not None and (c := cont.match(line)):
            section, size, owner = pending, int(c.group(2), 16), c.group(3)
        else:
            pending = line[1:].strip() if re.match(r"^ \S+$", line) else None
            continue
        pending = None
        kind = _section_kind(section)
        if kind is None or size == 0:
            continue
        name = Path(owner.strip()).name
        out.setdefault(name, {}).setdefault(kind, 0)
        out[name][kind] += size
    return out


def build_elf(sources: dict[str, str], main_c: str, target: str, workdir: Path,
              extra_flags: tuple[str, ...] = ()) -> Elf:  # fmt: skip
    """Compile ``sources`` (file name -> text) and ``main_c`` (as ``main.c``) for ``target`` into ``workdir/app.elf``,
    one object per ``.c`` (``name.o``), the kernel headers on the include path.

    Example:
        >>> build_elf({}, "int main(void) { return 0; }", "cortex-m4", Path("/tmp/x")).text > 0  # doctest: +SKIP
        True
    """
    spec = mcu_target(target)
    cc, size_tool = find_tool(CC), find_tool(SIZE)
    files = {**sources, "main.c": main_c}
    for name, text in files.items():
        (workdir / name).write_text(text)
    flags = [*WARN_FLAGS, *spec.flags, *CODEGEN_FLAGS, *extra_flags, f"-I{CSRC}", f"-I{workdir}"]
    objects = []
    for name in files:
        if not name.endswith(".c"):
            continue
        obj = workdir / (name[:-2] + ".o")
        proc = subprocess.run([cc, *flags, "-c", str(workdir / name), "-o", str(obj)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LeanmlError(f"{CC} could not compile {name} for {target}: {proc.stderr.strip()[:2000]}",
                              "a bug in the generated C or the kernels for this target: please report")  # fmt: skip
        objects.append(str(obj))
    elf, mapfile = workdir / "app.elf", workdir / "app.map"
    link = [cc, *spec.flags, *LINK_FLAGS, f"-Wl,-Map={mapfile}", *objects, "-o", str(elf)]
    proc = subprocess.run(link, capture_output=True, text=True)
    if proc.returncode != 0:
        hint = ("install newlib for it: `apt-get install libnewlib-arm-none-eabi`" if "rdimon" in proc.stderr
                else "the program does not fit or misses a symbol: see the linker's message")  # fmt: skip
        raise LeanmlError(f"linking the {target} ELF failed: {proc.stderr.strip()[:2000]}", hint)
    listing = subprocess.run([size_tool, str(elf)], capture_output=True, text=True, check=True).stdout.splitlines()
    text_bytes, data_bytes, bss_bytes = (int(v) for v in listing[1].split()[:3])
    return Elf(elf, text_bytes, data_bytes, bss_bytes, parse_map(mapfile.read_text()))


def run_elf(elf: Path, target: str, timeout: float = 120.0) -> str:
    """Run ``elf`` under QEMU on ``target``'s board; its semihosting stdout. A non-zero exit or a timeout raises.

    Example:
        >>> run_elf(Path("app.elf"), "cortex-m4")  # doctest: +SKIP
        'hello\\n'
    """
    cmd = mcu_target(target).qemu_command(elf)
    cmd[0] = find_tool(QEMU)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        tail = (e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or "")[-500:]
        raise LeanmlError(f"{elf.name} did not finish within {timeout:g} s under {QEMU} ({target}); output: {tail!r}",
                          "a hang or a hard fault in the C (QEMU then stalls), or too many inputs: pass a larger "
                          "timeout or fewer inputs") from e  # fmt: skip
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-2000:]
        raise LeanmlError(f"{elf.name} exited with status {proc.returncode} under {QEMU} ({target}): {out}",
                          "main must return 0; a QEMU error above names a bad option or board")  # fmt: skip
    return proc.stdout


def run_c_on_target(sources: dict[str, str], main_c: str, target: str, timeout: float = 120.0,
                    extra_flags: tuple[str, ...] = ()) -> str:  # fmt: skip
    """Build ``sources`` plus ``main_c`` for ``target`` (flags of :data:`MCU_TARGETS`, kernel headers included) and
    run it under QEMU; returns what the program printed (``printf`` goes through semihosting).

    Example:
        >>> main = '#include <stdio.h>\\nint main(void) { printf("%d\\\\n", 6 * 7); return 0; }\\n'
        >>> run_c_on_target({}, main, "cortex-m4")  # doctest: +SKIP
        '42\\n'
    """
    with tempfile.TemporaryDirectory(prefix="leanml-mcu-") as tmp:
        elf = build_elf(sources, main_c, target, Path(tmp), extra_flags)
        return run_elf(elf.path, target, timeout)


def c_bytes(values: np.ndarray) -> str:
    """int8 values as a C initializer body, 32 per line.

    Example:
        >>> c_bytes(np.array([1, -2, 3], np.int8))
        '1,-2,3'
    """
    flat = np.asarray(values, dtype=np.int8).reshape(-1).tolist()
    return ",\n".join(",".join(map(str, flat[i : i + 32])) for i in range(0, len(flat), 32)) or "0"


def harness_c(prefix: str, count: int, input_size: int, paint_bytes: int = STACK_PAINT_BYTES, layers: int = 0) -> str:
    """The generated ``main.c``: for each input, paint the stack, read the timer around ``<prefix>_run_q`` only,
    scan the stack, print ``in <i> rc <rc> ticks <t> stack <bytes> out <hex>``; with ``layers`` (an instrumented
    model, see :func:`instrument_layers`) also ``layers <i> <ticks of each layer>``.

    Example:
        >>> "leanml_model_run_q(leanml_mcu_inputs[n], output)" in harness_c("leanml_model", 2, 784)
        True
    """
    up = prefix.upper()
    layer_decl = f"extern volatile uint32_t leanml_mcu_layer_ticks[{layers + 1}];\n" if layers else ""
    layer_print = (f'\n        printf("layers %d", n);\n        for (int k = 0; k < {layers}; k++)\n'
                   f'            printf(" %lu", (unsigned long)(leanml_mcu_layer_ticks[k] - '
                   f'leanml_mcu_layer_ticks[k + 1]));\n        printf("\\n");') if layers else ""  # fmt: skip
    return f"""/* Generated by leanml (leanml/deploy/mcu.py): times {prefix}_run_q under QEMU. */
#include <stdint.h>
#include <stdio.h>
#include "{prefix}.h"

#define MCU_COUNT {count}
#define MCU_TIMER ((volatile uint32_t *)0x{TIMER_BASE:08X}u) /* CMSDK APB timer 0: CTRL, VALUE, RELOAD */
#define MCU_PAINT_BYTES {paint_bytes}u
#define MCU_PAINT 0x{PAINT_WORD:08X}u

extern const int8_t leanml_mcu_inputs[MCU_COUNT][{input_size}];
{layer_decl}static int8_t output[{up}_OUTPUT_SIZE];

int main(void) {{
    MCU_TIMER[0] = 0u;
    MCU_TIMER[2] = 0xFFFFFFFFu;
    MCU_TIMER[1] = 0xFFFFFFFFu;
    MCU_TIMER[0] = 1u;
    printf("leanml-mcu begin\\n");
    for (int n = 0; n < MCU_COUNT; n++) {{
        uint32_t sp;
        __asm volatile("mov %0, sp" : "=r"(sp));
        volatile uint32_t *top = (volatile uint32_t *)(sp & ~3u);
        volatile uint32_t *low = (volatile uint32_t *)((sp - MCU_PAINT_BYTES) & ~3u);
        for (volatile uint32_t *p = low; p < top; p++) *p = MCU_PAINT; /* below sp: unused until the call */
        uint32_t t0 = MCU_TIMER[1];
        int rc = {prefix}_run_q(leanml_mcu_inputs[n], output);
        uint32_t t1 = MCU_TIMER[1];
        volatile uint32_t *q = low;
        while (q < top && *q == MCU_PAINT) q++;
        printf("in %d rc %d ticks %lu stack %lu out ", n, rc, (unsigned long)(t0 - t1),
               (unsigned long)((uint32_t)top - (uint32_t)q));
        for (int i = 0; i < {up}_OUTPUT_SIZE; i++) printf("%02x", (unsigned)(uint8_t)output[i]);
        printf("\\n");{layer_print}
    }}
    printf("leanml-mcu end\\n");
    return 0;
}}
"""


@dataclass
class McuRun:
    """One model run under QEMU: int8 outputs (N, F) in the C's order, instructions per input, sizes in bytes.

    ``flash_bytes`` is the ELF's text + data minus the input blobs (the README's method: newlib/rdimon, the
    harness and ``printf`` included); ``model_flash_bytes`` is the model object's own text + rodata + data.
    ``sram_bytes`` is the model object's static .data + .bss (the arena included); ``stack_bytes`` the deepest
    stack of any inference; ``peak_sram_bytes`` = arena + stack.
    """

    target: str
    flags: tuple[str, ...]
    outputs: np.ndarray
    instructions: list[int]
    ticks: list[int]
    flash_bytes: int
    model_flash_bytes: int
    sram_bytes: int
    stack_bytes: int
    arena_bytes: int
    matches_host: bool | None = None
    mismatched: int = 0
    stdout: str = field(default="", repr=False)

    @property
    def peak_sram_bytes(self) -> int:
        """Arena + the measured stack high-water mark of the inference."""
        return self.arena_bytes + self.stack_bytes

    @property
    def flags_text(self) -> str:
        """The compile flags as one string, e.g. ``-mcpu=cortex-m4 -mthumb -mfloat-abi=soft -O2``."""
        return " ".join(self.flags)


_LINE = re.compile(r"^in (\d+) rc (-?\d+) ticks (\d+) stack (\d+) out ([0-9a-f]*)$")


def parse_harness_output(stdout: str, count: int, out_size: int) -> tuple[np.ndarray, list[int], list[int]]:
    """(outputs (count, out_size) int8, ticks, stack bytes) from the harness's lines; anything missing raises.

    Example:
        >>> outs, ticks, stack = parse_harness_output("in 0 rc 0 ticks 5 stack 64 out 7f80\\n", 1, 2)
        >>> outs.tolist(), ticks, stack
        ([[127, -128]], [5], [64])
    """
    rows: dict[int, tuple[np.ndarray, int, int]] = {}
    for line in stdout.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        n, rc, hexout = int(m.group(1)), int(m.group(2)), m.group(5)
        if rc != 0:
            raise LeanmlError(f"run_q returned {rc} on input {n} under QEMU", "a bug in the generated C: please report")
        if len(hexout) != 2 * out_size:
            raise LeanmlError(f"input {n}: {len(hexout) // 2} output bytes printed, the model has {out_size}")
        rows[n] = (np.frombuffer(bytes.fromhex(hexout), dtype=np.int8), int(m.group(3)), int(m.group(4)))
    if sorted(rows) != list(range(count)):
        raise LeanmlError(f"the QEMU run printed results for {len(rows)} of {count} inputs: {stdout[-500:]!r}",
                          "the program stopped early: see its output")  # fmt: skip
    outs = np.stack([rows[n][0] for n in range(count)]) if count else np.zeros((0, out_size), np.int8)
    return outs, [rows[n][1] for n in range(count)], [rows[n][2] for n in range(count)]


def check_inputs(dep: Deployment, inputs_int8: np.ndarray) -> np.ndarray:
    """``inputs_int8`` as int8 (N, H, W, C) for ``dep``; a wrong shape or values out of int8 raise.

    Example:
        >>> check_inputs(dep, np.zeros((1, 28, 28, 1), np.int64)).dtype  # doctest: +SKIP
        dtype('int8')
    """
    c, h, w = dep.input_shape
    x = np.asarray(inputs_int8)
    if x.ndim != 4 or x.shape[1:] != (h, w, c) or len(x) == 0:
        raise LeanmlError(f"inputs of shape {tuple(x.shape)} for a model taking (N, {h}, {w}, {c}) int8 (HWC)",
                          "pass at least one input in NHWC order")  # fmt: skip
    if x.dtype != np.int8 and (x.min() < -128 or x.max() > 127):
        raise LeanmlError("inputs are out of the int8 range", "pass int8 codes (the model's quantized input)")
    return x.astype(np.int8)


def instrument_layers(source: str, prefix: str) -> tuple[str, list[str]]:
    """``<prefix>.c`` with a timer read before the first and after every layer call of ``<prefix>_layers`` (into
    ``leanml_mcu_layer_ticks``), and the op names in call order. A changed code layout is a clear error.

    Example:
        >>> src = "static void m_layers(const float *input) {\\n    layer_op1_fc(input, arena);\\n}\\n"
        >>> instrument_layers(src, "m")[1]
        ['op1_fc']
    """
    head = f"static void {prefix}_layers(const float *input) {{\n"
    start = source.find(head)
    end = source.find("\n}\n", start)
    if start < 0 or end < 0:
        raise LeanmlError(f"{prefix}.c has no {prefix}_layers function to instrument",
                          "the code generator changed its layout: update mcu.py's instrument_layers")  # fmt: skip
    names: list[str] = []
    body = ["    LEANML_MCU_MARK(0);"]
    for line in source[start + len(head) : end].split("\n"):
        if line == "    (void)input;":
            continue
        m = re.fullmatch(r"    layer_(\w+)\(input, arena\);", line)
        if m is None:
            raise LeanmlError(f"unexpected statement {line.strip()!r} in {prefix}_layers",
                              "the code generator changed its layout: update instrument_layers")  # fmt: skip
        names.append(m.group(1))
        body += [line, f"    LEANML_MCU_MARK({len(names)});"]
    marks = (f"volatile uint32_t leanml_mcu_layer_ticks[{len(names) + 1}];\n#define LEANML_MCU_MARK(i) do {{ "
             f'__asm volatile("" ::: "memory"); leanml_mcu_layer_ticks[i] = '
             f'((volatile uint32_t *)0x{TIMER_BASE:08X}u)[1]; __asm volatile("" ::: "memory"); }} '
             f"while (0)\n\n")  # fmt: skip
    return source[:start] + marks + head + "\n".join(body) + source[end:], names


def _build_and_run(dep: Deployment, x: np.ndarray, target: str, timeout: float, paint_bytes: int,
                   instrument: bool, extra_flags: tuple[str, ...] = ()) -> tuple[Elf, str]:  # fmt: skip
    prefix = c_prefix(dep.config.prefix)
    c, h, w = dep.input_shape
    sources = dict(dep.sources)
    names: list[str] = []
    if instrument:
        sources[f"{prefix}.c"], names = instrument_layers(sources[f"{prefix}.c"], prefix)
    blob = (f"/* Generated by leanml: the inputs, int8 (N, H, W, C). */\n#include <stdint.h>\n"
            f"const int8_t leanml_mcu_inputs[{len(x)}][{h * w * c}] = {{\n"
            + ",\n".join(f"{{{c_bytes(row)}}}" for row in x) + "\n};\n")  # fmt: skip
    main_c = harness_c(prefix, len(x), h * w * c, paint_bytes, layers=len(names))
    with tempfile.TemporaryDirectory(prefix="leanml-mcu-") as tmp:
        elf = build_elf({**sources, "mcu_inputs.c": blob}, main_c, target, Path(tmp), extra_flags)
        return elf, run_elf(elf.path, target, timeout)


def layer_instructions(dep: Deployment, input_int8: np.ndarray, target: str = "cortex-m4", timeout: float = 300.0,
                       extra_flags: tuple[str, ...] = ()) -> list[dict[str, Any]]:  # fmt: skip
    """Instructions of each layer of one inference on ``target`` under QEMU (timer reads between the layer calls of
    an instrumented build: +-40 per layer; the total of :func:`run_on_target` is the uninstrumented figure).

    ``input_int8`` is one input (H, W, C) or (1, H, W, C). Rows: name, kind, instructions, share of the sum.

    Example:
        >>> rows = layer_instructions(dep, np.zeros((28, 28, 1), np.int8))  # doctest: +SKIP
        >>> rows[0]["kind"], rows[0]["instructions"] > 0  # doctest: +SKIP
        ('conv', True)
    """
    mcu_target(target)
    x = np.asarray(input_int8)
    x = check_inputs(dep, x[None] if x.ndim == 3 else x)[:1]
    _, stdout = _build_and_run(dep, x, target, timeout, STACK_PAINT_BYTES, instrument=True, extra_flags=extra_flags)
    names = instrument_layers(dep.sources[f"{c_prefix(dep.config.prefix)}.c"], c_prefix(dep.config.prefix))[1]
    line = next((ln.split() for ln in stdout.splitlines() if ln.startswith("layers 0")), None)
    if line is None or len(line) != len(names) + 2:
        raise LeanmlError(f"the instrumented run printed no per-layer line: {stdout[-500:]!r}",
                          "the program stopped early: see its output")  # fmt: skip
    counts = [int(v) * INSTRUCTIONS_PER_TICK for v in line[2:]]
    kinds = {op.name: op.kind for op in dep.graph.ops}
    total = max(sum(counts), 1)
    return [{"name": n, "kind": kinds.get(n, "?"), "instructions": k, "share": k / total}
            for n, k in zip(names, counts, strict=True)]  # fmt: skip


def run_on_target(dep: Deployment, inputs_int8: np.ndarray, target: str = "cortex-m4", timeout: float = 300.0,
                  paint_bytes: int = STACK_PAINT_BYTES, extra_flags: tuple[str, ...] = ()) -> McuRun:  # fmt: skip
    """Build ``dep``'s C with a timing harness for ``target``, run ``inputs_int8`` (N, H, W, C) under QEMU, and
    compare the outputs with the host build's (``matches_host``). ``extra_flags`` (e.g. ``("-DDK_NO_SIMD",)`` for
    the scalar `_ref` kernels) are added to the target's flags and stated in ``flags``.

    Example:
        >>> run = run_on_target(dep, np.zeros((1, 28, 28, 1), np.int8), "cortex-m4")  # doctest: +SKIP
        >>> run.flags_text  # doctest: +SKIP
        '-mcpu=cortex-m4 -mthumb -mfloat-abi=soft -O2'
    """
    spec = mcu_target(target)
    x = check_inputs(dep, inputs_int8)
    out_size = dep.model.output_size
    elf, stdout = _build_and_run(dep, x, target, timeout, paint_bytes, instrument=False, extra_flags=extra_flags)
    outs, ticks, stacks = parse_harness_output(stdout, len(x), out_size)
    if max(stacks) >= paint_bytes - 8:
        raise LeanmlError(f"the inference used all {paint_bytes} painted stack bytes: its stack was not measured",
                          "pass a larger paint_bytes to run_on_target")  # fmt: skip
    host = dep.model.run_int8(x.transpose(0, 3, 1, 2))  # reference order, (N, F)
    perm = dep.model.output_perm
    mcu_ref_order = outs.astype(np.int64) if perm is None else outs.astype(np.int64)[:, perm]
    mismatched = int((host != mcu_ref_order).sum())
    model_obj = c_prefix(dep.config.prefix) + ".o"
    return McuRun(
        target=target,
        flags=(*spec.flags, *extra_flags),
        outputs=outs,
        instructions=[t * INSTRUCTIONS_PER_TICK for t in ticks],
        ticks=ticks,
        flash_bytes=elf.text + elf.data - elf.object_bytes("mcu_inputs.o", "text", "rodata", "data"),
        model_flash_bytes=elf.object_bytes(model_obj, "text", "rodata", "data"),
        sram_bytes=elf.object_bytes(model_obj, "data", "bss"),
        stack_bytes=max(stacks),
        arena_bytes=int(dep.layout.arena_bytes),
        matches_host=mismatched == 0,
        mismatched=mismatched,
        stdout=stdout,
    )


def run_summary(dep: Deployment, inputs_int8: np.ndarray, target: str) -> dict[str, Any]:
    """Run int8 inputs (N, H, W, C) on ``target`` under QEMU: the ``mcu_*`` summary entries (instructions per
    input, flash, SRAM, stack, bit-exactness with the host, the per-layer split of the first input).

    Example:
        >>> run_summary(dep, np.zeros((1, 28, 28, 1), np.int8), "cortex-m4")["mcu_bit_exact"]  # doctest: +SKIP
        True
    """
    run = run_on_target(dep, inputs_int8, target)
    layers = layer_instructions(dep, np.asarray(inputs_int8)[0], target)
    return {"mcu_board": mcu_target(target).board, "mcu_flags": run.flags_text, "mcu_inputs": len(run.instructions),
            "mcu_instructions": run.instructions, "mcu_flash_bytes": run.flash_bytes,
            "mcu_model_flash_bytes": run.model_flash_bytes, "mcu_static_sram_bytes": run.sram_bytes,
            "mcu_stack_bytes": run.stack_bytes, "mcu_peak_sram_bytes": run.peak_sram_bytes,
            "mcu_bit_exact": run.matches_host, "mcu_mismatched": run.mismatched, "mcu_layers": layers}  # fmt: skip
