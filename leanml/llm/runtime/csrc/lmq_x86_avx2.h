/*
 * lmq_x86_avx2.h -- AVX2 + FMA + F16C kernels (Haswell, Zen 1 and later). Included by lmq_simd.h.
 *
 * int4 x int8: a 128-code unit is two 32-byte loads; `and 15` / `>> 4` of the first give blocks b and b+2, of the
 * second blocks b+1 and b+3 (lmq.h's layout), each against a plain 32-byte activation load. AVX2 has no exact
 * u8 x s8 dot instruction; `vpmaddubsw` is exact here because codes are <= 15 and activations in [-127, 127]
 * (2 * 15 * 127 < 32767), then `vpmaddwd` by 1 sums pairs into 8 int32 lanes (one block). int8 weights would
 * saturate `vpmaddubsw`, so they are flipped to w' = w - 128 (s8) and multiplied as |w'| * sign(a, w') (|w'| <= 128
 * as u8, a in [-127, 127]: at most 2 * 128 * 127 < 32767); the zero-point pass then uses z - 128 (lmq.h: isum - z * asum is unchanged).
 */
#ifndef LMQ_X86_AVX2_H
#define LMQ_X86_AVX2_H

#include <immintrin.h>

#include "lmq_ref.h"

#define LMQ_SIMD_LEVEL 1
#define LMQ_SIMD_NAME "avx2"
#define LMQ_INLINE static inline __attribute__((always_inline))

/* 8 int32 lanes of pair sums of u8 w * s8 a (exact under the bounds above). */
LMQ_INLINE __m256 lmq_dot8(__m256i w, __m256i a) {
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1)));
}

static inline float lmq_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* sum_G s[G] * (z[G] - zshift) * A[G], 8 groups per step (scalar tail). */
static inline float lmq_zero_corr8(const uint16_t *sc, const uint8_t *zp, const float *A, int32_t ng, float zshift) {
    __m256 acc = _mm256_setzero_ps();
    int32_t g = 0;
    for (; g + 8 <= ng; g += 8) {
        const __m256 s = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sc + g)));
        const __m256 z = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(zp + g)))),
                                       _mm256_set1_ps(zshift));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(s, z), _mm256_loadu_ps(A + g), acc);
    }
    float tail = 0.0f;
    for (; g < ng; ++g) tail += lmq_h2f(sc[g]) * ((float)zp[g] - zshift) * A[g];
    return lmq_hsum8(acc) + tail;
}

/* R (1..4) rows from o of an int4 (bits 4) or int8 matrix times activation row t; blocks' groups from gidx. */
LMQ_INLINE void lmq_q_tile_avx2(const lmq_qmat *w, int32_t o, const int R, const lmq_act *a, int32_t t,
                                const float *A, const int32_t *gidx, const int mode, float *y) {
    const int32_t kp = a->kp, nb = a->nb, ng = lmq_groups(w->k, w->group);
    const int8_t *x = a->q + (int64_t)t * kp;
    const float *d8 = a->d8 + (int64_t)t * nb * 8;
    const __m256i m4 = _mm256_set1_epi8(15), flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[4], gacc[4];
    for (int r = 0; r < R; ++r) acc[r] = gacc[r] = _mm256_setzero_ps();
    int32_t base = 0;
    while (base < kp) {
        const int32_t u = lmq_unit_size(w->bits, kp, base);
        const int32_t b = base / LMQ_BLOCK;
        for (int r = 0; r < R; ++r) {
            const uint8_t *unit = lmq_unit_ptr(w, o + r, base, u); /* this row's bytes of the unit */
            const uint16_t *sc = w->scales + (int64_t)(o + r) * ng;
            __m256 part[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            /* part[j]: block b + j's lanes of integer sums, as floats */
            if (w->bits == 8) {
                for (int j = 0; j < u / LMQ_BLOCK; ++j) {
                    const __m256i av = _mm256_loadu_si256((const __m256i *)(x + base + 32 * j));
                    const __m256i wv = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(unit + 32 * j)), flip);
                    part[j] = lmq_dot8(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv)); /* |w'| <= 128 fits u8 */
                }
            } else if (u == 128) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)unit);
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(unit + 32));
                part[0] = lmq_dot8(_mm256_and_si256(w0, m4), _mm256_loadu_si256((const __m256i *)(x + base)));
                part[1] = lmq_dot8(_mm256_and_si256(w1, m4), _mm256_loadu_si256((const __m256i *)(x + base + 32)));
                part[2] = lmq_dot8(_mm256_and_si256(_mm256_srli_epi16(w0, 4), m4),
                                   _mm256_loadu_si256((const __m256i *)(x + base + 64)));
                part[3] = lmq_dot8(_mm256_and_si256(_mm256_srli_epi16(w1, 4), m4),
                                   _mm256_loadu_si256((const __m256i *)(x + base + 96)));
            } else if (u == 64) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)unit);
                part[0] = lmq_dot8(_mm256_and_si256(w0, m4), _mm256_loadu_si256((const __m256i *)(x + base)));
                part[1] = lmq_dot8(_mm256_and_si256(_mm256_srli_epi16(w0, 4), m4),
                                   _mm256_loadu_si256((const __m256i *)(x + base + 32)));
            } else {
                const __m128i wb = _mm_loadu_si128((const __m128i *)unit), m4x = _mm_set1_epi8(15);
                const __m256i wv = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(wb, m4x)),
                                                           _mm_and_si128(_mm_srli_epi16(wb, 4), m4x), 1);
                part[0] = lmq_dot8(wv, _mm256_loadu_si256((const __m256i *)(x + base)));
            }
            for (int j = 0; j < u / LMQ_BLOCK; ++j) {
                const __m256 dv = _mm256_loadu_ps(d8 + 8 * (b + j));
                if (mode == 2 && u == 128) {
                    gacc[r] = _mm256_fmadd_ps(part[j], dv, gacc[r]);
                } else {
                    const __m256 sv = _mm256_set1_ps(lmq_h2f(sc[gidx[b + j]]));
                    acc[r] = _mm256_fmadd_ps(part[j], _mm256_mul_ps(dv, sv), acc[r]);
                }
            }
            if (mode == 2 && u == 128 && ((base + 128) % w->group == 0 || base + 256 > kp)) {
                acc[r] = _mm256_fmadd_ps(gacc[r], _mm256_set1_ps(lmq_h2f(sc[gidx[b]])), acc[r]);
                gacc[r] = _mm256_setzero_ps();
            }
        }
        base += u;
    }
    const float zshift = w->bits == 8 ? 128.0f : 0.0f;
    for (int r = 0; r < R; ++r) {
        const int64_t row = (int64_t)(o + r) * ng;
        const float s = lmq_hsum8(acc[r]) - lmq_zero_corr8(w->scales + row, w->zeros + row, A, ng, zshift);
        y[o + r] = w->bias ? s + w->bias[o + r] : s;
    }
}

/* Rows [r0, r1) of W times activation row t (gidx[b]: group of block b). */
static inline void lmq_qrows_simd(const lmq_qmat *w, int32_t r0, int32_t r1, const lmq_act *a, int32_t t,
                                  const float *A, const int32_t *gidx, float *y) {
    const int mode = w->group % 128 == 0 && w->bits == 4 ? 2 : 0;
    int32_t o = r0;
    if (mode == 2) {
        for (; o + 4 <= r1; o += 4) lmq_q_tile_avx2(w, o, 4, a, t, A, gidx, 2, y);
        for (; o < r1; ++o) lmq_q_tile_avx2(w, o, 1, a, t, A, gidx, 2, y);
    } else {
        for (; o + 4 <= r1; o += 4) lmq_q_tile_avx2(w, o, 4, a, t, A, gidx, 0, y);
        for (; o < r1; ++o) lmq_q_tile_avx2(w, o, 1, a, t, A, gidx, 0, y);
    }
}

/* Quantize one row (lmq_quantize_row_ref's arithmetic: the same codes, scales and sums). */
static inline void lmq_quantize_row_simd(const float *x, int32_t k, int8_t *q, float *d, float *d8, int32_t *s) {
    const int32_t nb = lmq_kp(k) / LMQ_BLOCK;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    float buf[LMQ_BLOCK];
    for (int32_t b = 0; b < nb; ++b) {
        const int32_t i0 = b * LMQ_BLOCK, n = k - i0 < LMQ_BLOCK ? k - i0 : LMQ_BLOCK;
        const float *src = x + i0;
        if (n < LMQ_BLOCK) { /* the short last block: zero padded copy */
            memset(buf, 0, sizeof buf);
            memcpy(buf, src, (size_t)n * sizeof *buf);
            src = buf;
        }
        __m256 xv[4], ax = _mm256_setzero_ps();
        for (int j = 0; j < 4; ++j) {
            xv[j] = _mm256_loadu_ps(src + 8 * j);
            ax = _mm256_max_ps(_mm256_andnot_ps(sign, xv[j]), ax); /* a NaN lane keeps ax, as fmaxf does */
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(ax), _mm256_extractf128_ps(ax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        const float amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        const float scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        __m256i v[4], sum = _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j) {
            const __m256 p = _mm256_mul_ps(xv[j], _mm256_set1_ps(inv));
            const __m256i ord = _mm256_castps_si256(_mm256_cmp_ps(p, p, _CMP_ORD_Q));
            v[j] = _mm256_and_si256(_mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(p), hi), lo), ord);
            sum = _mm256_add_epi32(sum, v[j]);
        }
        const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(q + i0), _mm256_permutevar8x32_epi32(packed, perm));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s[b] = _mm_cvtsi128_si32(_mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1)));
        d[b] = scale;
        _mm256_storeu_ps(d8 + 8 * b, _mm256_set1_ps(scale));
    }
}

/* Float rows [r0, r1) of W (n, k) times x (k), 4 rows per pass, 8 lanes each, scalar tail. */
static inline void lmq_frows_simd(const float *w, int32_t k, int32_t r0, int32_t r1, const float *x, float *y) {
    for (int32_t o = r0; o < r1; o += 4) {
        const int R = r1 - o < 4 ? r1 - o : 4;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        int32_t i = 0;
        for (; i + 8 <= k; i += 8) {
            const __m256 xv = _mm256_loadu_ps(x + i);
            for (int r = 0; r < R; ++r)
                acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + (int64_t)(o + r) * k + i), xv, acc[r]);
        }
        for (int r = 0; r < R; ++r) {
            float s = lmq_hsum8(acc[r]);
            for (int32_t j = i; j < k; ++j) s += w[(int64_t)(o + r) * k + j] * x[j];
            y[o + r] = s;
        }
    }
}

/* q (n floats) . k (n float16). */
static inline float lmq_dot_f16_simd(const float *q, const uint16_t *k, int32_t n) {
    __m256 acc = _mm256_setzero_ps();
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), acc);
    float s = lmq_hsum8(acc);
    for (; i < n; ++i) s += q[i] * lmq_h2f(k[i]);
    return s;
}

/* out (n) += p * v (n float16); lane i is the reference's out[i] + p * v[i] (no fused multiply-add). */
static inline void lmq_axpy_f16_simd(float p, const uint16_t *v, int32_t n, float *out) {
    const __m256 pv = _mm256_set1_ps(p);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 prod = _mm256_mul_ps(pv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))));
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), prod));
    }
    for (; i < n; ++i) out[i] += p * lmq_h2f(v[i]);
}

/* Attention: the reference (its dot products and axpys are already these SIMD kernels' scalar twins). */
static inline void lmq_attend_simd(const float *q, const uint16_t *k, const uint16_t *v, int32_t n, int32_t hd,
                                   float scale, float *s, float *out) {
    lmq_attend_ref(q, k, v, n, hd, scale, s, out);
}

#endif /* LMQ_X86_AVX2_H */
