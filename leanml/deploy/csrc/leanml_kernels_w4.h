/*
 * leanml_kernels_w4.h -- int8-activation kernels with 4-bit weights packed two per byte (sub-byte flash for
 * mixed precision). Include leanml_kernels.h, not this file.
 *
 * Packing (leanml.deploy.weights.pack_w4; the one sub-byte layout of leanml.quant.code_packing): the layer's
 * weight array in the same element order as its int8 kernel takes it (OHWI; (kh, kw, C) depthwise; (out, in)
 * linear), flattened; element j is the low nibble of byte j / 2 when j is even, the high nibble when odd; a
 * nibble holds the code w + 8 for a weight w in [-8, 7]. A trailing odd element leaves the last high nibble 0.
 *
 * Each kernel computes exactly what its int8 twin in leanml_kernels_ref.h computes with the unpacked weights
 * (same loops, same accumulation, same requantization): the tests compare them bit for bit. The nibble is
 * extracted in the inner loop (no weight buffer: flash is the point, and SRAM stays what the int8 kernel needs).
 */
#ifndef LEANML_KERNELS_W4_H
#define LEANML_KERNELS_W4_H

#include <stdint.h>

/* Weight j of a packed 4-bit weight array: its code minus 8. */
static inline int32_t dk_w4_get(const uint8_t *w, int32_t j) {
    const int32_t b = w[j >> 1];
    return ((j & 1) ? (b >> 4) : (b & 15)) - 8;
}

/* dk_conv2d_s8_ref with packed 4-bit weights w (out_c * kh * kw * in_c / groups elements, OHWI). */
static inline void dk_conv2d_s8w4_ref(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const uint8_t *w,
                                      const int32_t *bias, int out_c, int kh, int kw, int sh, int sw, int ph, int pw,
                                      int groups, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                      int32_t act_min, int32_t act_max, int8_t *out, int out_h, int out_w) {
    const int cpg = in_c / groups;
    const int opg = out_c / groups;
    for (int oy = 0; oy < out_h; ++oy) {
        const dk_window_t wy = dk_window_clip(oy, sh, ph, in_h, kh);
        for (int ox = 0; ox < out_w; ++ox) {
            const dk_window_t wx = dk_window_clip(ox, sw, pw, in_w, kw);
            int8_t *o = out + ((int32_t)oy * out_w + ox) * out_c;
            for (int co = 0; co < out_c; ++co) {
                const int32_t wc = (int32_t)co * kh * kw * cpg;
                const int8_t *ic = in + (co / opg) * cpg;
                int32_t acc = bias ? bias[co] : 0;
                for (int ky = wy.k0; ky < wy.k1; ++ky) {
                    for (int kx = wx.k0; kx < wx.k1; ++kx) {
                        const int8_t *ip = ic + ((int32_t)(wy.start + ky) * in_w + (wx.start + kx)) * in_c;
                        const int32_t wp = wc + (ky * kw + kx) * cpg;
                        for (int ci = 0; ci < cpg; ++ci) acc += ((int32_t)ip[ci] - in_zp) * dk_w4_get(w, wp + ci);
                    }
                }
                o[co] = dk_i32_requant(acc, mult[co], shift[co], out_zp, act_min, act_max);
            }
        }
    }
}

/* dk_depthwise_conv2d_s8_ref with packed 4-bit weights w ((kh, kw, c) elements). */
static inline void dk_depthwise_conv2d_s8w4_ref(const int8_t *in, int in_h, int in_w, int c, int32_t in_zp,
                                                const uint8_t *w, const int32_t *bias, int kh, int kw, int sh, int sw,
                                                int ph, int pw, const int32_t *mult, const int32_t *shift,
                                                int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out,
                                                int out_h, int out_w) {
    for (int oy = 0; oy < out_h; ++oy) {
        const dk_window_t wy = dk_window_clip(oy, sh, ph, in_h, kh);
        for (int ox = 0; ox < out_w; ++ox) {
            const dk_window_t wx = dk_window_clip(ox, sw, pw, in_w, kw);
            int8_t *o = out + ((int32_t)oy * out_w + ox) * c;
            for (int ch = 0; ch < c; ++ch) {
                int32_t acc = bias ? bias[ch] : 0;
                for (int ky = wy.k0; ky < wy.k1; ++ky) {
                    for (int kx = wx.k0; kx < wx.k1; ++kx) {
                        const int8_t x = in[((int32_t)(wy.start + ky) * in_w + (wx.start + kx)) * c + ch];
                        acc += ((int32_t)x - in_zp) * dk_w4_get(w, (ky * kw + kx) * c + ch);
                    }
                }
                o[ch] = dk_i32_requant(acc, mult[ch], shift[ch], out_zp, act_min, act_max);
            }
        }
    }
}

/* dk_depthwise_conv2d_s8_inplace_ref with packed 4-bit weights (same buffer contract: tmp holds one plane). */
static inline void dk_depthwise_conv2d_s8w4_inplace_ref(int8_t *buf, int in_h, int in_w, int c, int32_t in_zp,
                                                        const uint8_t *w, const int32_t *bias, int kh, int kw, int sh,
                                                        int sw, int ph, int pw, const int32_t *mult,
                                                        const int32_t *shift, int32_t out_zp, int32_t act_min,
                                                        int32_t act_max, int out_h, int out_w, int8_t *tmp) {
    const int32_t plane = (int32_t)in_h * in_w;
    for (int ch = 0; ch < c; ++ch) {
        for (int32_t p = 0; p < plane; ++p) tmp[p] = buf[p * c + ch];
        const int32_t b = bias ? bias[ch] : 0;
        for (int oy = 0; oy < out_h; ++oy) {
            const dk_window_t wy = dk_window_clip(oy, sh, ph, in_h, kh);
            for (int ox = 0; ox < out_w; ++ox) {
                const dk_window_t wx = dk_window_clip(ox, sw, pw, in_w, kw);
                int32_t acc = b;
                for (int ky = wy.k0; ky < wy.k1; ++ky) {
                    const int32_t row = (int32_t)(wy.start + ky) * in_w + wx.start;
                    for (int kx = wx.k0; kx < wx.k1; ++kx)
                        acc += ((int32_t)tmp[row + kx] - in_zp) * dk_w4_get(w, (ky * kw + kx) * c + ch);
                }
                buf[((int32_t)oy * out_w + ox) * c + ch] =
                    dk_i32_requant(acc, mult[ch], shift[ch], out_zp, act_min, act_max);
            }
        }
    }
}

/* dk_linear_s8_ref with packed 4-bit weights w ((out_features, in_features) elements). */
static inline void dk_linear_s8w4_ref(const int8_t *in, int in_features, int32_t in_zp, const uint8_t *w,
                                      const int32_t *bias, int out_features, const int32_t *mult, const int32_t *shift,
                                      int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    for (int o = 0; o < out_features; ++o) {
        const int32_t wp = (int32_t)o * in_features;
        int32_t acc = bias ? bias[o] : 0;
        for (int i = 0; i < in_features; ++i) acc += ((int32_t)in[i] - in_zp) * dk_w4_get(w, wp + i);
        out[o] = dk_i32_requant(acc, mult[o], shift[o], out_zp, act_min, act_max);
    }
}

/* Public names (no SIMD variant: the scalar loops are what a Cortex-M without a 4-bit multiply runs anyway). */
#define dk_conv2d_s8w4 dk_conv2d_s8w4_ref
#define dk_depthwise_conv2d_s8w4 dk_depthwise_conv2d_s8w4_ref
#define dk_depthwise_conv2d_s8w4_inplace dk_depthwise_conv2d_s8w4_inplace_ref
#define dk_linear_s8w4 dk_linear_s8w4_ref

#endif /* LEANML_KERNELS_W4_H */
