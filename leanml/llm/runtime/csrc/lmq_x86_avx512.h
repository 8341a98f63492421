/*
 * lmq_x86_avx512.h -- AVX-512 F/BW/VL + VNNI kernels (Ice Lake, Sapphire Rapids, Zen 4). Included by lmq_simd.h.
 *
 * int4 x int8: one 64-byte load holds a 128-code unit; `and 15` gives codes 0..63 (blocks b, b+1 in order), `>> 4`
 * codes 64..127 (blocks b+2, b+3), so the activations are two plain 64-byte loads. `vpdpbusd` multiplies u8 codes by
 * s8 activations exactly into 16 int32 lanes, 8 lanes per block; lanes are converted to float and multiplied by the
 * block's activation scale (d8: 8 copies per block) and its weight group's scale. Groups that are multiples of 128
 * accumulate per group and scale once per group. The zero points are one vector pass over the groups at the end.
 */
#ifndef LMQ_X86_AVX512_H
#define LMQ_X86_AVX512_H

#include <immintrin.h>

#include "lmq_ref.h"

#define LMQ_SIMD_LEVEL 2
#define LMQ_SIMD_NAME "avx512vnni"
#define LMQ_INLINE static inline __attribute__((always_inline))

/* Lanes 0-7: scale of block b's group, lanes 8-15: block b+1's (one broadcast when the group is a multiple of 64). */
LMQ_INLINE __m512 lmq_sc2(const uint16_t *sc, const int32_t *gidx, int32_t b, int mode) {
    const float s0 = lmq_h2f(sc[gidx[b]]);
    if (mode >= 1) return _mm512_set1_ps(s0);
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(lmq_h2f(sc[gidx[b + 1]])), 1);
}

/* acc -= sum_G s[G] * z[G] * A[G] (lane-wise partial sums). */
LMQ_INLINE __m512 lmq_zero_corr(__m512 acc, const uint16_t *sc, const uint8_t *zp, const float *A, int32_t ng,
                                float zshift) {
    for (int32_t g = 0; g < ng; g += 16) {
        const __mmask16 m = (__mmask16)(ng - g >= 16 ? 0xFFFF : (1u << (ng - g)) - 1);
        const __m512 s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, sc + g));
        const __m512 z = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, zp + g))),
                                       _mm512_set1_ps(zshift));
        acc = _mm512_fnmadd_ps(_mm512_mul_ps(s, z), _mm512_maskz_loadu_ps(m, A + g), acc);
    }
    return acc;
}

/* The four horizontal sums of v[0..3] (lane order differs from _mm512_reduce_add_ps: a different float order). */
LMQ_INLINE __m128 lmq_reduce4(const __m512 *v) {
    const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1]));
    const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3]));
    const __m512 u = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))),
                                   _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(u), _mm512_extractf32x8_ps(u, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)); /* v[0], v[1], v[2], v[3] */
}

/* Finish R rows: zero points, horizontal sums, bias; y[o + r] (R == 4: one combined reduction). */
LMQ_INLINE void lmq_finish_rows(__m512 *acc, const lmq_qmat *w, int32_t o, const int R, const float *A, int32_t ng,
                                float zshift, float *y) {
    for (int r = 0; r < R; ++r) {
        const int64_t row = (int64_t)(o + r) * ng;
        acc[r] = lmq_zero_corr(acc[r], w->scales + row, w->zeros + row, A, ng, zshift);
    }
    if (R == 4) {
        __m128 s = lmq_reduce4(acc);
        if (w->bias) s = _mm_add_ps(s, _mm_loadu_ps(w->bias + o));
        _mm_storeu_ps(y + o, s);
        return;
    }
    for (int r = 0; r < R; ++r) {
        const float s = _mm512_reduce_add_ps(acc[r]);
        y[o + r] = w->bias ? s + w->bias[o + r] : s;
    }
}

/* R (1..4) rows from o of an int4 matrix times activation row t. mode 2: group % 128 == 0; 1: % 64; 0: % 32. */
LMQ_INLINE void lmq_q4_tile(const lmq_qmat *w, int32_t o, const int R, const lmq_act *a, int32_t t, const float *A,
                            const int32_t *gidx, const int mode, float *y) {
    const int32_t kp = a->kp, nb = a->nb, ng = lmq_groups(w->k, w->group);
    const int8_t *x = a->q + (int64_t)t * kp;
    const float *d8 = a->d8 + (int64_t)t * nb * 8;
    const int32_t t0 = o & ~3, tr = w->n - t0 < 4 ? w->n - t0 : 4, ro = o - t0; /* 4-row tile (lmq.h) */
    const uint8_t *tile = w->q + (int64_t)t0 * (kp / 2);
    const uint16_t *sc[4];
    __m512 acc[4], gacc[4];
    for (int r = 0; r < R; ++r) {
        sc[r] = w->scales + (int64_t)(o + r) * ng;
        acc[r] = gacc[r] = _mm512_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(15), zero = _mm512_setzero_si512();
    int32_t base = 0;
    for (; base + 128 <= kp; base += 128) {
        const int32_t b = base / LMQ_BLOCK;
        const __m512i al = _mm512_loadu_si512(x + base), ah = _mm512_loadu_si512(x + base + 64);
        const __m512 dl = _mm512_loadu_ps(d8 + 8 * b), dh = _mm512_loadu_ps(d8 + 8 * b + 16);
        for (int r = 0; r < R; ++r) {
            const __m512i wb = _mm512_loadu_si512(tile + (int64_t)base / 2 * tr + (ro + r) * 64);
            const __m512i wl = _mm512_and_si512(wb, m4), wh = _mm512_and_si512(_mm512_srli_epi16(wb, 4), m4);
            const __m512 il = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, wl, al));
            const __m512 ih = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, wh, ah));
            if (mode == 2) {
                gacc[r] = _mm512_fmadd_ps(ih, dh, _mm512_fmadd_ps(il, dl, gacc[r]));
            } else {
                acc[r] = _mm512_fmadd_ps(il, _mm512_mul_ps(dl, lmq_sc2(sc[r], gidx, b, mode)), acc[r]);
                acc[r] = _mm512_fmadd_ps(ih, _mm512_mul_ps(dh, lmq_sc2(sc[r], gidx, b + 2, mode)), acc[r]);
            }
        }
        if (mode == 2 && (base + 128) % w->group == 0) { /* the unit ends its group */
            for (int r = 0; r < R; ++r) {
                acc[r] = _mm512_fmadd_ps(gacc[r], _mm512_set1_ps(lmq_h2f(sc[r][gidx[b]])), acc[r]);
                gacc[r] = _mm512_setzero_ps();
            }
        }
    }
    if (mode == 2 && base % w->group != 0) { /* the row's last group is short */
        for (int r = 0; r < R; ++r)
            acc[r] = _mm512_fmadd_ps(gacc[r], _mm512_set1_ps(lmq_h2f(sc[r][gidx[base / LMQ_BLOCK - 1]])), acc[r]);
    }
    if (base < kp) { /* tail: a unit of 64 and/or one of 32; its blocks' groups come from gidx */
        const __m256i m4y = _mm256_set1_epi8(15), zy = _mm256_setzero_si256();
        __m256 tacc[4];
        for (int r = 0; r < R; ++r) tacc[r] = _mm256_setzero_ps();
        if (base + 64 <= kp) {
            const int32_t b = base / LMQ_BLOCK;
            const __m256i al = _mm256_loadu_si256((const __m256i *)(x + base));
            const __m256i ah = _mm256_loadu_si256((const __m256i *)(x + base + 32));
            const __m256 dl = _mm256_loadu_ps(d8 + 8 * b), dh = _mm256_loadu_ps(d8 + 8 * b + 8);
            for (int r = 0; r < R; ++r) {
                const __m256i wb = _mm256_loadu_si256((const __m256i *)(tile + (int64_t)base / 2 * tr + (ro + r) * 32));
                const __m256i wl = _mm256_and_si256(wb, m4y), wh = _mm256_and_si256(_mm256_srli_epi16(wb, 4), m4y);
                const __m256 il = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(zy, wl, al));
                const __m256 ih = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(zy, wh, ah));
                const __m256 sl = _mm256_set1_ps(lmq_h2f(sc[r][gidx[b]]));
                const __m256 sh = _mm256_set1_ps(lmq_h2f(sc[r][gidx[b + 1]]));
                tacc[r] = _mm256_fmadd_ps(ih, _mm256_mul_ps(dh, sh), _mm256_fmadd_ps(il, _mm256_mul_ps(dl, sl), tacc[r]));
            }
            base += 64;
        }
        if (base + 32 <= kp) {
            const int32_t b = base / LMQ_BLOCK;
            const __m256i av = _mm256_loadu_si256((const __m256i *)(x + base));
            const __m256 dv = _mm256_loadu_ps(d8 + 8 * b);
            const __m128i m4x = _mm_set1_epi8(15);
            for (int r = 0; r < R; ++r) {
                const __m128i wb = _mm_loadu_si128((const __m128i *)(tile + (int64_t)base / 2 * tr + (ro + r) * 16));
                const __m256i wv = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(wb, m4x)),
                                                           _mm_and_si128(_mm_srli_epi16(wb, 4), m4x), 1);
                const __m256 iv = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(zy, wv, av));
                tacc[r] = _mm256_fmadd_ps(iv, _mm256_mul_ps(dv, _mm256_set1_ps(lmq_h2f(sc[r][gidx[b]]))), tacc[r]);
            }
        }
        for (int r = 0; r < R; ++r) acc[r] = _mm512_add_ps(acc[r], _mm512_zextps256_ps512(tacc[r]));
    }
    lmq_finish_rows(acc, w, o, R, A, ng, 0.0f, y);
}

/* R rows of an int8 matrix (codes in order) times activation row t: 64 codes (2 blocks) per step, 32 in the tail. */
LMQ_INLINE void lmq_q8_tile(const lmq_qmat *w, int32_t o, const int R, const lmq_act *a, int32_t t, const float *A,
                            const int32_t *gidx, const int mode, float *y) {
    const int32_t kp = a->kp, nb = a->nb, ng = lmq_groups(w->k, w->group);
    const int8_t *x = a->q + (int64_t)t * kp;
    const float *d8 = a->d8 + (int64_t)t * nb * 8;
    const int32_t t0 = o & ~3, tr = w->n - t0 < 4 ? w->n - t0 : 4, ro = o - t0; /* 4-row tile, 64-code units */
    const uint8_t *tile = w->q + (int64_t)t0 * kp;
    __m512 acc[4], gacc[4];
    for (int r = 0; r < R; ++r) acc[r] = gacc[r] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    int32_t i = 0;
    for (; i + 64 <= kp; i += 64) {
        const int32_t b = i / LMQ_BLOCK;
        const __m512i av = _mm512_loadu_si512(x + i);
        const __m512 dv = _mm512_loadu_ps(d8 + 8 * b);
        const int flush = mode == 2 && ((i + 64) % w->group == 0 || i + 128 > kp); /* the step ends its group */
        for (int r = 0; r < R; ++r) {
            const __m512i wv = _mm512_loadu_si512(tile + (int64_t)i * tr + (ro + r) * 64);
            const __m512 iv = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, wv, av));
            if (mode == 2) { /* accumulate the group, scale it once */
                gacc[r] = _mm512_fmadd_ps(iv, dv, gacc[r]);
                if (flush) {
                    acc[r] = _mm512_fmadd_ps(gacc[r], lmq_sc2(w->scales + (int64_t)(o + r) * ng, gidx, b, 1), acc[r]);
                    gacc[r] = _mm512_setzero_ps();
                }
            } else {
                const __m512 sv = lmq_sc2(w->scales + (int64_t)(o + r) * ng, gidx, b, mode);
                acc[r] = _mm512_fmadd_ps(iv, _mm512_mul_ps(dv, sv), acc[r]);
            }
        }
    }
    if (i < kp) { /* one block of 32 */
        const int32_t b = i / LMQ_BLOCK;
        const __m256i av = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256 dv = _mm256_loadu_ps(d8 + 8 * b);
        for (int r = 0; r < R; ++r) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(tile + (int64_t)i * tr + (ro + r) * 32));
            const __m256 iv = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, av));
            const __m256 sv = _mm256_set1_ps(lmq_h2f(w->scales[(int64_t)(o + r) * ng + gidx[b]]));
            acc[r] = _mm512_add_ps(acc[r], _mm512_zextps256_ps512(_mm256_mul_ps(iv, _mm256_mul_ps(dv, sv))));
        }
    }
    lmq_finish_rows(acc, w, o, R, A, ng, 0.0f, y);
}

#define LMQ_TILES(TILE, MODE)                                                           \
    do {                                                                                \
        int32_t o = r0;                                                                 \
        for (; o + 4 <= r1; o += 4) TILE(w, o, 4, a, t, A, gidx, MODE, y);             \
        for (; o < r1; ++o) TILE(w, o, 1, a, t, A, gidx, MODE, y);                      \
    } while (0)

/* Rows [r0, r1) of W times activation row t (gidx[b]: group of block b). */
static inline void lmq_qrows_simd(const lmq_qmat *w, int32_t r0, int32_t r1, const lmq_act *a, int32_t t,
                                  const float *A, const int32_t *gidx, float *y) {
    const int mode = w->group % 128 == 0 ? 2 : w->group % 64 == 0 ? 1 : 0;
    if (w->bits == 4) {
        if (mode == 2) LMQ_TILES(lmq_q4_tile, 2);
        else if (mode == 1) LMQ_TILES(lmq_q4_tile, 1);
        else LMQ_TILES(lmq_q4_tile, 0);
    } else {
        if (mode == 2) LMQ_TILES(lmq_q8_tile, 2);
        else if (mode == 1) LMQ_TILES(lmq_q8_tile, 1);
        else LMQ_TILES(lmq_q8_tile, 0);
    }
}

/* Quantize one row (lmq_quantize_row_ref's arithmetic: the same codes, scales and sums). */
static inline void lmq_quantize_row_simd(const float *x, int32_t k, int8_t *q, float *d, float *d8, int32_t *s) {
    const int32_t nb = lmq_kp(k) / LMQ_BLOCK;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int32_t b = 0; b < nb; ++b) {
        const int32_t i0 = b * LMQ_BLOCK, n = k - i0 < LMQ_BLOCK ? k - i0 : LMQ_BLOCK;
        const __mmask16 m0 = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
        const __mmask16 m1 = (__mmask16)(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1 : 0);
        const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + i0), x1 = _mm512_maskz_loadu_ps(m1, x + i0 + 16);
        /* max(|x|, acc): a NaN lane keeps acc, as fmaxf does */
        const __m512 ax = _mm512_max_ps(_mm512_andnot_ps(sign, x1), _mm512_max_ps(_mm512_andnot_ps(sign, x0),
                                                                                  _mm512_setzero_ps()));
        const float amax = _mm512_reduce_max_ps(ax);
        const float scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        const __m512 iv = _mm512_set1_ps(inv);
        const __m512 p0 = _mm512_mul_ps(x0, iv), p1 = _mm512_mul_ps(x1, iv);
        /* round half to even, clamp; NaN lanes (unordered) become 0 */
        const __m512i v0 = _mm512_maskz_max_epi32(_mm512_cmp_ps_mask(p0, p0, _CMP_ORD_Q),
                                                  _mm512_min_epi32(_mm512_cvtps_epi32(p0), hi), lo);
        const __m512i v1 = _mm512_maskz_max_epi32(_mm512_cmp_ps_mask(p1, p1, _CMP_ORD_Q),
                                                  _mm512_min_epi32(_mm512_cvtps_epi32(p1), hi), lo);
        _mm_storeu_si128((__m128i *)(q + i0), _mm512_cvtepi32_epi8(v0));
        _mm_storeu_si128((__m128i *)(q + i0 + 16), _mm512_cvtepi32_epi8(v1));
        d[b] = scale;
        s[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(v0, v1));
        _mm256_storeu_ps(d8 + 8 * b, _mm256_set1_ps(scale));
    }
}

/* Float rows [r0, r1) of W (n, k) times x (k), 4 rows per pass, 16 lanes each. */
static inline void lmq_frows_simd(const float *w, int32_t k, int32_t r0, int32_t r1, const float *x, float *y) {
    int32_t o = r0;
    for (; o < r1; o += 4) {
        const int R = r1 - o < 4 ? r1 - o : 4;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int32_t i = 0; i < k; i += 16) {
            const __mmask16 m = (__mmask16)(k - i >= 16 ? 0xFFFF : (1u << (k - i)) - 1);
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
            for (int r = 0; r < R; ++r)
                acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + (int64_t)(o + r) * k + i), xv, acc[r]);
        }
        for (int r = 0; r < R; ++r) y[o + r] = _mm512_reduce_add_ps(acc[r]);
    }
}

/* q (n floats) . k (n float16). */
static inline float lmq_dot_f16_simd(const float *q, const uint16_t *k, int32_t n) {
    __m512 acc = _mm512_setzero_ps();
    for (int32_t i = 0; i < n; i += 16) {
        const __mmask16 m = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, k + i)),
                              acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* out (n) += p * v (n float16); lane i is the reference's out[i] + p * v[i] (no fused multiply-add). */
static inline void lmq_axpy_f16_simd(float p, const uint16_t *v, int32_t n, float *out) {
    const __m512 pv = _mm512_set1_ps(p);
    for (int32_t i = 0; i < n; i += 16) {
        const __mmask16 m = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
        const __m512 prod = _mm512_mul_ps(pv, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, v + i)));
        _mm512_mask_storeu_ps(out + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, out + i), prod));
    }
}

/* exp(x) for x <= 0 (softmax after subtracting the max): 2^n * p(r), r = x - n ln 2, degree-6 polynomial; within
 * 2 ulp of expf; below -87.3 (where expf is denormal or 0) it returns 0 or a denormal. */
LMQ_INLINE __m512 lmq_exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-103.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* lmq_attend_ref with 16-lane dot products (4 positions per combined reduction), a vector exp, and the output
 * accumulated in registers (head_dim <= 128; larger heads use the reference). */
static inline void lmq_attend_simd(const float *q, const uint16_t *k, const uint16_t *v, int32_t n, int32_t hd,
                                   float scale, float *s, float *out) {
    if (hd > 128) {
        lmq_attend_ref(q, k, v, n, hd, scale, s, out);
        return;
    }
    const int32_t nv = (hd + 15) / 16;
    __mmask16 m[8];
    __m512 qv[8], acc[8];
    for (int32_t c = 0; c < nv; ++c) {
        m[c] = (__mmask16)(hd - 16 * c >= 16 ? 0xFFFF : (1u << (hd - 16 * c)) - 1);
        qv[c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m[c], q + 16 * c), _mm512_set1_ps(scale));
        acc[c] = _mm512_setzero_ps();
    }
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) { /* 4 scores per combined reduction */
        __m512 d[4];
        for (int t = 0; t < 4; ++t) {
            const uint16_t *kj = k + (int64_t)(j + t) * hd;
            d[t] = _mm512_setzero_ps();
            for (int32_t c = 0; c < nv; ++c)
                d[t] = _mm512_fmadd_ps(qv[c], _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[c], kj + 16 * c)), d[t]);
        }
        _mm_storeu_ps(s + j, lmq_reduce4(d));
    }
    for (; j < n; ++j) {
        __m512 d = _mm512_setzero_ps();
        for (int32_t c = 0; c < nv; ++c)
            d = _mm512_fmadd_ps(qv[c], _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[c], k + (int64_t)j * hd + 16 * c)), d);
        s[j] = _mm512_reduce_add_ps(d);
    }
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (j = 0; j < n; j += 16) {
        const __mmask16 mj = (__mmask16)(n - j >= 16 ? 0xFFFF : (1u << (n - j)) - 1);
        mx = _mm512_mask_max_ps(mx, mj, mx, _mm512_maskz_loadu_ps(mj, s + j));
    }
    const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (j = 0; j < n; j += 16) {
        const __mmask16 mj = (__mmask16)(n - j >= 16 ? 0xFFFF : (1u << (n - j)) - 1);
        const __m512 e = _mm512_maskz_mov_ps(mj, lmq_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mj, s + j), top)));
        _mm512_mask_storeu_ps(s + j, mj, e);
        sum = _mm512_add_ps(sum, e);
    }
    for (j = 0; j < n; ++j) {
        const __m512 pj = _mm512_set1_ps(s[j]);
        const uint16_t *vj = v + (int64_t)j * hd;
        for (int32_t c = 0; c < nv; ++c)
            acc[c] = _mm512_fmadd_ps(pj, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[c], vj + 16 * c)), acc[c]);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int32_t c = 0; c < nv; ++c) _mm512_mask_storeu_ps(out + 16 * c, m[c], _mm512_mul_ps(acc[c], inv));
}

#endif /* LMQ_X86_AVX512_H */
