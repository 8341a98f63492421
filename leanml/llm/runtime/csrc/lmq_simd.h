/*
 * lmq_simd.h -- the SIMD kernels this compilation targets, chosen at compile time (-march=native picks the best):
 *
 *   lmq_x86_avx512.h   AVX-512 F/BW/VL + VNNI: `vpdpbusd`, 16 lanes (+ lmq_x86_avx512_gemm.h: the prefill tile)
 *   lmq_x86_avx2.h     AVX2 + FMA + F16C: `vpmaddubsw` + `vpmaddwd`, 8 lanes
 *   (neither)          the unrolled scalar kernels of lmq_ref.h
 *
 * Each defines lmq_qrows_simd, lmq_quantize_row_simd, lmq_frows_simd, lmq_dot_f16_simd, lmq_axpy_f16_simd and lmq_attend_simd with the `_ref` twins'
 * signatures (lmq_qrows_simd also takes gidx, the group of each activation block), LMQ_SIMD_LEVEL and LMQ_SIMD_NAME;
 * lmq_qgemm_simd (4 rows x every token) is a register-tiled kernel on AVX-512, a loop over tokens elsewhere.
 */
#ifndef LMQ_SIMD_H
#define LMQ_SIMD_H

#include "lmq_ref.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include "lmq_x86_avx512_gemm.h"
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "lmq_x86_avx2.h"
#define LMQ_GEMM_PER_TOKEN
#else
#define LMQ_GEMM_PER_TOKEN
#define LMQ_SIMD_LEVEL 0
#define LMQ_SIMD_NAME "scalar"
static inline void lmq_qrows_simd(const lmq_qmat *w, int32_t r0, int32_t r1, const lmq_act *a, int32_t t,
                                  const float *A, const int32_t *gidx, float *y) {
    (void)gidx;
    lmq_qrows_unroll(w, r0, r1, a, t, A, y);
}
static inline void lmq_quantize_row_simd(const float *x, int32_t k, int8_t *q, float *d, float *d8, int32_t *s) {
    lmq_quantize_row_ref(x, k, q, d, d8, s);
}
static inline void lmq_frows_simd(const float *w, int32_t k, int32_t r0, int32_t r1, const float *x, float *y) {
    lmq_frows_unroll(w, k, r0, r1, x, y);
}
static inline float lmq_dot_f16_simd(const float *q, const uint16_t *k, int32_t n) { return lmq_dot_f16_ref(q, k, n); }
static inline void lmq_axpy_f16_simd(float p, const uint16_t *v, int32_t n, float *out) { lmq_axpy_f16_ref(p, v, n, out); }
static inline void lmq_attend_simd(const float *q, const uint16_t *k, const uint16_t *v, int32_t n, int32_t hd,
                                   float scale, float *s, float *out) {
    lmq_attend_ref(q, k, v, n, hd, scale, s, out);
}
#endif

#ifdef LMQ_GEMM_PER_TOKEN
/* Rows [r0, r1) times every activation row, one token at a time (A: (m, groups) group sums). */
static inline void lmq_qgemm_simd(const lmq_qmat *w, int32_t r0, int32_t r1, const lmq_act *a, const float *A,
                                  const int32_t *gidx, float *y, int64_t ldy) {
    const int32_t ng = lmq_groups(w->k, w->group);
    for (int32_t t = 0; t < a->m; ++t) lmq_qrows_simd(w, r0, r1, a, t, A + (int64_t)t * ng, gidx, y + t * ldy);
}
#endif

#endif /* LMQ_SIMD_H */
