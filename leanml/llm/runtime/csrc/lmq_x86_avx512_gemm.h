/*
 * lmq_x86_avx512_gemm.h -- the prefill GEMM on AVX-512 VNNI: a tile of R <= 4 weight rows x T <= 3 tokens.
 *
 * The decode GEMV (lmq_x86_avx512.h) unpacks each weight unit for one token; here each unit is loaded and unpacked
 * once for T tokens, whose activations and block scales stay in registers (acc 4 x 3, activations 3 x 4: 24 of the
 * 32 zmm registers). The float order per (row, token) is: per unit, lanes += isum * (d * s) (groups that are a
 * multiple of 128: lanes += (isum_lo * d_lo + isum_hi * d_hi) * s); then the zero points (one vector pass over the
 * groups) and the 4 rows' horizontal sums in one reduction.
 */
#ifndef LMQ_X86_AVX512_GEMM_H
#define LMQ_X86_AVX512_GEMM_H

#include "lmq_x86_avx512.h"

#define LMQ_GEMM_T 3 /* tokens per tile */

LMQ_INLINE void lmq_q4_gemm_tile(const lmq_qmat *w, int32_t o, const int R, const lmq_act *a, int32_t t0,
                                 const int T, const float *A, const int32_t *gidx, const int mode, float *y,
                                 int64_t ldy) {
    const int32_t kp = a->kp, nb = a->nb, ng = lmq_groups(w->k, w->group);
    const int32_t r0 = o & ~3, tr = w->n - r0 < 4 ? w->n - r0 : 4, ro = o - r0; /* 4-row tile (lmq.h) */
    const uint8_t *tile = w->q + (int64_t)r0 * (kp / 2);
    const uint16_t *sc[4];
    __m512 acc[4][LMQ_GEMM_T];
    for (int r = 0; r < R; ++r) {
        sc[r] = w->scales + (int64_t)(o + r) * ng;
        for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(15), zero = _mm512_setzero_si512();
    int32_t base = 0;
    for (; base + 128 <= kp; base += 128) {
        const int32_t b = base / LMQ_BLOCK;
        __m512i al[LMQ_GEMM_T], ah[LMQ_GEMM_T];
        __m512 dl[LMQ_GEMM_T], dh[LMQ_GEMM_T];
        for (int t = 0; t < T; ++t) {
            const int8_t *x = a->q + (int64_t)(t0 + t) * kp + base;
            const float *d8 = a->d8 + ((int64_t)(t0 + t) * nb + b) * 8;
            al[t] = _mm512_loadu_si512(x), ah[t] = _mm512_loadu_si512(x + 64);
            dl[t] = _mm512_loadu_ps(d8), dh[t] = _mm512_loadu_ps(d8 + 16);
        }
        for (int r = 0; r < R; ++r) {
            const __m512i wb = _mm512_loadu_si512(tile + (int64_t)base / 2 * tr + (ro + r) * 64);
            const __m512i wl = _mm512_and_si512(wb, m4), wh = _mm512_and_si512(_mm512_srli_epi16(wb, 4), m4);
            const __m512 sl = lmq_sc2(sc[r], gidx, b, mode);
            const __m512 sh = mode == 2 ? sl : lmq_sc2(sc[r], gidx, b + 2, mode);
            for (int t = 0; t < T; ++t) {
                const __m512 il = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, wl, al[t]));
                const __m512 ih = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, wh, ah[t]));
                if (mode == 2) { /* one group scale for the whole unit: scale the unit's sum once */
                    acc[r][t] = _mm512_fmadd_ps(_mm512_fmadd_ps(il, dl[t], _mm512_mul_ps(ih, dh[t])), sl, acc[r][t]);
                } else {
                    acc[r][t] = _mm512_fmadd_ps(il, _mm512_mul_ps(dl[t], sl), acc[r][t]);
                    acc[r][t] = _mm512_fmadd_ps(ih, _mm512_mul_ps(dh[t], sh), acc[r][t]);
                }
            }
        }
    }
    if (base + 64 <= kp) { /* a 64-unit: blocks b (low nibbles) and b + 1 (high), 256-bit lanes */
        const int32_t b = base / LMQ_BLOCK;
        const __m256i m4y = _mm256_set1_epi8(15), zy = _mm256_setzero_si256();
        for (int r = 0; r < R; ++r) {
            const __m256i wb = _mm256_loadu_si256((const __m256i *)(tile + (int64_t)base / 2 * tr + (ro + r) * 32));
            const __m256i wl = _mm256_and_si256(wb, m4y), wh = _mm256_and_si256(_mm256_srli_epi16(wb, 4), m4y);
            const __m256 sl = _mm256_set1_ps(lmq_h2f(sc[r][gidx[b]])), sh = _mm256_set1_ps(lmq_h2f(sc[r][gidx[b + 1]]));
            for (int t = 0; t < T; ++t) {
                const int8_t *x = a->q + (int64_t)(t0 + t) * kp + base;
                const float *d8 = a->d8 + ((int64_t)(t0 + t) * nb + b) * 8;
                const __m256 il = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(zy, wl, _mm256_loadu_si256((const __m256i *)x)));
                const __m256 ih =
                    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(zy, wh, _mm256_loadu_si256((const __m256i *)(x + 32))));
                const __m256 part = _mm256_fmadd_ps(ih, _mm256_mul_ps(_mm256_loadu_ps(d8 + 8), sh),
                                                    _mm256_mul_ps(il, _mm256_mul_ps(_mm256_loadu_ps(d8), sl)));
                acc[r][t] = _mm512_add_ps(acc[r][t], _mm512_zextps256_ps512(part));
            }
        }
        base += 64;
    }
    if (base + 32 <= kp) { /* a 32-unit: one block, low nibbles codes 0..15, high 16..31 */
        const int32_t b = base / LMQ_BLOCK;
        const __m128i m4x = _mm_set1_epi8(15);
        for (int r = 0; r < R; ++r) {
            const __m128i wb = _mm_loadu_si128((const __m128i *)(tile + (int64_t)base / 2 * tr + (ro + r) * 16));
            const __m256i wv = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(wb, m4x)),
                                                       _mm_and_si128(_mm_srli_epi16(wb, 4), m4x), 1);
            const __m256 sv = _mm256_set1_ps(lmq_h2f(sc[r][gidx[b]]));
            for (int t = 0; t < T; ++t) {
                const int8_t *x = a->q + (int64_t)(t0 + t) * kp + base;
                const float *d8 = a->d8 + ((int64_t)(t0 + t) * nb + b) * 8;
                const __m256 iv = _mm256_cvtepi32_ps(
                    _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, _mm256_loadu_si256((const __m256i *)x)));
                const __m256 part = _mm256_mul_ps(iv, _mm256_mul_ps(_mm256_loadu_ps(d8), sv));
                acc[r][t] = _mm512_add_ps(acc[r][t], _mm512_zextps256_ps512(part));
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        __m512 v[4];
        for (int r = 0; r < R; ++r) v[r] = acc[r][t];
        lmq_finish_rows(v, w, o, R, A + (int64_t)(t0 + t) * ng, ng, 0.0f, y + (int64_t)(t0 + t) * ldy);
    }
}

#define LMQ_GEMM_TOKENS(R, MODE)                                                                     \
    do {                                                                                             \
        int32_t t = 0;                                                                               \
        for (; t + LMQ_GEMM_T <= a->m; t += LMQ_GEMM_T)                                              \
            lmq_q4_gemm_tile(w, r0, R, a, t, LMQ_GEMM_T, A, gidx, MODE, y, ldy);                   \
        if (a->m - t == 2) lmq_q4_gemm_tile(w, r0, R, a, t, 2, A, gidx, MODE, y, ldy);               \
        else if (a->m - t == 1) lmq_q4_gemm_tile(w, r0, R, a, t, 1, A, gidx, MODE, y, ldy);          \
    } while (0)

/* Rows [r0, r1) (at most 4) of W times every activation row: y[t * ldy + o] (A: (m, groups) group sums). */
static inline void lmq_qgemm_simd(const lmq_qmat *w, int32_t r0, int32_t r1, const lmq_act *a, const float *A,
                                  const int32_t *gidx, float *y, int64_t ldy) {
    const int32_t ng = lmq_groups(w->k, w->group);
    if (w->bits != 4 || r1 - r0 != 4) { /* int8 weights and a last partial tile: the GEMV kernel per token */
        for (int32_t t = 0; t < a->m; ++t) lmq_qrows_simd(w, r0, r1, a, t, A + (int64_t)t * ng, gidx, y + t * ldy);
        return;
    }
    const int mode = w->group % 128 == 0 ? 2 : w->group % 64 == 0 ? 1 : 0;
    if (mode == 2) LMQ_GEMM_TOKENS(4, 2);
    else if (mode == 1) LMQ_GEMM_TOKENS(4, 1);
    else LMQ_GEMM_TOKENS(4, 0);
}

#endif /* LMQ_X86_AVX512_GEMM_H */
