"""The Cortex-M DSP kernels (leanml/deploy/csrc/leanml_kernels_arm.h) against their ``_ref`` twins, bit for bit.

One C program per test, built with arm-none-eabi-gcc for the core (the flags of ``leanml.deploy.mcu``) and run
under qemu-system-arm (semihosting): it runs each seeded random case through the public kernel (the ``_dsp`` path,
``DK_KERNELS_PATH`` is checked) and through ``dk_<kernel>_ref`` on the same data (an in-C generator), and prints one
line per case. Shapes cover odd channel counts, K tails, odd pixel counts, padding, strides, the asymmetric output
sizes of TFLite's SAME padding, the fallbacks to the reference kernel, and requantization shifts from -31 to +3.
The header also builds warning-free (-Wall -Wextra -Werror) for cortex-m4 and cortex-m7.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from leanml.deploy.build import CSRC
from leanml.deploy.mcu import MCU_FLAGS, run_c_on_target, tools_missing
from leanml.native_build import WARN_FLAGS

needs_arm = pytest.mark.skipif(bool(tools_missing()), reason=f"needs: {'; '.join(tools_missing())}")

PRELUDE = r"""
#include <stdio.h>
#include <string.h>
#include "leanml_kernels.h"
#define CAP 40000
int8_t A[CAP], B[CAP], W[CAP], O1[CAP], O2[CAP], TMP[CAP]; /* extern: unused ones raise no warning */
static int32_t BIAS[1024], MULT[1024], SHIFT[1024];
static uint32_t lcg = 12345u;
static int32_t rnd(int32_t lo, int32_t hi) {
    lcg = lcg * 1664525u + 1013904223u;
    return lo + (int32_t)((lcg >> 8) % (uint32_t)(hi - lo + 1));
}
static void fill(int8_t *p, int n) { for (int i = 0; i < n; ++i) p[i] = (int8_t)rnd(-128, 127); }
/* per-channel requantization: mostly realistic right shifts, some 0..-1 and extremes, a few zero multipliers */
static void rq(int n, int smin, int smax) {
    for (int i = 0; i < n; ++i) {
        MULT[i] = rnd(0, 15) == 0 ? 0 : (int32_t)(0x40000000u + (uint32_t)rnd(0, 0x3FFFFFFF));
        SHIFT[i] = rnd(smin, smax);
        BIAS[i] = rnd(-(1 << 20), 1 << 20);
    }
}
static int check(const char *name, int id, int n) {
    for (int i = 0; i < n; ++i)
        if (O1[i] != O2[i]) {
            printf("%s %d bad at %d: %d vs %d\n", name, id, i, O1[i], O2[i]);
            return 1;
        }
    printf("%s %d ok\n", name, id);
    return 0;
}
"""


# the many-case programs let the compiler decide on inlining (the kernels are forced inline by default: one
# specialized copy per call site, which makes a 100-call test program slow to build); test_forced_inline_matches_ref
# and the whole-model runs cover the default
NOT_FORCED = ("-DDK_ARM_ATTR=",)


def run_cases(
    body: str, target: str = "cortex-m4", flags: tuple[str, ...] = NOT_FORCED, prelude_extra: str = ""
) -> list[str]:
    """Build PRELUDE (+ prelude_extra) + a main running ``body`` for ``target``; the printed case lines."""
    main = PRELUDE + prelude_extra + "int main(void) {\n    int bad = 0;\n" + body + "\n    return 0;\n}\n"
    out = run_c_on_target({}, main, target, timeout=300, extra_flags=flags)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines and lines[0] == "path arm-dsp", out[:500]
    return lines[1:]


PATH_LINE = '    printf("path %s\\n", DK_KERNELS_PATH);\n'


def assert_all_ok(lines: list[str], expected: int) -> None:
    bad = [ln for ln in lines if not ln.endswith(" ok")]
    assert not bad, bad[:5]
    assert len(lines) == expected, lines[-3:]


def conv_cases(rng: random.Random, n: int) -> list[tuple[int, ...]]:
    """(in_h, in_w, in_c, out_c, kh, kw, sh, sw, ph, pw, out_h, out_w, in_zp, out_zp, act_min, act_max, smin, smax)"""
    cases = []
    while len(cases) < n:
        kh, kw = rng.choice([(1, 1), (3, 3), (3, 3), (2, 3), (5, 5), (10, 4)])
        sh, sw = rng.choice([(1, 1), (2, 2), (1, 2)])
        ph, pw = rng.randint(0, kh // 2), rng.randint(0, kw // 2)
        in_h, in_w = rng.randint(kh, 12), rng.randint(kw, 12)
        in_c = rng.choice([1, 2, 3, 4, 5, 8, 13, 16, 32])
        out_c = rng.choice([1, 2, 3, 7, 8, 16])
        out_h, out_w = (in_h + 2 * ph - kh) // sh + 1, (in_w + 2 * pw - kw) // sw + 1
        if rng.random() < 0.3:  # TFLite SAME with the extra padding at the far border
            out_h, out_w = out_h + (ph > 0 and in_h % sh == 0), out_w + (pw > 0 and in_w % sw == 0)
        if kh * kw * in_c > 1024 or out_h < 1 or out_w < 1 or out_h * out_w * out_c > 40000:
            continue
        in_zp, out_zp = rng.randint(-128, 127), rng.randint(-128, 127)
        lo, hi = rng.choice([(-128, 127), (out_zp, 127), (-128, 127), (max(out_zp, -128), min(out_zp + 60, 127))])
        smin, smax = rng.choice([(-12, -2), (-12, -2), (-31, -1), (-3, 3)])
        cases.append((in_h, in_w, in_c, out_c, kh, kw, sh, sw, ph, pw, out_h, out_w, in_zp, out_zp, lo, hi, smin,
                      smax))  # fmt: skip
    return cases


def conv_body(cases: list[tuple[int, ...]]) -> str:
    body = PATH_LINE
    for i, (ih, iw, ic, oc, kh, kw, sh, sw, ph, pw, oh, ow, izp, ozp, lo, hi, smin, smax) in enumerate(cases):
        args = f"{ic}, {izp}, W, BIAS, {oc}, {kh}, {kw}, {sh}, {sw}, {ph}, {pw}, 1, MULT, SHIFT, {ozp}, {lo}, {hi}"
        body += (f"    fill(A, {ih * iw * ic}); fill(W, {oc * kh * kw * ic}); rq({oc}, {smin}, {smax});\n"
                 f"    dk_conv2d_s8(A, {ih}, {iw}, {args}, O1, {oh}, {ow});\n"
                 f"    dk_conv2d_s8_ref(A, {ih}, {iw}, {args}, O2, {oh}, {ow});\n"
                 f"    bad += check(\"conv\", {i}, {oh * ow * oc});\n")  # fmt: skip
    return body


@needs_arm
def test_forced_inline_matches_ref() -> None:
    """A few conv shapes with the default forced inlining (literal shapes, as the generated code calls them)."""
    cases = conv_cases(random.Random(5), 6)
    assert_all_ok(run_cases(conv_body(cases), flags=()), len(cases))


@needs_arm
def test_conv2d_and_conv1x1_match_ref() -> None:
    rng = random.Random(0)
    cases = conv_cases(rng, 60)
    body = conv_body(cases)
    for i in range(30):  # conv1x1 (also the no-bias form)
        ih, iw, ic, oc = rng.randint(1, 9), rng.randint(1, 9), rng.choice([1, 3, 4, 8, 16, 17, 64]), rng.randint(1, 20)
        izp, ozp = rng.randint(-128, 127), rng.randint(-128, 127)
        bias = "BIAS" if i % 5 else "(const int32_t *)0"
        args = f"{ic}, {izp}, W, {bias}, {oc}, MULT, SHIFT, {ozp}, -128, 127"
        body += (f"    fill(A, {ih * iw * ic}); fill(W, {oc * ic}); rq({oc}, -14, {-1 if i % 3 else 2});\n"
                 f"    dk_conv1x1_s8(A, {ih}, {iw}, {args}, O1);\n"
                 f"    dk_conv1x1_s8_ref(A, {ih}, {iw}, {args}, O2);\n"
                 f"    bad += check(\"conv1x1\", {i}, {ih * iw * oc});\n")  # fmt: skip
    assert_all_ok(run_cases(body), len(cases) + 30)


@needs_arm
def test_depthwise_match_ref() -> None:
    rng = random.Random(1)
    body = PATH_LINE
    count = 0
    while count < 50:
        kh, kw = (3, 3) if count % 6 else rng.choice([(5, 5), (3, 1), (3, 3)])
        sh, sw = rng.choice([(1, 1), (2, 2), (1, 2), (2, 1)])
        ph, pw = rng.randint(0, min(1, kh // 2)), rng.randint(0, min(1, kw // 2))
        in_h, in_w, c = rng.randint(kh, 14), rng.randint(kw, 14), rng.choice([1, 3, 8, 16, 17, 32])
        out_h, out_w = (in_h + 2 * ph - kh) // sh + 1, (in_w + 2 * pw - kw) // sw + 1
        if count % 4 == 1:  # TFLite SAME: one more output row/column at the far border
            out_h, out_w = out_h + (in_h + 2 * ph - kh) % sh, out_w + (in_w + 2 * pw - kw) % sw
        if out_h < 1 or out_w < 1 or max(in_h * in_w, out_h * out_w) * c > 40000:
            continue
        in_zp, out_zp = rng.randint(-128, 127), rng.randint(-128, 127)
        lo, hi = rng.choice([(-128, 127), (out_zp, 127), (-128, out_zp)])
        smin, smax = rng.choice([(-12, -2), (-31, -1), (-3, 3)])
        geo = f"{in_h}, {in_w}, {c}, {in_zp}, W, BIAS, {kh}, {kw}, {sh}, {sw}, {ph}, {pw}, MULT, SHIFT, "
        geo += f"{out_zp}, {lo}, {hi}"
        n_in, n_out = in_h * in_w * c, out_h * out_w * c
        body += (f"    fill(A, {n_in}); fill(W, {kh * kw * c}); rq({c}, {smin}, {smax});\n"
                 f"    dk_depthwise_conv2d_s8(A, {geo}, O1, {out_h}, {out_w});\n"
                 f"    dk_depthwise_conv2d_s8_ref(A, {geo}, O2, {out_h}, {out_w});\n"
                 f"    bad += check(\"dw\", {count}, {n_out});\n"
                 f"    memcpy(O1, A, {n_in});\n"
                 f"    dk_depthwise_conv2d_s8_inplace(O1, {geo}, {out_h}, {out_w}, TMP);\n"
                 f"    bad += check(\"dw_inplace\", {count}, {n_out});\n")  # fmt: skip
        count += 1
    assert_all_ok(run_cases(body), 100)


@needs_arm
def test_linear_and_add_match_ref() -> None:
    rng = random.Random(2)
    body = PATH_LINE
    for i in range(40):
        k, n = rng.choice([1, 3, 4, 7, 64, 127, 128, 129, 256, 640]), rng.choice([1, 2, 3, 5, 8, 12, 128])
        izp, ozp = rng.randint(-128, 127), rng.randint(-128, 127)
        lo, hi = rng.choice([(-128, 127), (ozp, 127)])
        smin, smax = rng.choice([(-12, -2), (-31, -1), (-3, 3)])
        bias = "BIAS" if i % 7 else "(const int32_t *)0"
        args = f"{k}, {izp}, W, {bias}, {n}, MULT, SHIFT, {ozp}, {lo}, {hi}"
        body += (f"    fill(A, {k}); fill(W, {k * n}); rq({n}, {smin}, {smax});\n"
                 f"    dk_linear_s8(A, {args}, O1);\n    dk_linear_s8_ref(A, {args}, O2);\n"
                 f"    bad += check(\"linear\", {i}, {n});\n")  # fmt: skip
    for i in range(30):
        n = rng.randint(1, 300)
        mults = [rng.choice([0, 1 << 30, rng.randint(1 << 30, (1 << 31) - 1)]) for _ in range(3)]
        shifts = [rng.randint(-12, 0), rng.randint(-12, 0), rng.choice([rng.randint(-31, -1), rng.randint(-20, -10)])]
        zps = [rng.randint(-128, 127) for _ in range(3)]
        args = (f"{n}, {zps[0]}, {mults[0]}, {shifts[0]}, {zps[1]}, {mults[1]}, {shifts[1]}, {mults[2]}, "
                f"{shifts[2]}, {zps[2]}, -128, 127")  # fmt: skip
        body += (f"    fill(A, {n}); fill(B, {n});\n    dk_add_s8(A, B, {args}, O1);\n"
                 f"    dk_add_s8_ref(A, B, {args}, O2);\n    bad += check(\"add\", {i}, {n});\n")  # fmt: skip
    assert_all_ok(run_cases(body), 70)


IL4_PACK = r"""
/* the code generator's arrangement for dk_linear_s8_il4 (see its comment), in C for the test */
static int8_t WIL[CAP];
static int32_t BZP[1024];
static void il4_pack(const int8_t *w, int k, int n, int32_t zp) {
    const int k4 = (k + 3) / 4 * 4, o4 = (n + 3) / 4 * 4;
    int p = 0;
    for (int b = 0; b < o4 / 4; ++b)
        for (int g = 0; g < k4 / 4; ++g)
            for (int r = 0; r < 4; ++r)
                for (int t = 0; t < 4; ++t) {
                    const int o = 4 * b + r, i = 4 * g + t;
                    WIL[p++] = o < n && i < k ? w[o * k + i] : 0;
                }
    for (int o = 0; o < n; ++o) {
        int32_t s = 0;
        for (int i = 0; i < k; ++i) s += w[o * k + i];
        BZP[o] = BIAS[o] - zp * s;
    }
}
/* per tensor: every channel takes channel 0's multiplier and shift */
static void rq1(int n) {
    for (int i = 1; i < n; ++i) MULT[i] = MULT[0], SHIFT[i] = SHIFT[0];
}
/* accumulators near +-2^31 and the largest multiplier: the per-tensor form's no-overflow bound */
static void big(int n, int32_t shift) {
    for (int i = 0; i < n; ++i) BIAS[i] = i & 1 ? -(3 << 29) : 3 << 29, MULT[i] = 0x7FFFFFFF, SHIFT[i] = shift;
}
"""


@needs_arm
def test_linear_il4_matches_ref() -> None:
    """Both il4 entry points (per channel, per tensor): the assembly's staged and raw inputs, group counts of every
    remainder mod 4, clamped ranges, the row tails and the C form's shapes and shifts."""
    rng = random.Random(3)
    body = PATH_LINE
    for i in range(60):
        k = rng.choice([1, 3, 4, 7, 8, 12, 20, 64, 124, 127, 128, 132, 140, 640])
        n = rng.choice([1, 2, 3, 4, 5, 8, 12, 13, 128])
        izp, ozp = rng.randint(-128, 127), rng.randint(-128, 127)
        lo, hi = rng.choice([(-128, 127), (-128, 127), (ozp, 127), (max(ozp - 40, -128), min(ozp + 40, 127))])
        smin, smax = rng.choice([(-12, -2), (-31, -1), (-3, 3), (-26, -20)])
        if i % 2:  # per tensor: one multiplier and shift (SHIFT[0], MULT[0])
            tail = f"{n}, MULT[0], SHIFT[0], {ozp}, {lo}, {hi}"
            call = f"rq1({n}); dk_linear_s8_il4_pt(A, {k}, WIL, BZP, {tail}, O1);\n"
        else:
            tail = f"{n}, MULT, SHIFT, {ozp}, {lo}, {hi}"
            call = f"dk_linear_s8_il4(A, {k}, WIL, BZP, {tail}, O1);\n"
        body += (f"    fill(A, {k}); fill(W, {k * n}); rq({n}, {smin}, {smax}); il4_pack(W, {k}, {n}, {izp});\n"
                 f"    {call}    dk_linear_s8_ref(A, {k}, {izp}, W, BIAS, {n}, MULT, SHIFT, {ozp}, {lo}, {hi}, O2);\n"
                 f"    bad += check(\"linear_il4\", {i}, {n});\n")  # fmt: skip
    for i, (k, shift, ozp) in enumerate([(128, -24, -128), (640, -24, 127), (128, -2, 127), (640, -25, -128)]):
        body += (f"    fill(A, {k}); fill(W, {k * 8}); big(8, {shift}); il4_pack(W, {k}, 8, 5);\n"
                 f"    dk_linear_s8_il4_pt(A, {k}, WIL, BZP, 8, MULT[0], {shift}, {ozp}, -128, 127, O1);\n"
                 f"    dk_linear_s8_ref(A, {k}, 5, W, BIAS, 8, MULT, SHIFT, {ozp}, -128, 127, O2);\n"
                 f"    bad += check(\"linear_il4_big\", {i}, 8);\n")  # fmt: skip
    assert_all_ok(run_cases(body, prelude_extra=IL4_PACK), 64)


IL4_HOST = r"""#include <stdio.h>
#include "leanml_kernels.h"
int main(void) {
    static int8_t in[130], w[130*13], wil[DK_IL4_BYTES(130, 13)], o1[13], o2[13];
    static int32_t b[13], bz[13], m[13], sh[13];
    unsigned s = 7;
    for (int i = 0; i < 130; ++i) { s = s * 1664525u + 1013904223u; in[i] = (int8_t)(s >> 24); }
    for (int i = 0; i < 130 * 13; ++i) { s = s * 1664525u + 1013904223u; w[i] = (int8_t)(s >> 24); }
    for (int o = 0; o < 13; ++o) { b[o] = o * 1000 - 5000; m[o] = 1300000000 + o; sh[o] = -8; }
    int p = 0, zp = 37;
    for (int bb = 0; bb < 4; ++bb)
        for (int g = 0; g < 33; ++g)
            for (int r = 0; r < 4; ++r)
                for (int t = 0; t < 4; ++t) {
                    int o = 4 * bb + r, i = 4 * g + t;
                    wil[p++] = o < 13 && i < 130 ? w[o * 130 + i] : 0;
                }
    for (int o = 0; o < 13; ++o) {
        int32_t su = 0;
        for (int i = 0; i < 130; ++i) su += w[o * 130 + i];
        bz[o] = b[o] - zp * su;
    }
    dk_linear_s8_il4(in, 130, wil, bz, 13, m, sh, -3, -128, 127, o1);
    dk_linear_s8_ref(in, 130, zp, w, b, 13, m, sh, -3, -128, 127, o2);
    for (int o = 0; o < 13; ++o) if (o1[o] != o2[o]) { printf("bad %d\n", o); return 1; }
    printf("ok %s\n", DK_KERNELS_PATH); return 0;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_linear_il4_portable_matches_ref(tmp_path: Path) -> None:
    """The portable dk_linear_s8_il4 (host builds of the same generated C), plain and AVX2 flags."""
    (tmp_path / "t.c").write_text(IL4_HOST)
    for extra in ([], ["-mavx2"]):
        exe = tmp_path / "t"
        flags = [*WARN_FLAGS, "-O2", *extra, f"-I{CSRC}", str(tmp_path / "t.c"), "-o", str(exe)]
        subprocess.run(["gcc", *flags], check=True, capture_output=True)
        assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.startswith("ok")


@needs_arm
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7"])
def test_header_builds_warning_free(tmp_path: Path, cpu: str) -> None:
    src = tmp_path / "k.c"
    calls = [
        "dk_depthwise_conv2d_s8_inplace(b, 9, 9, 8, 1, w, m, 3, 3, 2, 2, 1, 1, m, s, 0, -128, 127, 5, 5, t);",
        "dk_conv2d_s8(b, 8, 8, 3, 0, w, m, 4, 3, 3, 1, 1, 1, 1, 1, m, s, 0, -128, 127, t, 8, 8);",
        "dk_linear_s8(b, 64, 0, w, m, 3, m, s, 0, -128, 127, t);",
        "dk_linear_s8_il4(b, 64, w, m, 9, m, s, 0, -128, 127, t);",
        "dk_linear_s8_il4_pt(b, 640, w, m, 8, 1 << 30, -7, 3, -128, 127, t);",
        "dk_add_s8(b, w, 9, 0, 1 << 30, -1, 0, 1 << 30, -1, 1 << 30, -3, 0, -128, 127, t);",
    ]
    src.write_text('#include "leanml_kernels.h"\n#ifndef DK_ARM_DSP\n#error "not the DSP path"\n#endif\n'
                   "void f(int8_t *b, const int8_t *w, const int32_t *m, const int32_t *s, int8_t *t) {\n    "
                   + "\n    ".join(calls) + "\n}\n")  # fmt: skip
    cc = shutil.which("arm-none-eabi-gcc")
    assert cc is not None
    flags = [*WARN_FLAGS, *MCU_FLAGS[cpu], f"-I{CSRC}", "-c", str(src), "-o", str(tmp_path / "k.o")]
    proc = subprocess.run([cc, *flags], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
