/*
 * lmq_ref.h -- the plain scalar kernels (`_ref`), the definition every faster variant is tested against, and the
 * unrolled scalar variants (`_unroll`, the ladder's second rung: same float operations in the same order, so their
 * results equal the reference bit for bit). Formulas: lmq.h.
 */
#ifndef LMQ_REF_H
#define LMQ_REF_H

#include <math.h>
#include <string.h>

#include "lmq.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

/* float16 bits -> float (exact: F16C's vcvtph2ps where compiled in, else the compiler's _Float16 conversion,
 * which GCC 12 makes a libgcc call). */
static inline float lmq_h2f(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    _Float16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
#endif
}

/* float -> float16 bits, rounded to nearest even (F16C where compiled in, else _Float16). */
static inline uint16_t lmq_f2h(float f) {
#if defined(__F16C__)
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    const _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, sizeof u);
    return u;
#endif
}

/* Size in codes of the unit starting at code `base` of a padded row of kp codes (lmq.h): int4 rows are cut into
 * units of 128, then at most one of 64 and one of 32; int8 rows into units of 64, then at most one of 32. */
static inline int32_t lmq_unit_size(int32_t bits, int32_t kp, int32_t base) {
    const int32_t big = bits == 4 ? 128 : 64;
    return base + big <= kp ? big : base + 64 <= kp ? 64 : 32;
}

/* Address of row o's bytes of the unit starting at code `base` (u codes): rows are stored in tiles of 4 (the last
 * tile holds n % 4 rows when 4 does not divide n), a tile unit by unit, each unit row by row. */
static inline const uint8_t *lmq_unit_ptr(const lmq_qmat *w, int32_t o, int32_t base, int32_t u) {
    const int32_t t0 = o & ~3, rows = w->n - t0 < 4 ? w->n - t0 : 4;
    const int64_t tile = (int64_t)t0 * lmq_row_bytes(w->k, w->bits);
    return w->q + tile + (int64_t)base * w->bits / 8 * rows + (int64_t)(o - t0) * u * w->bits / 8;
}

/* Code i of row o (the reference's way in: find i's unit, then its byte and nibble). */
static inline int32_t lmq_code(const lmq_qmat *w, int32_t o, int32_t kp, int32_t i) {
    const int32_t big = w->bits == 4 ? 128 : 64, full = kp / big * big;
    int32_t base = i / big * big, u = big;
    if (i >= full) { /* the tail: int4 may have a unit of 64 then one of 32; int8 one of 32 */
        const int32_t with64 = big == 128 && kp - full >= 64;
        base = with64 && i - full < 64 ? full : full + (with64 ? 64 : 0);
        u = with64 && i - full < 64 ? 64 : 32;
    }
    const uint8_t *p = lmq_unit_ptr(w, o, base, u);
    const int32_t j = i - base, h = u / 2;
    if (w->bits == 8) return p[j];
    return j < h ? p[j] & 15 : p[j - h] >> 4;
}

/* One row x (k) -> codes q (kp), block scales d (nb), lanes d8 (nb * 8), block sums s (nb). */
static inline void lmq_quantize_row_ref(const float *x, int32_t k, int8_t *q, float *d, float *d8, int32_t *s) {
    const int32_t nb = lmq_kp(k) / LMQ_BLOCK;
    for (int32_t b = 0; b < nb; ++b) {
        const int32_t i0 = b * LMQ_BLOCK, i1 = i0 + LMQ_BLOCK < k ? i0 + LMQ_BLOCK : k;
        float amax = 0.0f;
        for (int32_t i = i0; i < i1; ++i) amax = fmaxf(amax, fabsf(x[i]));
        const float scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        int32_t sum = 0;
        for (int32_t i = i0; i < i0 + LMQ_BLOCK; ++i) {
            int32_t v = 0;
            if (i < i1) {
                const float r = nearbyintf(x[i] * inv); /* round half to even, as the SIMD conversions do */
                if (r == r) v = r > 127.0f ? 127 : r < -127.0f ? -127 : (int32_t)r; /* NaN input: 0 */
            }
            q[i] = (int8_t)v;
            sum += v;
        }
        d[b] = scale;
        s[b] = sum;
        for (int32_t l = 0; l < 8; ++l) d8[b * 8 + l] = scale;
    }
}

/* A[G] = sum_{b in G} d[b] * s[b] for each group G of one activation row (blocks in order). */
static inline void lmq_group_sums(const float *d, const int32_t *s, int32_t nb, int32_t group, float *A) {
    const int32_t per = group / LMQ_BLOCK, ng = (nb + per - 1) / per;
    for (int32_t g = 0; g < ng; ++g) {
        float acc = 0.0f;
        for (int32_t b = g * per; b < (g + 1) * per && b < nb; ++b) acc += d[b] * (float)s[b];
        A[g] = acc;
    }
}

/* y = row o of W . activation row t: the reference order of float operations (lmq.h). */
static inline float lmq_qdot_ref(const lmq_qmat *w, int32_t o, const lmq_act *a, int32_t t, const float *A) {
    const int32_t kp = a->kp, nb = a->nb, per = w->group / LMQ_BLOCK, ng = lmq_groups(w->k, w->group);
    const int8_t *x = a->q + (int64_t)t * kp;
    const float *d = a->d + (int64_t)t * nb;
    float y = 0.0f;
    for (int32_t g = 0; g < ng; ++g) {
        float p = 0.0f;
        for (int32_t b = g * per; b < (g + 1) * per && b < nb; ++b) {
            int32_t isum = 0;
            for (int32_t i = b * LMQ_BLOCK; i < (b + 1) * LMQ_BLOCK; ++i) isum += lmq_code(w, o, kp, i) * x[i];
            p += d[b] * (float)isum;
        }
        const int64_t gi = (int64_t)o * ng + g;
        y += lmq_h2f(w->scales[gi]) * (p - (float)w->zeros[gi] * A[g]);
    }
    return w->bias ? y + w->bias[o] : y;
}

/* Rows [r0, r1) of W times activation row t into y[r0 .. r1): plain reference. */
static inline void lmq_qrows_ref(const lmq_qmat *w, int32_t r0, int32_t r1, const lmq_act *a, int32_t t,
                                 const float *A, float *y) {
    for (int32_t o = r0; o < r1; ++o) y[o] = lmq_qdot_ref(w, o, a, t, A);
}

/* Block integer sums of 4 rows over one int4 unit starting at code `base` (u codes: 128, 64 or 32). */
static inline void lmq_unit4_isums(const uint8_t *const *units, int32_t base, int32_t u, const int8_t *x,
                                   int32_t isum[4][4]) {
    const int32_t h = u / 2;
    for (int32_t r = 0; r < 4; ++r) {
        const uint8_t *p = units[r];
        int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;  /* blocks base/32 + 0 .. 3 */
        for (int32_t j = 0; j < h; j += 4) {      /* unrolled by 4 codes; h is 16, 32 or 64 */
            const int32_t l0 = (p[j] & 15) * x[base + j] + (p[j + 1] & 15) * x[base + j + 1] +
                               (p[j + 2] & 15) * x[base + j + 2] + (p[j + 3] & 15) * x[base + j + 3];
            const int32_t h0 = (p[j] >> 4) * x[base + h + j] + (p[j + 1] >> 4) * x[base + h + j + 1] +
                               (p[j + 2] >> 4) * x[base + h + j + 2] + (p[j + 3] >> 4) * x[base + h + j + 3];
            if (u == 32) {
                s0 += l0 + h0;
            } else if (j < 32) {
                s0 += l0;
                if (u == 64) s1 += h0; else s2 += h0;
            } else {
                s1 += l0;
                s3 += h0;
            }
        }
        isum[r][0] = s0, isum[r][1] = s1, isum[r][2] = s2, isum[r][3] = s3;
    }
}

/* Rows [r0, r1) times activation row t, 4 rows at a time, integer sums per unit: the reference's float order. */
static inline void lmq_qrows_unroll(const lmq_qmat *w, int32_t r0, int32_t r1, const lmq_act *a, int32_t t,
                                    const float *A, float *y) {
    const int32_t kp = a->kp, nb = a->nb, per = w->group / LMQ_BLOCK, ng = lmq_groups(w->k, w->group);
    const int8_t *x = a->q + (int64_t)t * kp;
    const float *d = a->d + (int64_t)t * nb;
    int32_t o = r0;
    for (; o + 4 <= r1 && w->bits == 4; o += 4) {
        float acc[4] = {0, 0, 0, 0}, p[4] = {0, 0, 0, 0};
        int32_t base = 0;
        while (base < kp) {
            const int32_t u = lmq_unit_size(4, kp, base);
            const uint8_t *units[4] = {lmq_unit_ptr(w, o, base, u), lmq_unit_ptr(w, o + 1, base, u),
                                       lmq_unit_ptr(w, o + 2, base, u), lmq_unit_ptr(w, o + 3, base, u)};
            int32_t isum[4][4];
            lmq_unit4_isums(units, base, u, x, isum);
            for (int32_t bb = 0; bb < u / LMQ_BLOCK; ++bb) {
                const int32_t b = base / LMQ_BLOCK + bb;
                for (int32_t r = 0; r < 4; ++r) p[r] += d[b] * (float)isum[r][bb];
                if ((b + 1) % per == 0 || b + 1 == nb) { /* the block ends group b / per */
                    const int32_t g = b / per;
                    for (int32_t r = 0; r < 4; ++r) {
                        const int64_t gi = (int64_t)(o + r) * ng + g;
                        acc[r] += lmq_h2f(w->scales[gi]) * (p[r] - (float)w->zeros[gi] * A[g]);
                        p[r] = 0.0f;
                    }
                }
            }
            base += u;
        }
        for (int32_t r = 0; r < 4; ++r) y[o + r] = w->bias ? acc[r] + w->bias[o + r] : acc[r];
    }
    for (; o + 4 <= r1 && w->bits == 8; o += 4) { /* int8: 4 rows, 4 codes per step, integer sums per block */
        float acc[4] = {0, 0, 0, 0}, p[4] = {0, 0, 0, 0};
        for (int32_t base = 0; base < kp;) {
            const int32_t u = lmq_unit_size(8, kp, base);
            for (int32_t bb = 0; bb < u / LMQ_BLOCK; ++bb) {
                const int32_t b = base / LMQ_BLOCK + bb;
                for (int32_t r = 0; r < 4; ++r) {
                    const uint8_t *q = lmq_unit_ptr(w, o + r, base, u) + bb * LMQ_BLOCK;
                    const int8_t *xb = x + b * LMQ_BLOCK;
                    int32_t isum = 0;
                    for (int32_t j = 0; j < LMQ_BLOCK; j += 4)
                        isum += q[j] * xb[j] + q[j + 1] * xb[j + 1] + q[j + 2] * xb[j + 2] + q[j + 3] * xb[j + 3];
                    p[r] += d[b] * (float)isum;
                }
                if ((b + 1) % per == 0 || b + 1 == nb) {
                    const int32_t g = b / per;
                    for (int32_t r = 0; r < 4; ++r) {
                        const int64_t gi = (int64_t)(o + r) * ng + g;
                        acc[r] += lmq_h2f(w->scales[gi]) * (p[r] - (float)w->zeros[gi] * A[g]);
                        p[r] = 0.0f;
                    }
                }
            }
            base += u;
        }
        for (int32_t r = 0; r < 4; ++r) y[o + r] = w->bias ? acc[r] + w->bias[o + r] : acc[r];
    }
    lmq_qrows_ref(w, o, r1, a, t, A, y);
}

/* Float rows [r0, r1) of W (n, k) times x (k): reference (one running sum per row, in order). */
static inline void lmq_frows_ref(const float *w, int32_t k, int32_t r0, int32_t r1, const float *x, float *y) {
    for (int32_t o = r0; o < r1; ++o) {
        const float *row = w + (int64_t)o * k;
        float acc = 0.0f;
        for (int32_t i = 0; i < k; ++i) acc += row[i] * x[i];
        y[o] = acc;
    }
}

/* The same, 4 rows per pass over x (same order of additions per row: equal to the reference). */
static inline void lmq_frows_unroll(const float *w, int32_t k, int32_t r0, int32_t r1, const float *x, float *y) {
    int32_t o = r0;
    for (; o + 4 <= r1; o += 4) {
        const float *a = w + (int64_t)o * k, *b = a + k, *c = b + k, *e = c + k;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (int32_t i = 0; i < k; ++i) {
            const float v = x[i];
            s0 += a[i] * v, s1 += b[i] * v, s2 += c[i] * v, s3 += e[i] * v;
        }
        y[o] = s0, y[o + 1] = s1, y[o + 2] = s2, y[o + 3] = s3;
    }
    lmq_frows_ref(w, k, o, r1, x, y);
}

/* Dot product of q (n floats) with k (n float16): reference, in order. */
static inline float lmq_dot_f16_ref(const float *q, const uint16_t *k, int32_t n) {
    float acc = 0.0f;
    for (int32_t i = 0; i < n; ++i) acc += q[i] * lmq_h2f(k[i]);
    return acc;
}

/* out (n) += p * v (n float16): reference. */
static inline void lmq_axpy_f16_ref(float p, const uint16_t *v, int32_t n, float *out) {
    for (int32_t i = 0; i < n; ++i) out[i] += p * lmq_h2f(v[i]);
}

/* One attention head: out (hd) = softmax(q . k_j * scale, j < n) . v_j, keys and values (n, hd) float16; s: (n,)
 * scratch for the scores. Reference: scores in order, expf, then out accumulated position by position. */
static inline void lmq_attend_ref(const float *q, const uint16_t *k, const uint16_t *v, int32_t n, int32_t hd,
                                  float scale, float *s, float *out) {
    float mx = -INFINITY, sum = 0.0f;
    for (int32_t j = 0; j < n; ++j) {
        s[j] = lmq_dot_f16_ref(q, k + (int64_t)j * hd, hd) * scale;
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int32_t j = 0; j < n; ++j) sum += (s[j] = expf(s[j] - mx));
    for (int32_t i = 0; i < hd; ++i) out[i] = 0.0f;
    for (int32_t j = 0; j < n; ++j) lmq_axpy_f16_ref(s[j], v + (int64_t)j * hd, hd, out);
    const float inv = 1.0f / sum;
    for (int32_t i = 0; i < hd; ++i) out[i] *= inv;
}

#endif /* LMQ_REF_H */
