/*
 * leanml_kernels_arm_dw.h -- depthwise 3x3 (stride 1 and 2, in place too) on a 3-row int16 ring.
 * Part of the Cortex-M DSP kernels: included by leanml_kernels_arm.h after its primitives. Include leanml_kernels.h, not this file.
 */
#ifndef LEANML_KERNELS_ARM_DW_H
#define LEANML_KERNELS_ARM_DW_H

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

#endif /* LEANML_KERNELS_ARM_DW_H */
