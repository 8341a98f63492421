/*
 * leanml_kernels.h -- the hand-written int8 kernel library of leanml's deploy engine.
 *
 * A TinyEngine-style library: every kernel is a `static inline` function with plain scalar arguments, so the
 * generated per-layer code, which calls them with literal constants (shapes, strides, zero points, ranges),
 * gets a specialized copy of each loop nest from the compiler. C99, headers only, no dynamic allocation, no
 * globals, only <stddef.h> and <stdint.h> (and <immintrin.h> on the x86 SIMD paths, <arm_acle.h> on the Cortex-M one); no libm.
 *
 * Names: every identifier starts with `dk_` (macros `DK_`), "deploy kernels", the engine they belong to (the
 * LLM runtime's C is `lmq_`); then `<object>_<verb>` where a name can say what it does (dk_q31_mul_high,
 * dk_i32_mul_multiplier) and `<op>_<dtype>` for the layer kernels (dk_conv2d_s8, their `_ref` twins).
 *
 * Bit-exact contract: each kernel computes exactly what leanml's Python integer reference computes
 * (leanml/quant/primitives.py and the KERNELS of leanml/quant/integer_ops.py; docs/integer_spec.md). The
 * fixed-point requantization is TFLite's / gemmlowp's (SRDHM with nudge, then rounding divide by a power of
 * two). The two float kernels (dk_quantize_f32, dk_dequantize_s8) need IEEE float32 arithmetic: never build
 * with -ffast-math (refused below); FLT_EVAL_METHOD 0 (x86-64 SSE, ARM) or x87 excess precision are both fine
 * for a single division or multiplication.
 *
 * Layouts (batch 1, all arrays dense, row-major):
 *   activations             HWC:  x[y][x][c]                        (H, W, C)
 *   standard/grouped conv   OHWI: w[co][ky][kx][ci]                 (C_out, kh, kw, C_in / groups)
 *   depthwise conv          HWC:  w[ky][kx][c]                      (kh, kw, C), channel multiplier 1
 *   linear                  w[o][i]                                 (C_out, C_in)
 *   bias                    int32 per output channel (C_out,); NULL means all zero
 *   mult, shift             int32 per output channel (C_out,): real ~= mult * 2^(shift - 31), TFLite's
 *                           QuantizeMultiplier convention: shift > 0 is a left shift, shift < 0 a right shift
 *                           (mult in [2^30, 2^31) or 0, shift in [-31, 30])
 *
 * Conv/linear accumulators: acc = bias[co] + sum (x - in_zp) * w, in int32 (padding contributes 0, i.e. the
 * padding value is in_zp); out = clamp(dk_i32_mul_multiplier(acc, mult[co], shift[co]) + out_zp, act_min, act_max).
 * The caller
 * (leanml's converter) guarantees |acc| < 2^31 (check_accumulator_bound), act_min <= act_max in [-128, 127] and
 * int8 zero points (in_zp, out_zp in [-128, 127]).
 * Output sizes are passed by the caller: out = (in + 2 * pad - kernel) / stride + 1 (floor), as PyTorch.
 * Unless a kernel says otherwise, `out` must not overlap any input.
 *
 * Paths, chosen at compile time (no runtime dispatch; the generated code is compiled for its target):
 *   x86 with AVX-512 F/BW + VNNI (e.g. -march=native on Ice Lake, Zen 4)   leanml_kernels_x86.h, AVX-512 path
 *   x86 with AVX2 (-mavx2, -march=haswell ...)                             leanml_kernels_x86.h, AVX2 path
 *   Arm with the DSP extension (__ARM_FEATURE_DSP: Cortex-M4/M7/M33 ...)   leanml_kernels_arm.h, `_dsp` kernels
 *   anything else, or -DDK_NO_SIMD                                        the plain C `_ref` kernels
 * Each public kernel below calls `<name>_simd` (leanml_kernels_simd.h, written against the backend's small vector
 * interface), `<name>_dsp` (leanml_kernels_arm.h, Cortex-M DSP SIMD through ACLE) or `<name>_ref`
 * (leanml_kernels_ref.h); all compute the same bits. A NEON / Helium backend would be
 * one more header defining that interface, selected by one more #elif. DK_KERNELS_PATH names the path taken.
 */
#ifndef LEANML_KERNELS_H
#define LEANML_KERNELS_H

#include <stddef.h> /* size_t (freestanding, as <stdint.h>) */
#include <stdint.h>

#include "leanml_kernels_ref.h"

#if defined(DK_NO_SIMD)
/* the reference kernels only */
#elif (defined(__AVX512VNNI__) && defined(__AVX512BW__)) || defined(__AVX2__)
#include "leanml_kernels_x86.h" /* defines DK_SIMD_ISA and the backend interface */
#elif defined(__ARM_FEATURE_DSP)
#include "leanml_kernels_arm.h" /* Cortex-M DSP kernels: dk_<kernel>_dsp; defines DK_SIMD_ISA "arm-dsp" */
#define DK_ARM_DSP 1
#endif

#if defined(DK_ARM_DSP)
#define DK_KERNEL_ATTR DK_ARM_ATTR /* one specialized copy per call site (see leanml_kernels_arm.h) */
#define DK_KERNELS_PATH DK_SIMD_ISA
#define DK_SIMD_OR_REF(name) name##_dsp
#elif defined(DK_SIMD_ISA)
#include "leanml_kernels_simd.h"
#define DK_KERNELS_PATH DK_SIMD_ISA
#define DK_SIMD_OR_REF(name) name##_simd
#else
#define DK_KERNELS_PATH "ref"
#define DK_SIMD_OR_REF(name) name##_ref
#endif

#ifndef DK_KERNEL_ATTR
#define DK_KERNEL_ATTR /* the SIMD paths' kernel attributes (always_inline on Cortex-M) */
#endif

/* ------------------------------------------------------------------------------------------------------ */
/* Public kernels (the names the code generator calls)                                                     */
/* ------------------------------------------------------------------------------------------------------ */

/* dk_quantize_f32_ref's contract (no SIMD variant). */
static inline void dk_quantize_f32(const float *x, int n, float scale, int32_t zp, int8_t *out) {
    dk_quantize_f32_ref(x, n, scale, zp, out);
}

/* dk_dequantize_s8_ref's contract (no SIMD variant). */
static inline void dk_dequantize_s8(const int8_t *q, int n, float scale, int32_t zp, float *out) {
    dk_dequantize_s8_ref(q, n, scale, zp, out);
}

/* dk_conv2d_s8_ref's contract. */
DK_KERNEL_ATTR static inline void dk_conv2d_s8(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                const int32_t *bias, int out_c, int kh, int kw, int sh, int sw, int ph, int pw,
                                int groups, const int32_t *mult, const int32_t *shift, int32_t out_zp, int32_t act_min,
                                int32_t act_max, int8_t *out, int out_h, int out_w) {
    DK_SIMD_OR_REF(dk_conv2d_s8)(in, in_h, in_w, in_c, in_zp, w, bias, out_c, kh, kw, sh, sw, ph, pw, groups, mult,
                                 shift, out_zp, act_min, act_max, out, out_h, out_w);
}

/* dk_conv1x1_s8_ref's contract. */
DK_KERNEL_ATTR static inline void dk_conv1x1_s8(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                 const int32_t *bias, int out_c, const int32_t *mult, const int32_t *shift,
                                 int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    DK_SIMD_OR_REF(dk_conv1x1_s8)(in, in_h, in_w, in_c, in_zp, w, bias, out_c, mult, shift, out_zp, act_min, act_max,
                                  out);
}

/* dk_depthwise_conv2d_s8_ref's contract. */
DK_KERNEL_ATTR static inline void dk_depthwise_conv2d_s8(const int8_t *in, int in_h, int in_w, int c, int32_t in_zp, const int8_t *w,
                                          const int32_t *bias, int kh, int kw, int sh, int sw, int ph, int pw,
                                          const int32_t *mult, const int32_t *shift, int32_t out_zp, int32_t act_min,
                                          int32_t act_max, int8_t *out, int out_h, int out_w) {
    DK_SIMD_OR_REF(dk_depthwise_conv2d_s8)(in, in_h, in_w, c, in_zp, w, bias, kh, kw, sh, sw, ph, pw, mult, shift,
                                           out_zp, act_min, act_max, out, out_h, out_w);
}

/* dk_depthwise_conv2d_s8_inplace_ref's contract. */
DK_KERNEL_ATTR static inline void dk_depthwise_conv2d_s8_inplace(int8_t *buf, int in_h, int in_w, int c, int32_t in_zp,
                                                  const int8_t *w, const int32_t *bias, int kh, int kw, int sh, int sw,
                                                  int ph, int pw, const int32_t *mult, const int32_t *shift,
                                                  int32_t out_zp, int32_t act_min, int32_t act_max, int out_h,
                                                  int out_w, int8_t *tmp) {
    DK_SIMD_OR_REF(dk_depthwise_conv2d_s8_inplace)(buf, in_h, in_w, c, in_zp, w, bias, kh, kw, sh, sw, ph, pw, mult,
                                                   shift, out_zp, act_min, act_max, out_h, out_w, tmp);
}

/* dk_linear_s8_ref's contract. */
DK_KERNEL_ATTR static inline void dk_linear_s8(const int8_t *in, int in_features, int32_t in_zp, const int8_t *w, const int32_t *bias,
                                int out_features, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                int32_t act_min, int32_t act_max, int8_t *out) {
    DK_SIMD_OR_REF(dk_linear_s8)(in, in_features, in_zp, w, bias, out_features, mult, shift, out_zp, act_min, act_max,
                                 out);
}

/* dk_linear_s8_ref's results from weights arranged by the code generator (w_il4, DK_IL4_BYTES of them) and the bias
 * with the input zero point folded in (bias_zp[o] = bias[o] - in_zp * sum_i w[o][i]): the layout is documented at
 * the Cortex-M version in leanml_kernels_arm.h, where one LDM loads 16 weights; this is the portable version. */
#ifndef DK_ARM_DSP
#define DK_IL4_BYTES(in_features, out_features) ((((out_features) + 3) / 4) * 4 * (((in_features) + 3) / 4) * 4)
DK_KERNEL_ATTR static inline void dk_linear_s8_il4(const int8_t *in, int in_features, const int8_t *w_il4,
                                                   const int32_t *bias_zp, int out_features, const int32_t *mult,
                                                   const int32_t *shift, int32_t out_zp, int32_t act_min,
                                                   int32_t act_max, int8_t *out) {
    const int32_t k4 = ((int32_t)in_features + 3) / 4 * 4;
    for (int o = 0; o < out_features; ++o) {
        const int8_t *wb = w_il4 + (int32_t)(o / 4) * 4 * k4 + (o % 4) * 4; /* row o's first group */
        int32_t acc = bias_zp[o];
        for (int32_t i = 0; i < in_features; ++i) acc += (int32_t)in[i] * wb[(i / 4) * 16 + i % 4];
        out[o] = dk_i32_requant(acc, mult[o], shift[o], out_zp, act_min, act_max);
    }
}
#endif

/* dk_add_s8_ref's contract. */
DK_KERNEL_ATTR static inline void dk_add_s8(const int8_t *a, const int8_t *b, int n, int32_t a_zp, int32_t a_mult, int32_t a_shift,
                             int32_t b_zp, int32_t b_mult, int32_t b_shift, int32_t out_mult, int32_t out_shift,
                             int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    DK_SIMD_OR_REF(dk_add_s8)(a, b, n, a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_mult, out_shift, out_zp,
                              act_min, act_max, out);
}

/* dk_maxpool_s8_ref's contract (no SIMD variant). */
static inline void dk_maxpool_s8(const int8_t *in, int in_h, int in_w, int c, int kh, int kw, int sh, int sw, int ph,
                                 int pw, int8_t *out, int out_h, int out_w) {
    dk_maxpool_s8_ref(in, in_h, in_w, c, kh, kw, sh, sw, ph, pw, out, out_h, out_w);
}

/* dk_avgpool_s8_ref's contract (no SIMD variant). */
static inline void dk_avgpool_s8(const int8_t *in, int in_h, int in_w, int c, int kh, int kw, int sh, int sw,
                                 int8_t *out, int out_h, int out_w) {
    dk_avgpool_s8_ref(in, in_h, in_w, c, kh, kw, sh, sw, out, out_h, out_w);
}

/* dk_global_avgpool_s8_ref's contract (no SIMD variant). */
static inline void dk_global_avgpool_s8(const int8_t *in, int in_h, int in_w, int c, int8_t *out) {
    dk_global_avgpool_s8_ref(in, in_h, in_w, c, out);
}

/* dk_clamp_s8_ref's contract (no SIMD variant). */
static inline void dk_clamp_s8(int8_t *buf, int n, int32_t lo, int32_t hi) {
    dk_clamp_s8_ref(buf, n, lo, hi);
}

/* TFLite's int8 softmax (gemmlowp fixed-point exp); no SIMD variant. */
#include "leanml_kernels_softmax.h"

/* 4-bit packed weights (two per byte in flash), plain loops. */
#include "leanml_kernels_w4.h"

/* TFLite's int8 MEAN over (H, W); no SIMD variant. */
#include "leanml_kernels_mean.h"

/* In-place and streaming variants the memory planner places (overlapping buffers, line buffers). */
#include "leanml_kernels_fused.h"

#endif /* LEANML_KERNELS_H */
