/*
 * leanml_kernels_ref.h -- the portable reference kernels of leanml's deploy engine (plain scalar C99).
 *
 * The fixed-point primitives and one `dk_<kernel>_ref` per kernel: the readable definition of each kernel's
 * contract (see leanml_kernels.h for the layouts and the bit-exact contract), and the path every build without
 * a SIMD backend runs. The SIMD backends (leanml_kernels_simd.h) must match these bit for bit; the tests compare
 * them on random shapes. Include leanml_kernels.h, not this file.
 */
#ifndef LEANML_KERNELS_REF_H
#define LEANML_KERNELS_REF_H

#include <stdint.h>

#ifdef __FAST_MATH__
#error "leanml_kernels.h needs IEEE float semantics (bit-exact quantization): do not build with -ffast-math"
#endif

/* Left shift TFLite's int8 residual add applies to both inputs (integer_ops.ADD_LEFT_SHIFT). */
#define DK_ADD_LEFT_SHIFT 20
/* Channels processed at once by the kernels that keep per-channel int32 accumulators on the stack. */
#define DK_CHUNK 32

/* ------------------------------------------------------------------------------------------------------ */
/* Fixed-point primitives                                                                                   */
/* ------------------------------------------------------------------------------------------------------ */

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), ties toward +inf (nudge, then C
 * truncating division); a == b == INT32_MIN saturates to INT32_MAX. Scalar. */
static inline int32_t dk_q31_mul_high(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    const int64_t ab = (int64_t)a * (int64_t)b; /* |ab| <= 2^62: exact */
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero; exponent in [0, 31]. Scalar. */
static inline int32_t dk_i32_shift_round(int32_t x, int exponent) {
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding):
 * dk_i32_shift_round(dk_q31_mul_high(x * 2^left, multiplier), right) with
 * left = max(shift, 0), right = max(-shift, 0). Precondition (not checked, as TFLite): x * 2^left fits in
 * int32. shift in [-31, 30]. Scalar. */
static inline int32_t dk_i32_mul_multiplier(int32_t x, int32_t multiplier, int shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return dk_i32_shift_round(dk_q31_mul_high(x * ((int32_t)1 << left), multiplier), right);
}

/* clamp(v, lo, hi). Scalar. */
static inline int32_t dk_i32_clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* One accumulator to int8 (primitives.requantize):
 * clamp(dk_i32_mul_multiplier(acc, mult, shift) + out_zp, act_min, act_max).
 * act_min/act_max must lie in [-128, 127]. Scalar. */
static inline int8_t dk_i32_requant(int32_t acc, int32_t mult, int32_t shift, int32_t out_zp, int32_t act_min,
                                int32_t act_max) {
    return (int8_t)dk_i32_clamp(dk_i32_mul_multiplier(acc, mult, (int)shift) + out_zp, act_min, act_max);
}

/* One axis of a kernel window: output position o, stride s, padding p, input size n, kernel size k. Tap t reads
 * input position start + t; the taps [k0, k1) are the ones inside the input (the others read padding). */
typedef struct {
    int start, k0, k1;
} dk_window_t;

static inline dk_window_t dk_window_clip(int o, int s, int p, int n, int k) {
    const int start = o * s - p;
    const dk_window_t win = {start, start < 0 ? -start : 0, n - start < k ? n - start : k};
    return win;
}

/* round half away from zero on float32 (C roundf), exactly: trunc(v) + sign(v) * (|v - trunc(v)| >= 0.5).
 * |v| >= 2^23, inf and NaN are returned unchanged (already integral / not finite). Scalar. */
static inline float dk_f32_round_half_away(float v) {
    if (!(v > -8388608.0f && v < 8388608.0f)) return v;
    const float t = (float)(int32_t)v; /* exact truncation: |v| < 2^23 */
    const float f = v - t;             /* exact */
    if (f >= 0.5f) return t + 1.0f;
    if (f <= -0.5f) return t - 1.0f;
    return t;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Input / output conversion                                                                                */
/* ------------------------------------------------------------------------------------------------------ */

/* float -> int8 (IntegerModel.quantize_input, primitives.quantize):
 *   out[i] = clamp(round_half_away(x[i] / scale) + zp, -128, 127), division in float32.
 * The rounded value is clamped to [-128 - zp, 127 - zp] before the conversion, so +-inf saturate; NaN maps to
 * zp (the Python reference rejects NaN). x: (n,) any layout, out: (n,); out may not alias x (different type). */
static inline void dk_quantize_f32_ref(const float *x, int n, float scale, int32_t zp, int8_t *out) {
    const float lo = (float)(-128 - zp), hi = (float)(127 - zp);
    for (int i = 0; i < n; ++i) {
        float r = dk_f32_round_half_away(x[i] / scale);
        if (r != r) r = 0.0f;
        r = r < lo ? lo : (r > hi ? hi : r);
        out[i] = (int8_t)((int32_t)r + zp);
    }
}

/* int8 -> float (IntegerModel.dequantize_output, primitives.dequantize): out[i] = (float)(q[i] - zp) * scale,
 * one float32 multiply. q: (n,), out: (n,). */
static inline void dk_dequantize_s8_ref(const int8_t *q, int n, float scale, int32_t zp, float *out) {
    for (int i = 0; i < n; ++i) out[i] = (float)((int32_t)q[i] - zp) * scale;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Convolutions and linear                                                                                  */
/* ------------------------------------------------------------------------------------------------------ */

/* General conv2d (standard or grouped; QConv2d), direct loops.
 *   in  (in_h, in_w, in_c) HWC          w (out_c, kh, kw, in_c / groups) OHWI     bias, mult, shift (out_c,)
 *   out (out_h, out_w, out_c) HWC       out_h = (in_h + 2 ph - kh) / sh + 1, out_w likewise
 * groups divides in_c and out_c; output channel co reads input channels [g * in_c/groups, (g+1) * in_c/groups)
 * with g = co / (out_c / groups). Padding (ph, pw) on each side holds in_zp. Inner loop: contiguous channels. */
static inline void dk_conv2d_s8_ref(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                    const int32_t *bias, int out_c, int kh, int kw, int sh, int sw, int ph, int pw,
                                    int groups, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                    int32_t act_min, int32_t act_max, int8_t *out, int out_h, int out_w) {
    const int cpg = in_c / groups;  /* input channels per group */
    const int opg = out_c / groups; /* output channels per group */
    for (int oy = 0; oy < out_h; ++oy) {
        const dk_window_t wy = dk_window_clip(oy, sh, ph, in_h, kh); /* rows inside the input */
        for (int ox = 0; ox < out_w; ++ox) {
            const dk_window_t wx = dk_window_clip(ox, sw, pw, in_w, kw);
            int8_t *o = out + ((int32_t)oy * out_w + ox) * out_c;
            for (int co = 0; co < out_c; ++co) {
                const int8_t *wc = w + (int32_t)co * kh * kw * cpg;
                const int8_t *ic = in + (co / opg) * cpg;
                int32_t acc = bias ? bias[co] : 0;
                for (int ky = wy.k0; ky < wy.k1; ++ky) {
                    for (int kx = wx.k0; kx < wx.k1; ++kx) {
                        const int8_t *ip = ic + ((int32_t)(wy.start + ky) * in_w + (wx.start + kx)) * in_c;
                        const int8_t *wp = wc + (ky * kw + kx) * cpg;
                        for (int ci = 0; ci < cpg; ++ci) acc += ((int32_t)ip[ci] - in_zp) * (int32_t)wp[ci];
                    }
                }
                o[co] = dk_i32_requant(acc, mult[co], shift[co], out_zp, act_min, act_max);
            }
        }
    }
}

/* 1x1 conv, stride 1, no padding, groups 1, as an int8 GEMM over the in_h * in_w pixels p:
 *   out[p][co] = requant(bias[co] + sum_ci (in[p][ci] - in_zp) * w[co][ci])
 *   in (in_h, in_w, in_c) HWC    w (out_c, in_c)    bias, mult, shift (out_c,)    out (in_h, in_w, out_c) HWC
 * The zero point is folded per output channel, bias[co] - in_zp * sum_ci w[co][ci] (exact in int32 under the
 * accumulator bound), so the inner loop is a plain int8 dot product over contiguous ci. */
static inline void dk_conv1x1_s8_ref(const int8_t *in, int in_h, int in_w, int in_c, int32_t in_zp, const int8_t *w,
                                     const int32_t *bias, int out_c, const int32_t *mult, const int32_t *shift,
                                     int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    const int32_t n_pix = (int32_t)in_h * in_w;
    int32_t offset[DK_CHUNK];
    for (int co0 = 0; co0 < out_c; co0 += DK_CHUNK) {
        const int n = out_c - co0 < DK_CHUNK ? out_c - co0 : DK_CHUNK;
        for (int j = 0; j < n; ++j) {
            const int8_t *wp = w + (int32_t)(co0 + j) * in_c;
            int32_t wsum = 0;
            for (int ci = 0; ci < in_c; ++ci) wsum += wp[ci];
            offset[j] = (bias ? bias[co0 + j] : 0) - in_zp * wsum;
        }
        for (int32_t p = 0; p < n_pix; ++p) {
            const int8_t *ip = in + p * in_c;
            int8_t *o = out + p * out_c + co0;
            for (int j = 0; j < n; ++j) {
                const int8_t *wp = w + (int32_t)(co0 + j) * in_c;
                int32_t dot = 0;
                for (int ci = 0; ci < in_c; ++ci) dot += (int32_t)ip[ci] * (int32_t)wp[ci];
                o[j] = dk_i32_requant(dot + offset[j], mult[co0 + j], shift[co0 + j], out_zp, act_min, act_max);
            }
        }
    }
}

/* Depthwise conv2d (groups == in_c == out_c, channel multiplier 1), any kernel size, stride and padding.
 *   in (in_h, in_w, c) HWC    w (kh, kw, c)    bias, mult, shift (c,)    out (out_h, out_w, c) HWC
 * Accumulates DK_CHUNK channels at a time so the inner loop runs over contiguous channels. */
static inline void dk_depthwise_conv2d_s8_ref(const int8_t *in, int in_h, int in_w, int c, int32_t in_zp,
                                              const int8_t *w, const int32_t *bias, int kh, int kw, int sh, int sw,
                                              int ph, int pw, const int32_t *mult, const int32_t *shift, int32_t out_zp,
                                              int32_t act_min, int32_t act_max, int8_t *out, int out_h, int out_w) {
    int32_t acc[DK_CHUNK];
    for (int oy = 0; oy < out_h; ++oy) {
        const dk_window_t wy = dk_window_clip(oy, sh, ph, in_h, kh);
        for (int ox = 0; ox < out_w; ++ox) {
            const dk_window_t wx = dk_window_clip(ox, sw, pw, in_w, kw);
            int8_t *o = out + ((int32_t)oy * out_w + ox) * c;
            for (int c0 = 0; c0 < c; c0 += DK_CHUNK) {
                const int n = c - c0 < DK_CHUNK ? c - c0 : DK_CHUNK;
                for (int j = 0; j < n; ++j) acc[j] = bias ? bias[c0 + j] : 0;
                for (int ky = wy.k0; ky < wy.k1; ++ky) {
                    for (int kx = wx.k0; kx < wx.k1; ++kx) {
                        const int8_t *ip = in + ((int32_t)(wy.start + ky) * in_w + (wx.start + kx)) * c + c0;
                        const int8_t *wp = w + (ky * kw + kx) * c + c0;
                        for (int j = 0; j < n; ++j) acc[j] += ((int32_t)ip[j] - in_zp) * (int32_t)wp[j];
                    }
                }
                for (int j = 0; j < n; ++j)
                    o[c0 + j] = dk_i32_requant(acc[j], mult[c0 + j], shift[c0 + j], out_zp, act_min, act_max);
            }
        }
    }
}

/* In-place depthwise conv2d (TinyEngine's trick): the output overwrites the input in `buf`.
 *   buf  in:  (in_h, in_w, c) HWC;  out: (out_h, out_w, c) HWC, from the start of buf.
 *        It must hold max(in_h * in_w, out_h * out_w) * c bytes.
 *   tmp  scratch of in_h * in_w bytes (one channel plane).
 *   w (kh, kw, c), bias, mult, shift (c,): as dk_depthwise_conv2d_s8, same results.
 * Channel by channel: channel ch's input plane is copied to tmp, then its output plane is computed from tmp into
 * buf. Safe for any shapes: in HWC every slot whose offset is congruent to ch mod c belongs to channel ch, in
 * the input layout as in the output one, so writing channel ch only overwrites channel ch's (already copied)
 * input and never another channel's input or output. Peak memory: one activation + one plane. */
static inline void dk_depthwise_conv2d_s8_inplace_ref(int8_t *buf, int in_h, int in_w, int c, int32_t in_zp,
                                                      const int8_t *w, const int32_t *bias, int kh, int kw, int sh,
                                                      int sw, int ph, int pw, const int32_t *mult, const int32_t *shift,
                                                      int32_t out_zp, int32_t act_min, int32_t act_max, int out_h,
                                                      int out_w, int8_t *tmp) {
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
                    const int32_t row = (int32_t)(wy.start + ky) * in_w + wx.start; /* + kx >= 0: inside tmp */
                    for (int kx = wx.k0; kx < wx.k1; ++kx)
                        acc += ((int32_t)tmp[row + kx] - in_zp) * (int32_t)w[(ky * kw + kx) * c + ch];
                }
                buf[((int32_t)oy * out_w + ox) * c + ch] = dk_i32_requant(acc, mult[ch], shift[ch], out_zp, act_min,
                                                                      act_max);
            }
        }
    }
}

/* Fully connected layer (QLinear): out[o] = requant(bias[o] + sum_i (in[i] - in_zp) * w[o][i]).
 *   in (in_features,)    w (out_features, in_features)    bias, mult, shift (out_features,)    out (out_features,)
 * (A linear after a flatten takes features in the order of the buffer, HWC; the code generator permutes the
 * reference's C,H,W-ordered weight columns.) */
static inline void dk_linear_s8_ref(const int8_t *in, int in_features, int32_t in_zp, const int8_t *w,
                                    const int32_t *bias, int out_features, const int32_t *mult, const int32_t *shift,
                                    int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    for (int o = 0; o < out_features; ++o) {
        const int8_t *wp = w + (int32_t)o * in_features;
        int32_t acc = bias ? bias[o] : 0;
        for (int i = 0; i < in_features; ++i) acc += ((int32_t)in[i] - in_zp) * (int32_t)wp[i];
        out[o] = dk_i32_requant(acc, mult[o], shift[o], out_zp, act_min, act_max);
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Elementwise and pooling                                                                                  */
/* ------------------------------------------------------------------------------------------------------ */

/* Residual add by TFLite's rule (QAdd):
 *   a' = dk_i32_mul_multiplier((a[i] - a_zp) * 2^20, a_mult, a_shift),
 *   b' = dk_i32_mul_multiplier((b[i] - b_zp) * 2^20, b_mult, b_shift),
 *   out[i] = clamp(dk_i32_mul_multiplier(a' + b', out_mult, out_shift) + out_zp, act_min, act_max).
 * a, b, out: (n,) any layout (both inputs in the same one). out may alias a or b (same pointer). */
static inline void dk_add_s8_ref(const int8_t *a, const int8_t *b, int n, int32_t a_zp, int32_t a_mult, int32_t a_shift,
                                 int32_t b_zp, int32_t b_mult, int32_t b_shift, int32_t out_mult, int32_t out_shift,
                                 int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out) {
    for (int i = 0; i < n; ++i) {
        const int32_t sa = ((int32_t)a[i] - a_zp) * ((int32_t)1 << DK_ADD_LEFT_SHIFT);
        const int32_t sb = ((int32_t)b[i] - b_zp) * ((int32_t)1 << DK_ADD_LEFT_SHIFT);
        const int32_t total =
            dk_i32_mul_multiplier(sa, a_mult, (int)a_shift) + dk_i32_mul_multiplier(sb, b_mult, (int)b_shift);
        out[i] = dk_i32_requant(total, out_mult, out_shift, out_zp, act_min, act_max);
    }
}

/* Max pooling (QMaxPool; PyTorch max_pool2d, floor mode): padding never wins (-inf).
 *   in (in_h, in_w, c) HWC    out (out_h, out_w, c) HWC    out_h = (in_h + 2 ph - kh) / sh + 1, out_w likewise
 * Needs ph <= kh / 2 and pw <= kw / 2 (as PyTorch), so every window holds an input value. */
static inline void dk_maxpool_s8_ref(const int8_t *in, int in_h, int in_w, int c, int kh, int kw, int sh, int sw,
                                     int ph, int pw, int8_t *out, int out_h, int out_w) {
    for (int oy = 0; oy < out_h; ++oy) {
        const dk_window_t wy = dk_window_clip(oy, sh, ph, in_h, kh);
        for (int ox = 0; ox < out_w; ++ox) {
            const dk_window_t wx = dk_window_clip(ox, sw, pw, in_w, kw);
            int8_t *o = out + ((int32_t)oy * out_w + ox) * c;
            for (int ch = 0; ch < c; ++ch) o[ch] = INT8_MIN;
            for (int ky = wy.k0; ky < wy.k1; ++ky) {
                for (int kx = wx.k0; kx < wx.k1; ++kx) {
                    const int8_t *ip = in + ((int32_t)(wy.start + ky) * in_w + (wx.start + kx)) * c;
                    for (int ch = 0; ch < c; ++ch) o[ch] = ip[ch] > o[ch] ? ip[ch] : o[ch];
                }
            }
        }
    }
}

/* Average pooling without padding (QAvgPool; floor mode): window sum s over count = kh * kw values, then
 * sign(s) * ((2 |s| + count) / (2 count)), i.e. s / count rounded half away from zero, clamped to [-128, 127].
 *   in (in_h, in_w, c) HWC    out (out_h, out_w, c) HWC    out_h = (in_h - kh) / sh + 1, out_w likewise */
static inline void dk_avgpool_s8_ref(const int8_t *in, int in_h, int in_w, int c, int kh, int kw, int sh, int sw,
                                     int8_t *out, int out_h, int out_w) {
    const int32_t count = (int32_t)kh * kw;
    int32_t acc[DK_CHUNK];
    (void)in_h; /* implied by out_h; kept for a uniform signature */
    for (int oy = 0; oy < out_h; ++oy) {
        for (int ox = 0; ox < out_w; ++ox) {
            int8_t *o = out + ((int32_t)oy * out_w + ox) * c;
            for (int c0 = 0; c0 < c; c0 += DK_CHUNK) {
                const int n = c - c0 < DK_CHUNK ? c - c0 : DK_CHUNK;
                for (int j = 0; j < n; ++j) acc[j] = 0;
                for (int ky = 0; ky < kh; ++ky) {
                    for (int kx = 0; kx < kw; ++kx) {
                        const int8_t *ip = in + ((int32_t)(oy * sh + ky) * in_w + (ox * sw + kx)) * c + c0;
                        for (int j = 0; j < n; ++j) acc[j] += ip[j];
                    }
                }
                for (int j = 0; j < n; ++j) {
                    const int32_t s = acc[j], mag = (2 * (s < 0 ? -s : s) + count) / (2 * count);
                    o[c0 + j] = (int8_t)dk_i32_clamp(s < 0 ? -mag : mag, -128, 127);
                }
            }
        }
    }
}

/* Global average pooling (QAvgPool with kernel None): the whole map, rounded as dk_avgpool_s8.
 *   in (in_h, in_w, c) HWC    out (c,) = (1, 1, c) HWC */
static inline void dk_global_avgpool_s8_ref(const int8_t *in, int in_h, int in_w, int c, int8_t *out) {
    dk_avgpool_s8_ref(in, in_h, in_w, c, in_h, in_w, 1, 1, out, 1, 1);
}

/* Standalone ReLU/ReLU6 (QClamp), in place: buf[i] = clamp(buf[i], lo, hi). buf (n,) any layout. */
static inline void dk_clamp_s8_ref(int8_t *buf, int n, int32_t lo, int32_t hi) {
    for (int i = 0; i < n; ++i) buf[i] = (int8_t)dk_i32_clamp(buf[i], lo, hi);
}

#endif /* LEANML_KERNELS_REF_H */
