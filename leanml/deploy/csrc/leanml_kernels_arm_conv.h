/*
 * leanml_kernels_arm_conv.h -- the GEMM core (2 pixels x 2 output channels) and the conv2d / conv1x1 / linear kernels.
 * Part of the Cortex-M DSP kernels: included by leanml_kernels_arm.h after its primitives. Include leanml_kernels.h, not this file.
 */
#ifndef LEANML_KERNELS_ARM_CONV_H
#define LEANML_KERNELS_ARM_CONV_H

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

#endif /* LEANML_KERNELS_ARM_CONV_H */
