/*
 * leanml_kernels_arm.h -- the Cortex-M kernels of leanml's deploy engine: ARMv7E-M DSP SIMD through ACLE
 * (<arm_acle.h>: __smlad, __sxtb16, __ssub16, __smlabt, __ssat). Selected by leanml_kernels.h when
 * __ARM_FEATURE_DSP is defined (Cortex-M4, M7, M33 with DSP ...). Include leanml_kernels.h, not this file.
 *
 * Each `dk_<kernel>_dsp` has the signature and the bit-exact results of `dk_<kernel>_ref`; shapes outside a fast
 * path's limits run the `_ref` kernel. Written for few executed instructions (the measure is instructions per
 * inference under QEMU), with small stack buffers (variable-length arrays sized by the layer):
 *   conv1x1, conv2d  2 pixels x 2 output channels per block (4 int32 accumulators). The block's two input rows
 *                    (im2col rows for conv2d) are staged once as int16 x - in_zp, each 4-group stored as the pairs
 *                    (x0, x2), (x1, x3): exactly what SXTB16 and SXTB16-ROR8 make of a weight word (w0..w3), so
 *                    the weights stay in their OHWI int8 layout and one SMLAD multiplies two pairs. Stack: 4 K bytes
 *                    (+ 2 K bytes of int8 im2col rows for inputs whose channel count is not a multiple of 4).
 *   linear           4 rows per block; the input staged as above when in_features <= DK_ARM_FC_STAGE (stack
 *                    2 * in_features bytes), else converted in registers once per block.
 *   depthwise 3x3    (stride 1 or 2, padding <= 1 pixel, the in-place variant included) one channel at a time:
 *                    its rows staged as int16 in a 3-row ring (each row stored twice, so any 3 consecutive rows
 *                    are contiguous; padding rows/columns hold in_zp, whose products are cancelled by folding
 *                    -in_zp * sum(w) into the bias); per kernel row and pair of outputs, two SMLADs and two
 *                    halfword MACs on word loads. The in-place variant needs out_w <= in_w (it never writes
 *                    an input row it has not staged yet) and no `tmp`. Stack: 12 * (in_w + 2 pw + 4) bytes.
 *   add              per element, with the requantization below.
 * Requantization (dk_i32_requant bit for bit, for the multipliers of leanml_kernels.h: mult in [2^30, 2^31) or 0)
 * with a right shift e = -shift >= 2 (every channel of a layer; else the exact general form per output):
 *   Q = acc * mult + (acc < 0 ? -2^30 : 2^30) (one SMLAL), r = (Q >> 32) >> (e - 2),
 *   out = clamp(SSAT8((r + 1 + 2 out_zp) >> 1), act_min, act_max)
 * gemmlowp's SRDHM (nudge, truncating division) equals floor((acc * mult + 2^30) / 2^31), and its rounding
 * divide by 2^e of y equals ((y - [y < 0]) >> (e - 1) + 1) >> 1; the two floors compose into the one shift of Q.
 */
#ifndef LEANML_KERNELS_ARM_H
#define LEANML_KERNELS_ARM_H

#include <arm_acle.h>
#include <stdint.h>

#define DK_SIMD_ISA "arm-dsp"
/* Kernels are inlined into each call site: the generated code passes literal shapes, so every layer gets its own
 * specialized loops (TinyEngine's per-layer code; a few KiB of flash per model for far fewer instructions). */
#ifndef DK_ARM_ATTR /* -DDK_ARM_ATTR= leaves inlining to the compiler (faster builds, slower code) */
#define DK_ARM_ATTR __attribute__((always_inline))
#endif
#define DK_ARM_INLINE DK_ARM_ATTR static inline
#define DK_ARM_KMAX 1024    /* conv / conv1x1: receptive fields up to this many elements take the fast path */
#define DK_ARM_FC_STAGE 128 /* linear: inputs staged as int16 up to this many features */
#define DK_ARM_DW_SPAN 256  /* depthwise: staged row width limit (int16 elements) */

/* ------------------------------------------------------------------------------------------------------ */
/* Primitives                                                                                               */
/* ------------------------------------------------------------------------------------------------------ */

/* int16 view of int32 buffers (staging writes halves, the kernels read words): may_alias keeps it legal C. */
typedef int16_t dk_arm_h16 __attribute__((may_alias));

static inline int32_t dk_arm_ld32(const void *p) { /* unaligned word load (LDR) */
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* SXTB16 of the word rotated right by 8: bytes 1 and 3 as two int16 (one instruction; GCC does not fuse the ROR). */
static inline int32_t dk_arm_sxtb16_ror8(int32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* Q = acc * mult + (acc < 0 ? -2^30 : 2^30), one SMLAL (see the header comment). */
static inline int64_t dk_arm_q(int32_t acc, int32_t mult) {
    const int32_t s = acc >> 31;
    const uint32_t lo = 0x40000000u ^ ((uint32_t)s << 31);
    return (int64_t)(((uint64_t)(uint32_t)s << 32) | lo) + (int64_t)acc * mult;
}

/* The general form of dk_arm_requant (any shift), before the activation clamp; kept out of line so that the fast
 * loops keep their registers. */
static __attribute__((noinline)) int32_t dk_arm_requant_any(int32_t acc, int32_t mult, int32_t shift, int32_t c,
                                                            int32_t out_zp) {
    if (shift <= -1) return __ssat((((int32_t)(dk_arm_q(acc, mult) >> 31) >> (-shift - 1)) + c) >> 1, 8);
    return __ssat(dk_i32_mul_multiplier(acc, mult, (int)shift) + out_zp, 8);
}

/* dk_i32_requant(acc, mult, shift, out_zp, lo, hi) bit for bit; c = 1 + 2 * out_zp. fast: shift <= -2 known. */
static inline __attribute__((always_inline)) int8_t dk_arm_requant(int32_t acc, int32_t mult, int32_t shift, int fast,
                                                                   int32_t c, int32_t out_zp, int32_t lo, int32_t hi) {
    int32_t v = fast ? __ssat((((int32_t)(dk_arm_q(acc, mult) >> 32) >> (-shift - 2)) + c) >> 1, 8)
                     : dk_arm_requant_any(acc, mult, shift, c, out_zp);
    if (lo > -128) v = v < lo ? lo : v; /* v is in [-128, 127] already */
    if (hi < 127) v = v > hi ? hi : v;
    return (int8_t)v;
}

/* 1 when every channel's shift is <= -2 (the one-shift requantization applies). */
static inline int dk_arm_all_fast(const int32_t *shift, int n) {
    int32_t all = -1; /* sign bit: every shift + 1 < 0 so far */
    for (int i = 0; i < n; ++i) all &= shift[i] + 1;
    return all < 0;
}

#include "leanml_kernels_arm_conv.h"
#include "leanml_kernels_arm_fc.h"
#include "leanml_kernels_arm_dw.h"

/* ------------------------------------------------------------------------------------------------------ */
/* Elementwise                                                                                              */
/* ------------------------------------------------------------------------------------------------------ */

/* dk_i32_mul_multiplier bit for bit (mult in [2^30, 2^31) or 0). */
static inline int32_t dk_arm_mul_multiplier(int32_t x, int32_t mult, int32_t shift) {
    if (shift <= -1) { /* ((y - [y < 0]) >> (e - 1) + 1) >> 1, from Q */
        return (((int32_t)(dk_arm_q(x, mult) >> 31) >> (-shift - 1)) + 1) >> 1;
    }
    const int64_t p = (int64_t)(int32_t)((uint32_t)x << shift) * mult + ((int64_t)1 << 30);
    return (int32_t)(p >> 31); /* floor((x * 2^shift * mult + 2^30) / 2^31): SRDHM */
}

/* dk_add_s8_ref's contract. */
DK_ARM_INLINE void dk_add_s8_dsp(const int8_t *a, const int8_t *b, int n, int32_t a_zp, int32_t a_mult,
                                 int32_t a_shift, int32_t b_zp, int32_t b_mult, int32_t b_shift, int32_t out_mult,
                                 int32_t out_shift, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    for (int i = 0; i < n; ++i) {
        const int32_t sa = (int32_t)((uint32_t)((int32_t)a[i] - a_zp) << DK_ADD_LEFT_SHIFT);
        const int32_t sb = (int32_t)((uint32_t)((int32_t)b[i] - b_zp) << DK_ADD_LEFT_SHIFT);
        const int32_t v = dk_arm_mul_multiplier(dk_arm_mul_multiplier(sa, a_mult, a_shift) +
                                                    dk_arm_mul_multiplier(sb, b_mult, b_shift),
                                                out_mult, out_shift) + out_zp;
        out[i] = (int8_t)(v < act_min ? act_min : (v > act_max ? act_max : v));
    }
}

#endif /* LEANML_KERNELS_ARM_H */
