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

/* ------------------------------------------------------------------------------------------------------ */
/* GEMM core: 2 pixels x 2 output channels                                                                  */
/* ------------------------------------------------------------------------------------------------------ */

/* Stage K int8 values of row `src` (pixel slot 0 or 1 of the pair) into st: per 4-group g, words st[4g + slot]
 * = (x0, x2) and st[4g + 2 + slot] = (x1, x3), int16 x - zp; a partial last group padded with zeros
 * (slot 0 low, slot 1 high). */
DK_ARM_INLINE void dk_arm_stage(int32_t *st, const int8_t *src, int32_t k, int slot, int32_t zp) {
    const int32_t ng = k >> 2, zp2 = (int32_t)(((uint32_t)zp & 0xFFFFu) | ((uint32_t)zp << 16));
    int32_t *d = st + slot;
    for (int32_t g = 0; g < ng; ++g, d += 4, src += 4) {
        const int32_t v = dk_arm_ld32(src);
        d[0] = __ssub16(__sxtb16(v), zp2);
        d[2] = __ssub16(dk_arm_sxtb16_ror8(v), zp2);
    }
    if (k & 3) { /* the last, partial group: padded with in_zp, i.e. staged zeros */
        uint32_t v = 0;
        for (int i = 3; i >= 0; --i) v = v << 8 | (uint8_t)(i < (k & 3) ? src[i] : (int8_t)zp);
        d[0] = __ssub16(__sxtb16((int32_t)v), zp2);
        d[2] = __ssub16(dk_arm_sxtb16_ror8((int32_t)v), zp2);
    }
}

/* acc{a0, c0, a1, c1} += the ng staged 4-groups at st (pixels a, c) times the weight rows w0, w1 (channels 0, 1):
 * 18 instructions per 16 MACs (two SXTB16 per weight word, each result used by two SMLADs). */
static inline __attribute__((always_inline)) void dk_arm_mac_2x2(const int32_t *st, const int8_t *w0,
                                                                 const int8_t *w1, int32_t ng, int32_t *acc) {
    int32_t a0 = acc[0], c0 = acc[1], a1 = acc[2], c1 = acc[3], v0, v1, x0, x1, e;
    __asm__ volatile(
        "1:\n\t"
        "ldr %[v0], [%[w0]], #4\n\t"
        "ldr %[v1], [%[w1]], #4\n\t"
        "ldrd %[x0], %[x1], [%[s]], #8\n\t"
        "sxtb16 %[e], %[v0]\n\t"
        "smlad %[a0], %[x0], %[e], %[a0]\n\t"
        "smlad %[c0], %[x1], %[e], %[c0]\n\t"
        "sxtb16 %[e], %[v1]\n\t"
        "smlad %[a1], %[x0], %[e], %[a1]\n\t"
        "smlad %[c1], %[x1], %[e], %[c1]\n\t"
        "ldrd %[x0], %[x1], [%[s]], #8\n\t"
        "sxtb16 %[e], %[v0], ror #8\n\t"
        "smlad %[a0], %[x0], %[e], %[a0]\n\t"
        "smlad %[c0], %[x1], %[e], %[c0]\n\t"
        "sxtb16 %[e], %[v1], ror #8\n\t"
        "smlad %[a1], %[x0], %[e], %[a1]\n\t"
        "smlad %[c1], %[x1], %[e], %[c1]\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b"
        : [a0] "+r"(a0), [c0] "+r"(c0), [a1] "+r"(a1), [c1] "+r"(c1), [v0] "=&r"(v0), [v1] "=&r"(v1),
          [x0] "=&r"(x0), [x1] "=&r"(x1), [e] "=&r"(e), [s] "+r"(st), [w0] "+r"(w0), [w1] "+r"(w1), [n] "+r"(ng)
        :
        : "cc", "memory");
    acc[0] = a0, acc[1] = c0, acc[2] = a1, acc[3] = c1;
}

/* One output of the fast form: clamp(SSAT8(((Q >> 32) >> e2) + c) >> 1), e2 = -shift - 2. */
static inline __attribute__((always_inline)) int32_t dk_arm_rq_fast(int32_t acc, int32_t mult, int32_t e2, int32_t c,
                                                                    int32_t lo, int32_t hi) {
    int32_t v = __ssat((((int32_t)(dk_arm_q(acc, mult) >> 32) >> e2) + c) >> 1, 8);
    if (lo > -128) v = v < lo ? lo : v; /* v is in [-128, 127] already */
    if (hi < 127) v = v > hi ? hi : v;
    return v;
}

/* Outputs of the staged pixel pair (pixels a and b: oa, ob; ob == oa when the pair is one pixel twice) for all out_c
 * channels: w (out_c, k) int8 rows. */
static inline __attribute__((always_inline)) void dk_arm_gemm_pair_t(const int32_t *st, int32_t k, const int8_t *w,
                                                                     int out_c, const int32_t *bias,
                                                                     const int32_t *mult, const int32_t *shift,
                                                                     int32_t out_zp, int32_t act_min, int32_t act_max,
                                                                     int8_t *oa, int8_t *ob, const int fast) {
    const int32_t ng = k >> 2, nt = k & 3, c = 1 + 2 * out_zp;
    const dk_arm_h16 *tail = (const dk_arm_h16 *)(st + 4 * ng); /* the partial group: even pair a, b; odd a, b */
    for (int co = 0; co < out_c; co += 2, w += 2 * k) {
        const int two = co + 1 < out_c;
        const int8_t *w1 = two ? w + k : w;
        const int32_t b0 = bias ? bias[co] : 0, b1 = bias && two ? bias[co + 1] : 0;
        int32_t acc[4] = {b0, b0, b1, b1}; /* a0, c0, a1, c1: pixel a/c, channel 0/1 */
        if (ng) dk_arm_mac_2x2(st, w, w1, ng, acc);
        for (int32_t t = 0; t < nt; ++t) { /* element t of the group: pair t & 1, half t >> 1 */
            const int32_t h = ((t & 1) << 2) + (t >> 1);
            const int32_t xa = tail[h], xc = tail[h + 2], u0 = w[4 * ng + t], u1 = w1[4 * ng + t];
            acc[0] += xa * u0, acc[1] += xc * u0, acc[2] += xa * u1, acc[3] += xc * u1;
        }
        if (fast) {
            const int32_t m0 = mult[co], e0 = -2 - shift[co];
            oa[co] = (int8_t)dk_arm_rq_fast(acc[0], m0, e0, c, act_min, act_max);
            ob[co] = (int8_t)dk_arm_rq_fast(acc[1], m0, e0, c, act_min, act_max);
            if (two) {
                const int32_t m1 = mult[co + 1], e1 = -2 - shift[co + 1];
                oa[co + 1] = (int8_t)dk_arm_rq_fast(acc[2], m1, e1, c, act_min, act_max);
                ob[co + 1] = (int8_t)dk_arm_rq_fast(acc[3], m1, e1, c, act_min, act_max);
            }
        } else {
            oa[co] = dk_arm_requant(acc[0], mult[co], shift[co], 0, c, out_zp, act_min, act_max);
            ob[co] = dk_arm_requant(acc[1], mult[co], shift[co], 0, c, out_zp, act_min, act_max);
            if (two) {
                oa[co + 1] = dk_arm_requant(acc[2], mult[co + 1], shift[co + 1], 0, c, out_zp, act_min, act_max);
                ob[co + 1] = dk_arm_requant(acc[3], mult[co + 1], shift[co + 1], 0, c, out_zp, act_min, act_max);
            }
        }
    }
}

/* The common case of dk_arm_gemm_pair_t as one assembly loop over channel pairs (no register spills): k % 4 == 0,
 * a bias, every shift <= -2, activation range [-128, 127]. */
typedef struct {
    const int8_t *w;     /* +0: weight row of the pair's first channel */
    int32_t k;           /* +4 */
    int32_t ng;          /* +8: k / 4 */
    const int32_t *st;   /* +12: staged pixel pair */
    const int32_t *bias; /* +16 */
    const int32_t *mult; /* +20 */
    const int32_t *shift; /* +24 */
    int8_t *oa;          /* +28: pixel a's output at the pair's first channel */
    int32_t boff;        /* +32: pixel b's output - pixel a's */
    int32_t c;           /* +36: 1 + 2 out_zp */
    int32_t pairs;       /* +40: channel pairs left */
} dk_arm_blk_t;

#define DK_ARM_RQ(acc, m, e, store)                                                                                    \
    "and r4, " acc ", #0x80000000\n\t"                                                                                 \
    "eor r4, r4, #0x40000000\n\t"                                                                                      \
    "asr r5, " acc ", #31\n\t"                                                                                         \
    "smlal r4, r5, " acc ", " m "\n\t"                                                                                 \
    "asr r5, r5, " e "\n\t"                                                                                            \
    "add r5, r5, r12\n\t"                                                                                              \
    "ssat r5, #8, r5, asr #1\n\t" store "\n\t"

static __attribute__((noinline)) void dk_arm_pairs_fast(dk_arm_blk_t *blk) {
    register dk_arm_blk_t *p0 __asm__("r0") = blk; /* moved to lr at once: r0 is a scratch register below */
    __asm__ volatile(
        "mov lr, %[p]\n\t"
        "2:\n\t"
        "ldrd r1, r2, [lr, #0]\n\t" /* w0, k */
        "add r3, r1, r2\n\t"        /* w1 */
        "add r4, r3, r2\n\t"
        "str r4, [lr, #0]\n\t"
        "ldrd r4, r5, [lr, #8]\n\t" /* ng, st */
        "ldr r6, [lr, #16]\n\t"
        "ldrd r8, r10, [r6], #8\n\t" /* a0 = c0 = bias[co], a1 = c1 = bias[co + 1] */
        "str r6, [lr, #16]\n\t"
        "mov r9, r8\n\t"
        "mov r11, r10\n\t"
        "lsrs r4, r4, #1\n\t" /* groups in twos; an odd one first (carry) */
        "bcc 3f\n\t"
        "ldr r0, [r1], #4\n\t"
        "ldr r6, [r3], #4\n\t"
        "ldrd r7, r12, [r5], #8\n\t"
        "sxtb16 r2, r0\n\t"
        "smlad r8, r7, r2, r8\n\t"
        "smlad r9, r12, r2, r9\n\t"
        "sxtb16 r2, r6\n\t"
        "smlad r10, r7, r2, r10\n\t"
        "smlad r11, r12, r2, r11\n\t"
        "ldrd r7, r12, [r5], #8\n\t"
        "sxtb16 r2, r0, ror #8\n\t"
        "smlad r8, r7, r2, r8\n\t"
        "smlad r9, r12, r2, r9\n\t"
        "sxtb16 r2, r6, ror #8\n\t"
        "smlad r10, r7, r2, r10\n\t"
        "smlad r11, r12, r2, r11\n\t"
        "3:\n\t"
        "cmp r4, #0\n\t"
        "beq 4f\n\t"
        "1:\n\t"
        "ldr r0, [r1], #4\n\t"
        "ldr r6, [r3], #4\n\t"
        "ldrd r7, r12, [r5], #8\n\t"
        "sxtb16 r2, r0\n\t"
        "smlad r8, r7, r2, r8\n\t"
        "smlad r9, r12, r2, r9\n\t"
        "sxtb16 r2, r6\n\t"
        "smlad r10, r7, r2, r10\n\t"
        "smlad r11, r12, r2, r11\n\t"
        "ldrd r7, r12, [r5], #8\n\t"
        "sxtb16 r2, r0, ror #8\n\t"
        "smlad r8, r7, r2, r8\n\t"
        "smlad r9, r12, r2, r9\n\t"
        "sxtb16 r2, r6, ror #8\n\t"
        "smlad r10, r7, r2, r10\n\t"
        "smlad r11, r12, r2, r11\n\t"
        "ldr r0, [r1], #4\n\t"
        "ldr r6, [r3], #4\n\t"
        "ldrd r7, r12, [r5], #8\n\t"
        "sxtb16 r2, r0\n\t"
        "smlad r8, r7, r2, r8\n\t"
        "smlad r9, r12, r2, r9\n\t"
        "sxtb16 r2, r6\n\t"
        "smlad r10, r7, r2, r10\n\t"
        "smlad r11, r12, r2, r11\n\t"
        "ldrd r7, r12, [r5], #8\n\t"
        "sxtb16 r2, r0, ror #8\n\t"
        "smlad r8, r7, r2, r8\n\t"
        "smlad r9, r12, r2, r9\n\t"
        "sxtb16 r2, r6, ror #8\n\t"
        "smlad r10, r7, r2, r10\n\t"
        "smlad r11, r12, r2, r11\n\t"
        "subs r4, r4, #1\n\t"
        "bne 1b\n\t"
        "4:\n\t"
        "ldr r6, [lr, #20]\n\t"
        "ldrd r0, r1, [r6], #8\n\t" /* m0, m1 */
        "str r6, [lr, #20]\n\t"
        "ldr r6, [lr, #24]\n\t"
        "ldrd r2, r3, [r6], #8\n\t" /* shifts -> e2 = -shift - 2 */
        "str r6, [lr, #24]\n\t"
        "mvn r2, r2\n\t"
        "sub r2, r2, #1\n\t"
        "mvn r3, r3\n\t"
        "sub r3, r3, #1\n\t"
        "ldr r12, [lr, #36]\n\t"
        "ldrd r6, r7, [lr, #28]\n\t" /* oa, boff */
        DK_ARM_RQ("r8", "r0", "r2", "strb r5, [r6]")
        DK_ARM_RQ("r9", "r0", "r2", "strb r5, [r6, r7]")
        DK_ARM_RQ("r10", "r1", "r3", "strb r5, [r6, #1]")
        "add r6, r6, #1\n\t"
        DK_ARM_RQ("r11", "r1", "r3", "strb r5, [r6, r7]")
        "add r6, r6, #1\n\t"
        "str r6, [lr, #28]\n\t"
        "ldr r4, [lr, #40]\n\t"
        "subs r4, r4, #1\n\t"
        "str r4, [lr, #40]\n\t"
        "bne 2b"
        : [p] "+r"(p0)
        :
        : "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}

DK_ARM_INLINE void dk_arm_gemm_pair(const int32_t *st, int32_t k, const int8_t *w, int out_c, const int32_t *bias,
                                    const int32_t *mult, const int32_t *shift, int fast, int32_t out_zp,
                                    int32_t act_min, int32_t act_max, int8_t *oa, int8_t *ob) {
    /* k % 4 != 0: padded groups (zeros staged; the weight rows are read 1-3 bytes into the next row), so the last
     * channel pair, whose row ends the array, takes the C path */
    const int pairs = (out_c >> 1) - ((k & 3) != 0);
    if (fast && bias && act_min == -128 && act_max == 127 && pairs > 0) {
        dk_arm_blk_t blk = {w, k, (k + 3) >> 2, st, bias, mult, shift, oa, (int32_t)(ob - oa), 1 + 2 * out_zp, pairs};
        dk_arm_pairs_fast(&blk);
        const int32_t done = 2 * pairs; /* the channels left */
        if (done == out_c) return;
        st = st, w += done * k, out_c -= done, bias += done, mult += done, shift += done, oa += done, ob += done;
    }
    if (fast)
        dk_arm_gemm_pair_t(st, k, w, out_c, bias, mult, shift, out_zp, act_min, act_max, oa, ob, 1);
    else
        dk_arm_gemm_pair_t(st, k, w, out_c, bias, mult, shift, out_zp, act_min, act_max, oa, ob, 0);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Convolutions and linear                                                                                  */
/* ------------------------------------------------------------------------------------------------------ */

/* dk_conv1x1_s8_ref's contract. */
DK_ARM_INLINE void dk_conv1x1_s8_dsp(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                     const int32_t *bias, int out_c, const int32_t *mult, const int32_t *shift,
                                     int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    if (in_c > DK_ARM_KMAX) {
        dk_conv1x1_s8_ref(in, in_h, in_w, in_c, in_zp, w, bias, out_c, mult, shift, out_zp, act_min, act_max, out);
        return;
    }
    const int32_t n_pix = (int32_t)in_h * in_w;
    const int fast = dk_arm_all_fast(shift, out_c);
    int32_t st[((in_c + 3) >> 2) * 4];
    for (int32_t p = 0; p < n_pix; p += 2) {
        const int pair = p + 1 < n_pix;
        const int8_t *ia = in + p * in_c;
        dk_arm_stage(st, ia, in_c, 0, in_zp);
        dk_arm_stage(st, pair ? ia + in_c : ia, in_c, 1, in_zp);
        int8_t *oa = out + p * out_c;
        dk_arm_gemm_pair(st, in_c, w, out_c, bias, mult, shift, fast, out_zp, act_min, act_max, oa,
                         pair ? oa + out_c : oa);
    }
}

/* One im2col row (kh * kw * cpg int8 values, OHWI order, padding = in_zp) of the window at input (y0, x0). */
DK_ARM_INLINE void dk_arm_im2col(int8_t *dst, const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, int kh,
                                 int kw, int y0, int x0, int cpg, int g) {
    if (cpg == in_c && y0 >= 0 && y0 + kh <= in_h && x0 >= 0 && x0 + kw <= in_w) { /* inside: kh runs, word copies */
        const int32_t run = (int32_t)kw * in_c;
        for (int ky = 0; ky < kh; ++ky, dst += run) {
            const int8_t *src = in + ((int32_t)(y0 + ky) * in_w + x0) * in_c;
            int32_t i = 0;
            for (; i + 4 <= run; i += 4) {
                const int32_t v = dk_arm_ld32(src + i);
                __builtin_memcpy(dst + i, &v, 4);
            }
            for (; i < run; ++i) dst[i] = src[i];
        }
        return;
    }
    for (int ky = 0; ky < kh; ++ky) {
        const int iy = y0 + ky;
        for (int kx = 0; kx < kw; ++kx, dst += cpg) {
            const int ix = x0 + kx;
            if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                for (int i = 0; i < cpg; ++i) dst[i] = (int8_t)in_zp;
            } else {
                const int8_t *src = in + ((int32_t)iy * in_w + ix) * in_c + (int32_t)g * cpg;
                for (int i = 0; i < cpg; ++i) dst[i] = src[i];
            }
        }
    }
}

/* Stage the receptive field of the window at (y0, x0), groups 1, in_c % 4 == 0, straight from the input: runs of
 * whole 4-groups, padding taps as zeros (x - in_zp with x = in_zp). */
DK_ARM_INLINE void dk_arm_stage_window(int32_t *st, const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp,
                                       int kh, int kw, int y0, int x0, int slot) {
    int32_t *d = st;
    for (int ky = 0; ky < kh; ++ky) {
        const int iy = y0 + ky;
        for (int kx = 0; kx < kw; ++kx, d += in_c) { /* in_c / 4 groups of 4 words */
            const int ix = x0 + kx;
            if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                for (int i = 0; i < in_c; i += 4) d[i + slot] = d[i + 2 + slot] = 0;
            } else {
                dk_arm_stage(d, in + ((int32_t)iy * in_w + ix) * in_c, in_c, slot, in_zp);
            }
        }
    }
}

/* dk_conv2d_s8_ref's contract. Groups 1 only (other groups run the reference kernel). */
DK_ARM_INLINE void dk_conv2d_s8_dsp(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                    const int32_t *bias, int out_c, int kh, int kw, int sh, int sw, int ph, int pw,
                                    int groups, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                    int32_t act_min, int32_t act_max, int8_t *out, int out_h, int out_w) {
    const int32_t k = (int32_t)kh * kw * in_c;
    if (groups != 1 || k > DK_ARM_KMAX) {
        dk_conv2d_s8_ref(in, in_h, in_w, in_c, in_zp, w, bias, out_c, kh, kw, sh, sw, ph, pw, groups, mult, shift,
                         out_zp, act_min, act_max, out, out_h, out_w);
        return;
    }
    if (kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && out_h == in_h && out_w == in_w) {
        dk_conv1x1_s8_dsp(in, in_h, in_w, in_c, in_zp, w, bias, out_c, mult, shift, out_zp, act_min, act_max, out);
        return;
    }
    const int fast = dk_arm_all_fast(shift, out_c);
    const int direct = (in_c & 3) == 0;
    const int32_t n_pix = (int32_t)out_h * out_w;
    int32_t st[((k + 3) >> 2) * 4];
    int8_t rows[direct ? 1 : 2 * k];
    for (int32_t p = 0; p < n_pix; p += 2) {
        const int pair = p + 1 < n_pix;
        for (int slot = 0; slot < 2; ++slot) {
            const int32_t q = slot && pair ? p + 1 : p;
            const int oy = (int)(q / out_w), ox = (int)(q - (int32_t)oy * out_w);
            const int y0 = oy * sh - ph, x0 = ox * sw - pw;
            if (direct) {
                dk_arm_stage_window(st, in, in_h, in_w, in_c, in_zp, kh, kw, y0, x0, slot);
            } else {
                dk_arm_im2col(rows + slot * k, in, in_h, in_w, in_c, in_zp, kh, kw, y0, x0, in_c, 0);
                dk_arm_stage(st, rows + slot * k, k, slot, in_zp);
            }
        }
        int8_t *oa = out + p * out_c;
        dk_arm_gemm_pair(st, k, w, out_c, bias, mult, shift, fast, out_zp, act_min, act_max, oa,
                         pair ? oa + out_c : oa);
    }
}

#define DK_ARM_MAC_ROW(row_load, acc)                                                                                  \
    row_load "\n\t"                                                                                                    \
    "sxtb16 %[e], %[v]\n\t"                                                                                            \
    "smlad %[" acc "], %[x0], %[e], %[" acc "]\n\t"                                                                    \
    "sxtb16 %[e], %[v], ror #8\n\t"                                                                                    \
    "smlad %[" acc "], %[x1], %[e], %[" acc "]\n\t"

/* acc[0..3] += 4 weight rows (w, w + k, w + 2k, w + 3k) times ng staged 4-groups (x - zp as (x0, x2), (x1, x3)):
 * 23 instructions per 16 MACs. */
static inline __attribute__((always_inline)) void dk_arm_mac_4rows(const int32_t *st, const int8_t *w, int32_t k,
                                                                   int32_t ng, int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], x0, x1, v, e;
    const int8_t *w2 = w + 2 * k;
    __asm__ volatile("1:\n\t"
                     "ldrd %[x0], %[x1], [%[s]], #8\n\t" DK_ARM_MAC_ROW("ldr %[v], [%[w0], %[k]]", "a1")
                         DK_ARM_MAC_ROW("ldr %[v], [%[w2], %[k]]", "a3") DK_ARM_MAC_ROW("ldr %[v], [%[w2]], #4", "a2")
                             DK_ARM_MAC_ROW("ldr %[v], [%[w0]], #4", "a0") "subs %[n], %[n], #1\n\t"
                                                                           "bne 1b"
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x0] "=&r"(x0), [x1] "=&r"(x1),
                       [v] "=&r"(v), [e] "=&r"(e), [s] "+r"(st), [w0] "+r"(w), [w2] "+r"(w2), [n] "+r"(ng)
                     : [k] "r"(k)
                     : "cc", "memory");
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* acc[0..2] += 3 weight rows (w, w + k, w + 2k) times ng 4-groups of int8 input converted in registers (x - zp):
 * 22 instructions per 12 MACs. */
static inline __attribute__((always_inline)) void dk_arm_mac_3rows(const int8_t *in, int32_t zp2, const int8_t *w,
                                                                   int32_t k, int32_t ng, int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], x0, x1, v, e;
    __asm__ volatile("1:\n\t"
                     "ldr %[x1], [%[s]], #4\n\t"
                     "sxtb16 %[x0], %[x1]\n\t"
                     "sxtb16 %[x1], %[x1], ror #8\n\t"
                     "ssub16 %[x0], %[x0], %[z]\n\t"
                     "ssub16 %[x1], %[x1], %[z]\n\t" DK_ARM_MAC_ROW("ldr %[v], [%[w0], %[k]]", "a1")
                         DK_ARM_MAC_ROW("ldr %[v], [%[w0], %[k], lsl #1]", "a2")
                             DK_ARM_MAC_ROW("ldr %[v], [%[w0]], #4", "a0") "subs %[n], %[n], #1\n\t"
                                                                          "bne 1b"
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [x0] "=&r"(x0), [x1] "=&r"(x1), [v] "=&r"(v),
                       [e] "=&r"(e), [s] "+r"(in), [w0] "+r"(w), [n] "+r"(ng)
                     : [k] "r"(k), [z] "r"(zp2)
                     : "cc", "memory");
    acc[0] = a0, acc[1] = a1, acc[2] = a2;
}

/* dk_linear_s8_ref's contract. */
DK_ARM_INLINE void dk_linear_s8_dsp(const int8_t *in, int in_features, int32_t in_zp, const int8_t *w,
                                    const int32_t *bias, int out_features, const int32_t *mult, const int32_t *shift,
                                    int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    const int32_t k = in_features, ng = k >> 2, c = 1 + 2 * out_zp;
    const int fast = dk_arm_all_fast(shift, out_features);
    const int staged = k <= DK_ARM_FC_STAGE;
    const int rows = staged ? 4 : 3;
    const int32_t zp2 = (int32_t)(((uint32_t)in_zp & 0xFFFFu) | ((uint32_t)in_zp << 16));
    int32_t st[DK_ARM_FC_STAGE / 2];
    if (staged)
        for (int32_t g = 0; g < ng; ++g) {
            const int32_t v = dk_arm_ld32(in + 4 * g);
            st[2 * g] = __ssub16(__sxtb16(v), zp2);
            st[2 * g + 1] = __ssub16(dk_arm_sxtb16_ror8(v), zp2);
        }
    int o = 0;
    if (fast && bias && act_min == -128 && act_max == 127 && ng) /* full blocks: no per-row conditions */
        for (; o + rows <= out_features && (k & 3) == 0; o += rows) {
            const int8_t *w0 = w + (int32_t)o * k;
            int32_t acc[4] = {bias[o], bias[o + 1], bias[o + 2], staged ? bias[o + 3] : 0};
            if (staged)
                dk_arm_mac_4rows(st, w0, k, ng, acc);
            else
                dk_arm_mac_3rows(in, zp2, w0, k, ng, acc);
            for (int j = 0; j < rows; ++j)
                out[o + j] = (int8_t)dk_arm_rq_fast(acc[j], mult[o + j], -2 - shift[o + j], c, -128, 127);
        }
    for (; o < out_features; o += rows) {
        const int n = out_features - o < rows ? out_features - o : rows;
        const int8_t *w0 = w + (int32_t)o * k;
        int32_t acc[4];
        for (int j = 0; j < 4; ++j) acc[j] = bias && j < n ? bias[o + j] : 0;
        if (n == rows && ng) {
            if (staged)
                dk_arm_mac_4rows(st, w0, k, ng, acc);
            else
                dk_arm_mac_3rows(in, zp2, w0, k, ng, acc);
        } else {
            for (int j = 0; j < n; ++j)
                for (int32_t i = 0; i < 4 * ng; ++i) acc[j] += ((int32_t)in[i] - in_zp) * w0[(int32_t)j * k + i];
        }
        for (int j = 0; j < n; ++j)
            for (int32_t i = 4 * ng; i < k; ++i) acc[j] += ((int32_t)in[i] - in_zp) * w0[(int32_t)j * k + i];
        for (int j = 0; j < n; ++j)
            out[o + j] = dk_arm_requant(acc[j], mult[o + j], shift[o + j], fast, c, out_zp, act_min, act_max);
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Linear on code-generator-arranged weights (optional entry points)                                        */
/* ------------------------------------------------------------------------------------------------------ */

/* Bytes of dk_linear_s8_il4's weight array: out_features rounded up to 4 rows, in_features up to 4 columns. */
#define DK_IL4_BYTES(in_features, out_features) ((((out_features) + 3) / 4) * 4 * (((in_features) + 3) / 4) * 4)

#define DK_ARM_IL4_ROW(v, acc)                                                                                         \
    "sxtb16 r0, " v ", ror #8\n\t"                                                                                     \
    "sxtb16 " v ", " v "\n\t"                                                                                          \
    "smlad " acc ", lr, " v ", " acc "\n\t"                                                                            \
    "smlad " acc ", r12, r0, " acc "\n\t"
#define DK_ARM_IL4_ROWS                                                                                                \
    "ldm r2!, {r4, r5, r6, r7}\n\t" DK_ARM_IL4_ROW("r4", "r8") DK_ARM_IL4_ROW("r5", "r9")                              \
        DK_ARM_IL4_ROW("r6", "r10") DK_ARM_IL4_ROW("r7", "r11")
/* one group of 4 inputs times 4 rows: staged int16 pairs (x0, x2), (x1, x3) (18 instructions per 16 MACs), or the
 * raw int8 word sign-extended in registers (20) */
#define DK_ARM_IL4_STAGED "ldrd lr, r12, [r1], #8\n\t" DK_ARM_IL4_ROWS
#define DK_ARM_IL4_RAW                                                                                                 \
    "ldr r12, [r1], #4\n\t"                                                                                            \
    "sxtb16 lr, r12\n\t"                                                                                               \
    "sxtb16 r12, r12, ror #8\n\t" DK_ARM_IL4_ROWS

/* acc[0..3] += 4 interleaved rows times ng groups of 4 inputs (the C fallback's loop: raw int8 input). */
static inline __attribute__((always_inline)) void dk_arm_mac_il4(const int8_t *x, const int8_t *w, int32_t ng,
                                                                 int32_t *acc) {
    register int32_t *pa __asm__("r0") = acc;
    register const int8_t *pi __asm__("r1") = x;
    register const int8_t *pw __asm__("r2") = w;
    register int32_t pn __asm__("r3") = ng;
    __asm__ volatile("push {r0}\n\t"
                     "ldm r0, {r8, r9, r10, r11}\n\t"
                     "1:\n\t" DK_ARM_IL4_RAW "subs r3, r3, #1\n\t"
                     "bne 1b\n\t"
                     "pop {r0}\n\t"
                     "stm r0, {r8, r9, r10, r11}"
                     : "+r"(pa), "+r"(pi), "+r"(pw), "+r"(pn)
                     :
                     : "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}

/* The C form of the linear kernels below: rows [0, out_features) of w_il4 / bias_zp / out (any shape, shift and
 * range); mult and shift advance by ms (1 per channel, 0 per tensor). Out of line: the assembly needs r7, which a
 * caller with variable-length arrays keeps as its frame pointer. */
static __attribute__((noinline)) void dk_arm_il4_c(const int8_t *in, int32_t k, const int8_t *w_il4,
                                                   const int32_t *bias_zp, int out_features, const int32_t *mult,
                                                   const int32_t *shift, int ms, int32_t out_zp, int32_t act_min,
                                                   int32_t act_max, int8_t *out, int fast) {
    const int32_t ng = k >> 2, nt = k & 3, c = 1 + 2 * out_zp;
    for (int o = 0; o < out_features; o += 4, w_il4 += 16 * (ng + (nt != 0))) {
        const int n = out_features - o < 4 ? out_features - o : 4;
        int32_t acc[4] = {0, 0, 0, 0};
        for (int j = 0; j < n; ++j) acc[j] = bias_zp[o + j];
        if (ng) dk_arm_mac_il4(in, w_il4, ng, acc);
        for (int32_t t = 0; t < nt; ++t) /* the partial last group */
            for (int j = 0; j < 4; ++j) acc[j] += (int32_t)in[4 * ng + t] * w_il4[16 * ng + 4 * j + t];
        for (int j = 0; j < n; ++j) {
            const int32_t m = mult[(o + j) * ms], s = shift[(o + j) * ms];
            out[o + j] = dk_arm_requant(acc[j], m, s, fast, c, out_zp, act_min, act_max);
        }
    }
}

/* The parameters of dk_arm_il4_asm (offsets in the comments: the assembly reads them). */
typedef struct {
    const int8_t *in;     /* +0 */
    int32_t ng;           /* +4: in_features / 4 (in_features a multiple of 4) */
    const int8_t *w;      /* +8: w_il4 */
    const int32_t *bias;  /* +12: bias_zp */
    int8_t *out;          /* +16 */
    int32_t blocks;       /* +20: 4-row blocks, >= 1 */
    int32_t mode;         /* +24: bit 0: input staged; bit 1: the requantization loop (else per tensor, range
                           * [-128, 127], e = -shift in 2..24) */
    union {
        int32_t v;
        const int32_t *p;
    } m, e;               /* +28, +32: mult and e - 1; the loop: mult[] and shift[] (every shift <= -2) */
    int32_t c2, k;        /* +36, +40: C2 = c << (e - 2) and K = 2^30 - (C2 << 31) mod 2^32 with c = 1 + 2 out_zp;
                           * the loop: c and the mult[] / shift[] step in bytes (4 per channel, 0 per tensor) */
    int32_t lo, hi;       /* +44, +48: act_min, act_max */
} dk_arm_il4_t;

/* Per tensor, one output from the accumulator `a` (r4 m, r5 e - 1, r6 C2, r7 K): with s = a >> 31, the 64-bit
 * (C2 + s) : (K + (C2 + s) << 31) is C2 * 2^32 + (a < 0 ? -2^30 : 2^30), so after SMLAL the high word is
 * (Q >> 32) + c << (e - 2) (Q of the header comment), and (Q >> 32 >> (e - 2) + c) >> 1 is one shift by e - 1
 * (floors compose). No overflow: |Q >> 32| <= 2^30 and |C2| < 2^30 for e <= 24. */
#define DK_ARM_IL4_RQ(a)                                                                                               \
    "add r1, r6, " a ", asr #31\n\t"                                                                                   \
    "add r0, r7, r1, lsl #31\n\t"                                                                                      \
    "smlal r0, r1, " a ", r4\n\t"                                                                                      \
    "asr r1, r1, r5\n\t"                                                                                               \
    "ssat r1, #8, r1\n\t"
/* the activation range (r3 act_min, lr act_max) on the byte: SSUB8's GE flag picks with SEL */
#define DK_ARM_IL4_CLAMP                                                                                               \
    "ssub8 r0, r1, r3\n\t"                                                                                             \
    "sel r1, r1, r3\n\t"                                                                                               \
    "ssub8 r0, lr, r1\n\t"                                                                                             \
    "sel r1, r1, lr\n\t"
#define DK_ARM_IL4_STORE "strb r1, [r12], #1\n\t"

/* All blocks of 4 rows in one assembly routine: the input staged once on the stack (8 * ng bytes) when mode & 1;
 * per block the 4 accumulators start from bias_zp, the group loop is unrolled 4 times (entered at the group
 * count's remainder: Duff's device) and the 4 outputs are requantized in registers. A frame of 14 words at sp:
 *   +0 x (staged or raw input), +4 group quads, +8 bias, +12 out, +16 w end, +20 loop entry | 1,
 *   +24 requantization entry | 1, +28 .. +48 the struct's m .. hi, +52 the caller's sp.
 * Registers in the loop: r0 temp, r1 x, r2 w, r3 quads, r4-r7 weights, r8-r11 accumulators, r12, lr inputs. */
static __attribute__((noinline, noclone)) void dk_arm_il4_asm(const dk_arm_il4_t *p) {
    register const dk_arm_il4_t *p0 __asm__("r0") = p;
    __asm__ volatile(
        "mov r10, sp\n\t"
        "ldrd r1, r3, [r0]\n\t" /* in, ng */
        "ldr r2, [r0, #24]\n\t" /* mode */
        "mov r11, r1\n\t"
        "tst r2, #1\n\t"
        "beq 1f\n\t"
        "sub sp, sp, r3, lsl #3\n\t" /* the staged input: (x0, x2), (x1, x3) per group */
        "mov r11, sp\n\t"
        "mov r12, sp\n\t"
        "mov lr, r3\n\t"
        "2:\n\t"
        "ldr r4, [r1], #4\n\t"
        "sxtb16 r5, r4\n\t"
        "sxtb16 r4, r4, ror #8\n\t"
        "strd r5, r4, [r12], #8\n\t"
        "subs lr, lr, #1\n\t"
        "bne 2b\n\t"
        "1:\n\t"
        "add r1, r0, #28\n\t"
        "ldm r1, {r4, r5, r6, r7, r8, r9}\n\t" /* m, e, c2, k, lo, hi */
        "push {r4, r5, r6, r7, r8, r9, r10}\n\t"
        "mov r4, r11\n\t" /* x */
        "add r5, r3, #3\n\t"
        "lsr r5, r5, #2\n\t" /* quads */
        "ldr r6, [r0, #12]\n\t"
        "ldr r7, [r0, #16]\n\t"
        "ldr r8, [r0, #20]\n\t"
        "ldr r1, [r0, #8]\n\t"
        "mul r8, r8, r3\n\t"
        "add r8, r1, r8, lsl #4\n\t" /* w end */
        "rsb r9, r3, #0\n\t"
        "and r9, r9, #3\n\t" /* the loop is entered at group (-ng) & 3 of 4 */
        "adr r11, 20f\n\t"
        "adr r12, 21f\n\t"
        "tst r2, #1\n\t"
        "bne 3f\n\t"
        "adr r11, 30f\n\t"
        "adr r12, 31f\n\t"
        "3:\n\t"
        "sub r12, r12, r11\n\t"
        "mla r9, r9, r12, r11\n\t"
        "orr r9, r9, #1\n\t"
        "adr r10, 40f\n\t"
        "tst r2, #2\n\t"
        "beq 4f\n\t"
        "adr r10, 41f\n\t"
        "4:\n\t"
        "orr r10, r10, #1\n\t"
        "push {r4, r5, r6, r7, r8, r9, r10}\n\t"
        "mov r2, r1\n\t"
        "b 50f\n\t"
        /* staged groups */
        "20:\n\t" DK_ARM_IL4_STAGED "21:\n\t" DK_ARM_IL4_STAGED DK_ARM_IL4_STAGED DK_ARM_IL4_STAGED
        "subs r3, r3, #1\n\t"
        "bne 20b\n\t"
        "ldr pc, [sp, #24]\n\t"
        /* raw groups */
        "30:\n\t" DK_ARM_IL4_RAW "31:\n\t" DK_ARM_IL4_RAW DK_ARM_IL4_RAW DK_ARM_IL4_RAW
        "subs r3, r3, #1\n\t"
        "bne 30b\n\t"
        "ldr pc, [sp, #24]\n\t"
        /* the requantization loop: the header comment's fast form per output, clamped (compact: per channel
         * or clamped layers are rare); the accumulators popped one by one, r4 mult[], r5 shift[], r6 c, r7 step */
        "41:\n\t"
        "push {r8, r9, r10, r11}\n\t"
        "ldrd r4, r5, [sp, #44]\n\t"
        "ldrd r6, r7, [sp, #52]\n\t"
        "ldrd r3, lr, [sp, #60]\n\t"
        "ldr r12, [sp, #28]\n\t"
        "mov r8, #4\n\t"
        "6:\n\t"
        "pop {r9}\n\t"
        "ldr r0, [r4]\n\t"
        "add r4, r4, r7\n\t"
        "asr r1, r9, #31\n\t"
        "and r10, r9, #0x80000000\n\t"
        "eor r10, r10, #0x40000000\n\t"
        "smlal r10, r1, r9, r0\n\t"
        "ldr r0, [r5]\n\t"
        "add r5, r5, r7\n\t"
        "mvn r0, r0\n\t"
        "sub r0, r0, #1\n\t"
        "asr r1, r1, r0\n\t"
        "add r1, r1, r6\n\t"
        "ssat r1, #8, r1, asr #1\n\t" DK_ARM_IL4_CLAMP DK_ARM_IL4_STORE
        "subs r8, r8, #1\n\t"
        "bne 6b\n\t"
        "strd r4, r5, [sp, #28]\n\t"
        "b 49f\n\t"
        /* per tensor, range [-128, 127] */
        "40:\n\t"
        "ldrd r4, r5, [sp, #28]\n\t"
        "ldrd r6, r7, [sp, #36]\n\t"
        "ldr r12, [sp, #12]\n\t"
        DK_ARM_IL4_RQ("r8") DK_ARM_IL4_STORE DK_ARM_IL4_RQ("r9") DK_ARM_IL4_STORE DK_ARM_IL4_RQ("r10")
        DK_ARM_IL4_STORE DK_ARM_IL4_RQ("r11") DK_ARM_IL4_STORE
        "49:\n\t"
        "str r12, [sp, #12]\n\t"
        "ldr r0, [sp, #16]\n\t"
        "cmp r2, r0\n\t"
        "beq 59f\n\t"
        /* block start */
        "50:\n\t"
        "ldr r0, [sp, #8]\n\t"
        "ldm r0!, {r8, r9, r10, r11}\n\t" /* bias_zp */
        "str r0, [sp, #8]\n\t"
        "ldrd r1, r3, [sp]\n\t"
        "ldr pc, [sp, #20]\n\t"
        "59:\n\t"
        "ldr r0, [sp, #52]\n\t"
        "mov sp, r0"
        : "+r"(p0)
        :
        : "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
}

/* dk_linear_s8_ref's results from weights the code generator arranged (an optional faster entry point on Cortex-M:
 * one LDM per 16 weights, no zero-point work in the loop):
 *   w_il4    DK_IL4_BYTES(in_features, out_features) int8: w (out_features, in_features) zero-padded to
 *            (O4, K4) = (out_features and in_features rounded up to multiples of 4), then for each block b of 4
 *            rows and each 4-column group g the 16 bytes w[4b + r][4g .. 4g + 3] for r = 0..3, i.e.
 *            w_pad.reshape(O4 / 4, 4, K4 / 4, 4).transpose(0, 2, 1, 3).ravel()
 *   bias_zp  int32 (out_features,): bias[o] - in_zp * sum_i w[o][i] (the zero point folded in; exact in int32)
 *   in       (in_features,) int8
 * The assembly takes in_features % 4 == 0 and every shift <= -2 (staging up to DK_ARM_FC_STAGE features: stack
 * 2 * in_features bytes); the last out_features % 4 rows and other layers run the C form. */
static inline void dk_linear_s8_il4(const int8_t *in, int in_features, const int8_t *w_il4, const int32_t *bias_zp,
                                    int out_features, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                    int32_t act_min, int32_t act_max, int8_t *out) {
    const int32_t k = in_features;
    int32_t rows = (out_features >> 2) * 4;
    const int fast = dk_arm_all_fast(shift, out_features);
    if (fast && k > 0 && (k & 3) == 0 && rows) {
        const dk_arm_il4_t p = {in, k >> 2, w_il4, bias_zp, out, out_features >> 2, 2 | (k <= DK_ARM_FC_STAGE),
                                {.p = mult}, {.p = shift}, 1 + 2 * out_zp, 4, act_min, act_max};
        dk_arm_il4_asm(&p);
    } else {
        rows = 0;
    }
    if (rows < out_features)
        dk_arm_il4_c(in, k, w_il4 + rows * ((k + 3) & ~3), bias_zp + rows, out_features - rows, mult + rows,
                     shift + rows, 1, out_zp, act_min, act_max, out + rows, fast);
}

/* dk_linear_s8_il4 with one multiplier and shift for all channels (per-tensor quantization, as TFLite's fully
 * connected layers): 6 instructions per output in the assembly for 2 <= -shift <= 24 and the range [-128, 127]. */
static inline void dk_linear_s8_il4_pt(const int8_t *in, int in_features, const int8_t *w_il4,
                                       const int32_t *bias_zp, int out_features, int32_t mult, int32_t shift,
                                       int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    const int32_t k = in_features, e = -shift, staged = k <= DK_ARM_FC_STAGE;
    int32_t rows = (out_features >> 2) * 4;
    if (e >= 2 && e <= 24 && act_min == -128 && act_max == 127 && k > 0 && (k & 3) == 0 && rows) {
        const int32_t c2 = (1 + 2 * out_zp) * (1 << (e - 2));
        const dk_arm_il4_t p = {in, k >> 2, w_il4, bias_zp, out, out_features >> 2, staged, {.v = mult},
                                {.v = e - 1}, c2, (int32_t)(0x40000000u - ((uint32_t)c2 << 31)), -128, 127};
        dk_arm_il4_asm(&p);
    } else if (e >= 2 && k > 0 && (k & 3) == 0 && rows) {
        const dk_arm_il4_t p = {in, k >> 2, w_il4, bias_zp, out, out_features >> 2, 2 | staged, {.p = &mult},
                                {.p = &shift}, 1 + 2 * out_zp, 0, act_min, act_max};
        dk_arm_il4_asm(&p);
    } else {
        rows = 0;
    }
    if (rows < out_features)
        dk_arm_il4_c(in, k, w_il4 + rows * ((k + 3) & ~3), bias_zp + rows, out_features - rows, &mult, &shift, 0,
                     out_zp, act_min, act_max, out + rows, e >= 2);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Depthwise 3x3                                                                                            */
/* ------------------------------------------------------------------------------------------------------ */

/* One channel of a 3x3 depthwise conv (stride sx, sy in {1, 2}): input plane at `in` with pixel stride c, output
 * plane at `out` with pixel stride c (may be the same buffer: see the header comment). ring: 6 rows of span
 * int16 (span even, >= pw + in_w and >= (out_w - 1) * sx + 4), its padding columns already in_zp. */
static inline __attribute__((always_inline)) void dk_arm_dw3x3_channel(
    const int8_t *in, int in_h, int in_w, int c, int32_t in_zp, const int8_t *w, int32_t off, int32_t mult,
    int32_t shift, const int fast, int sy, int sx, int ph, int pw, int32_t out_zp, int32_t act_min, int32_t act_max,
    int8_t *out, int out_h, int out_w, dk_arm_h16 *ring, int span) {
    const int32_t cz = 1 + 2 * out_zp;
    int32_t wp[6]; /* per kernel row: (w0, w1), (w1, w2) as int16 pairs */
    for (int ky = 0; ky < 3; ++ky) {
        const int32_t u0 = w[(3 * ky) * c], u1 = w[(3 * ky + 1) * c], u2 = w[(3 * ky + 2) * c];
        wp[2 * ky] = (int32_t)(((uint32_t)u0 & 0xFFFFu) | ((uint32_t)u1 << 16));
        wp[2 * ky + 1] = (int32_t)(((uint32_t)u1 & 0xFFFFu) | ((uint32_t)u2 << 16));
    }
    const int32_t p0 = wp[0], q0 = wp[1], p1 = wp[2], q1 = wp[3], p2 = wp[4], q2 = wp[5];
    int next = -ph; /* next input row to stage */
    for (int oy = 0; oy < out_h; ++oy) {
        const int y0 = oy * sy - ph;
        for (; next <= y0 + 2; ++next) {
            dk_arm_h16 *r = ring + (int32_t)((next + 3) % 3) * span, *r2 = r + 3 * span;
            if (next < 0 || next >= in_h) {
                for (int x = 0; x < in_w; ++x) r[pw + x] = r2[pw + x] = (int16_t)in_zp;
            } else {
                const int8_t *src = in + (int32_t)next * in_w * c;
                dk_arm_h16 *d = r + pw, *d2 = r2 + pw;
                for (int n4 = in_w >> 2; n4 > 0; --n4, src += 4 * c, d += 4, d2 += 4) {
                    const int16_t v0 = src[0], v1 = src[c], v2 = src[2 * c], v3 = src[3 * c];
                    d[0] = d2[0] = v0, d[1] = d2[1] = v1, d[2] = d2[2] = v2, d[3] = d2[3] = v3;
                }
                for (int n1 = in_w & 3; n1 > 0; --n1, src += c) *d++ = *d2++ = *src;
            }
        }
        const int32_t *r0 = (const int32_t *)(ring + (int32_t)((y0 + 3) % 3) * span);
        const int32_t *r1 = r0 + span / 2, *r2 = r0 + span;
        int8_t *o = out + (int32_t)oy * out_w * c;
        int ox = 0;
        if (sx == 1) {
            for (; ox + 1 < out_w; ox += 2, r0 += 1, r1 += 1, r2 += 1) {
                int32_t a = off, b = off, x, y;
                x = r0[0], y = r0[1];
                a = __smlad(x, p0, a), a = __smlabt(y, q0, a), b = __smlatb(x, p0, b), b = __smlad(y, q0, b);
                x = r1[0], y = r1[1];
                a = __smlad(x, p1, a), a = __smlabt(y, q1, a), b = __smlatb(x, p1, b), b = __smlad(y, q1, b);
                x = r2[0], y = r2[1];
                a = __smlad(x, p2, a), a = __smlabt(y, q2, a), b = __smlatb(x, p2, b), b = __smlad(y, q2, b);
                o[0] = dk_arm_requant(a, mult, shift, fast, cz, out_zp, act_min, act_max);
                o[c] = dk_arm_requant(b, mult, shift, fast, cz, out_zp, act_min, act_max);
                o += 2 * c;
            }
        } else {
            for (; ox + 1 < out_w; ox += 2, r0 += 2, r1 += 2, r2 += 2) {
                int32_t a = off, b = off, x, y, z;
                x = r0[0], y = r0[1], z = r0[2];
                a = __smlad(x, p0, a), a = __smlabt(y, q0, a), b = __smlad(y, p0, b), b = __smlabt(z, q0, b);
                x = r1[0], y = r1[1], z = r1[2];
                a = __smlad(x, p1, a), a = __smlabt(y, q1, a), b = __smlad(y, p1, b), b = __smlabt(z, q1, b);
                x = r2[0], y = r2[1], z = r2[2];
                a = __smlad(x, p2, a), a = __smlabt(y, q2, a), b = __smlad(y, p2, b), b = __smlabt(z, q2, b);
                o[0] = dk_arm_requant(a, mult, shift, fast, cz, out_zp, act_min, act_max);
                o[c] = dk_arm_requant(b, mult, shift, fast, cz, out_zp, act_min, act_max);
                o += 2 * c;
            }
        }
        if (ox < out_w) { /* the last odd output: its window starts at column ox * sx (a word boundary for sx 2) */
            int32_t a = off; /* ox is even: r0 points at the window's first column */
            a = __smlad(r0[0], p0, a), a = __smlabt(r0[1], q0, a);
            a = __smlad(r1[0], p1, a), a = __smlabt(r1[1], q1, a);
            a = __smlad(r2[0], p2, a), a = __smlabt(r2[1], q2, a);
            o[0] = dk_arm_requant(a, mult, shift, fast, cz, out_zp, act_min, act_max);
        }
    }
}

/* The 3x3 path over all channels; 0 when the shape is outside it (the caller runs the reference kernel). */
DK_ARM_INLINE int dk_arm_dw3x3(const int8_t *in, int in_h, int in_w, int c, int32_t in_zp, const int8_t *w,
                               const int32_t *bias, int kh, int kw, int sh, int sw, int ph, int pw,
                               const int32_t *mult, const int32_t *shift, int32_t out_zp, int32_t act_min,
                               int32_t act_max, int8_t *out, int out_h, int out_w, int in_place) {
    const int need = (out_w - 1) * sw + 4, pad_w = pw + in_w + 1;
    const int span = ((need > pad_w ? need : pad_w) + 1) & ~1;
    if (kh != 3 || kw != 3 || sh < 1 || sh > 2 || sw < 1 || sw > 2 || ph > 1 || pw > 1 || ph < 0 || pw < 0 ||
        span > DK_ARM_DW_SPAN || (in_place && (out_w > in_w || (int32_t)out_h * out_w > (int32_t)in_h * in_w)))
        return 0;
    const int fast = dk_arm_all_fast(shift, c);
    int32_t ring32[3 * span]; /* 6 rows of span int16 */
    dk_arm_h16 *ring = (dk_arm_h16 *)ring32;
    for (int r = 0; r < 6; ++r) { /* padding columns, for all channels (the interior is staged row by row) */
        dk_arm_h16 *row = ring + (int32_t)r * span;
        for (int x = 0; x < pw; ++x) row[x] = (int16_t)in_zp;
        for (int x = pw + in_w; x < span; ++x) row[x] = (int16_t)in_zp;
    }
    for (int ch = 0; ch < c; ++ch) {
        int32_t wsum = 0;
        for (int t = 0; t < 9; ++t) wsum += w[t * c + ch];
        const int32_t off = (int32_t)((uint32_t)(bias ? bias[ch] : 0) - (uint32_t)in_zp * (uint32_t)wsum);
        if (fast)
            dk_arm_dw3x3_channel(in + ch, in_h, in_w, c, in_zp, w + ch, off, mult[ch], shift[ch], 1, sh, sw, ph, pw,
                                 out_zp, act_min, act_max, out + ch, out_h, out_w, ring, span);
        else
            dk_arm_dw3x3_channel(in + ch, in_h, in_w, c, in_zp, w + ch, off, mult[ch], shift[ch], 0, sh, sw, ph, pw,
                                 out_zp, act_min, act_max, out + ch, out_h, out_w, ring, span);
    }
    return 1;
}

/* dk_depthwise_conv2d_s8_ref's contract. */
DK_ARM_INLINE void dk_depthwise_conv2d_s8_dsp(const int8_t *in, int in_h, int in_w, int c, int32_t in_zp,
                                              const int8_t *w, const int32_t *bias, int kh, int kw, int sh, int sw,
                                              int ph, int pw, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                              int32_t act_min, int32_t act_max, int8_t *out, int out_h, int out_w) {
    if (!dk_arm_dw3x3(in, in_h, in_w, c, in_zp, w, bias, kh, kw, sh, sw, ph, pw, mult, shift, out_zp, act_min,
                      act_max, out, out_h, out_w, 0))
        dk_depthwise_conv2d_s8_ref(in, in_h, in_w, c, in_zp, w, bias, kh, kw, sh, sw, ph, pw, mult, shift, out_zp,
                                   act_min, act_max, out, out_h, out_w);
}

/* dk_depthwise_conv2d_s8_inplace_ref's contract (`tmp` is used only by the reference fallback). */
DK_ARM_INLINE void dk_depthwise_conv2d_s8_inplace_dsp(int8_t *buf, int in_h, int in_w, int c, int32_t in_zp,
                                                      const int8_t *w, const int32_t *bias, int kh, int kw, int sh,
                                                      int sw, int ph, int pw, const int32_t *mult, const int32_t *shift,
                                                      int32_t out_zp, int32_t act_min, int32_t act_max, int out_h,
                                                      int out_w, int8_t *tmp) {
    if (!dk_arm_dw3x3(buf, in_h, in_w, c, in_zp, w, bias, kh, kw, sh, sw, ph, pw, mult, shift, out_zp, act_min,
                      act_max, buf, out_h, out_w, 1))
        dk_depthwise_conv2d_s8_inplace_ref(buf, in_h, in_w, c, in_zp, w, bias, kh, kw, sh, sw, ph, pw, mult, shift,
                                           out_zp, act_min, act_max, out_h, out_w, tmp);
}

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
