/*
 * leanml_kernels_x86_avx2.h -- the AVX2 backend of leanml_kernels_simd.h: 8 int32 lanes, int16 activations.
 * Included by leanml_kernels_x86.h (see it for the integer algebra); include leanml_kernels.h, not this file.
 * The functions have the contracts documented in leanml_kernels_x86_avx512.h; only the differences are commented.
 */
#ifndef LEANML_KERNELS_X86_AVX2_H
#define LEANML_KERNELS_X86_AVX2_H

#define DK_SIMD_ISA "x86-avx2"
#define DK_SIMD_LANES 8
typedef __m256i dk_vec_t;
typedef int16_t dk_act_t; /* im2col element: x - in_zp */
#define DK_SIMD_ROW_ALIGN 16 /* the dot-product kernels read rows in vectors of 16 */
#define DK_SIMD_PANEL_ROW_ALIGN 2 /* the broadcast kernels read rows in int16 pairs */

static inline dk_vec_t dk_v_set1(int32_t v) { return _mm256_set1_epi32(v); }
static inline dk_vec_t dk_v_add(dk_vec_t a, dk_vec_t b) { return _mm256_add_epi32(a, b); }
static inline dk_vec_t dk_v_sub(dk_vec_t a, dk_vec_t b) { return _mm256_sub_epi32(a, b); }
static inline dk_vec_t dk_v_max(dk_vec_t a, dk_vec_t b) { return _mm256_max_epi32(a, b); }
static inline dk_vec_t dk_v_min(dk_vec_t a, dk_vec_t b) { return _mm256_min_epi32(a, b); }
static inline dk_vec_t dk_v_shl_add(dk_vec_t a) { return _mm256_slli_epi32(a, DK_ADD_LEFT_SHIFT); }
static inline dk_vec_t dk_v_load_i32(const int32_t *p, int n) {
    if (n >= 8) return _mm256_loadu_si256((const __m256i *)p);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_epi32(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane));
}
static inline dk_vec_t dk_v_load_s8(const int8_t *p, int n) {
    if (n >= 8) return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    int8_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; ++i) t[i] = p[i];
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)t));
}
static inline void dk_v_store_s8(int8_t *p, dk_vec_t v, int n) {
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    const __m128i b = _mm_packs_epi16(w16, w16); /* values already in [-128, 127]: no saturation */
    if (n >= 8) {
        _mm_storel_epi64((__m128i *)p, b);
        return;
    }
    int8_t t[16];
    _mm_storeu_si128((__m128i *)t, b);
    for (int i = 0; i < n; ++i) p[i] = t[i];
}

typedef struct {
    __m256i mult, mult_odd, left, right, mask, half, sat;
    int any_left, any_sat;
} dk_rq_t;

static inline dk_rq_t dk_x86_rq(__m256i mult, __m256i shift) {
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    dk_rq_t q;
    q.mult = mult;
    q.mult_odd = _mm256_srli_epi64(mult, 32);
    q.left = _mm256_max_epi32(shift, zero);
    q.right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
    q.mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, q.right), one);
    q.half = _mm256_srli_epi32(q.mask, 1);
    q.sat = _mm256_cmpeq_epi32(mult, _mm256_set1_epi32(INT32_MIN));
    q.any_left = !_mm256_testz_si256(q.left, q.left);
    q.any_sat = !_mm256_testz_si256(q.sat, q.sat);
    return q;
}
static inline dk_rq_t dk_rq_load(const int32_t *mult, const int32_t *shift, int n) {
    return dk_x86_rq(dk_v_load_i32(mult, n), dk_v_load_i32(shift, n));
}
static inline dk_rq_t dk_rq_set1(int32_t mult, int32_t shift) { return dk_x86_rq(dk_v_set1(mult), dk_v_set1(shift)); }

static inline dk_vec_t dk_v_mul_multiplier(dk_vec_t x, const dk_rq_t *q) {
    const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30), min = _mm256_set1_epi32(INT32_MIN);
    if (q->any_left) x = _mm256_sllv_epi32(x, q->left);
    const __m256i even = _mm256_add_epi64(_mm256_mul_epi32(x, q->mult), nudge);
    const __m256i odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), q->mult_odd), nudge);
    __m256i h = _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_add_epi64(odd, odd), 0xAA);
    if (q->any_sat)
        h = _mm256_blendv_epi8(h, _mm256_set1_epi32(INT32_MAX), _mm256_and_si256(_mm256_cmpeq_epi32(x, min), q->sat));
    const __m256i thr = _mm256_sub_epi32(q->half, _mm256_srai_epi32(h, 31));
    const __m256i r = _mm256_srav_epi32(h, q->right);
    return _mm256_sub_epi32(r, _mm256_cmpgt_epi32(_mm256_and_si256(h, q->mask), thr)); /* true lanes are -1 */
}

/* dk_v_mul_multiplier for constants without left shifts or INT32_MIN multipliers (!q->any_left && !q->any_sat: the
 * caller checked once per block, not per vector). */
static inline dk_vec_t dk_v_mul_multiplier_rs(dk_vec_t x, const dk_rq_t *q) {
    const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i even = _mm256_add_epi64(_mm256_mul_epi32(x, q->mult), nudge);
    const __m256i odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), q->mult_odd), nudge);
    const __m256i h = _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_add_epi64(odd, odd), 0xAA);
    const __m256i thr = _mm256_sub_epi32(q->half, _mm256_srai_epi32(h, 31));
    const __m256i r = _mm256_srav_epi32(h, q->right);
    return _mm256_sub_epi32(r, _mm256_cmpgt_epi32(_mm256_and_si256(h, q->mask), thr));
}

static inline dk_vec_t dk_v_dw_weight(const int8_t *w, int n) {
    return _mm256_and_si256(dk_v_load_s8(w, n), _mm256_set1_epi32(0xFFFF));
}
static inline dk_vec_t dk_v_dw_mac(dk_vec_t acc, dk_vec_t x, dk_vec_t wv) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, wv));
}
static inline dk_vec_t dk_v_load_i16(const int16_t *p) {
    return _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)p));
}
static inline dk_vec_t dk_v_bcast_pair(const int16_t *p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}
static inline void dk_simd_stage_px(int16_t *dst, const int8_t *src, int n, int32_t zp) {
    if (n >= 8) {
        const __m128i x = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)src));
        _mm_storeu_si128((__m128i *)dst, _mm_sub_epi16(x, _mm_set1_epi16((int16_t)zp)));
    } else {
        for (int i = 0; i < 8; ++i) dst[i] = (int16_t)(i < n ? src[i] - zp : 0);
    }
}

/* im2col pieces: dst[0..n) = src - zp (int16); dst[0..n) = 0 (the padding value in_zp, minus in_zp). */
static inline void dk_simd_act_copy(dk_act_t *dst, const int8_t *src, int32_t n, int32_t zp) {
    const __m256i z = _mm256_set1_epi16((int16_t)zp);
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i x = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_sub_epi16(x, z));
    }
    if (i + 8 <= n) {
        const __m128i x = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(src + i)));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_sub_epi16(x, _mm256_castsi256_si128(z)));
        i += 8;
    }
    for (; i < n; ++i) dst[i] = (int16_t)(src[i] - zp);
}
static inline void dk_simd_act_fill(dk_act_t *dst, int32_t n, int32_t zp) {
    (void)zp;
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(dst + i), _mm_setzero_si128());
    for (; i < n; ++i) dst[i] = 0;
}
/* A finished im2col row of n elements: zeros up to the next multiple of 16 (the GEMM reads whole vectors). */
static inline void dk_simd_act_pad(dk_act_t *row, int32_t n) {
    const int32_t end = (n + 15) / 16 * 16;
    if (end - n >= 8) { /* two overlapping stores of 8 inside [n, end) */
        _mm_storeu_si128((__m128i *)(row + n), _mm_setzero_si128());
        _mm_storeu_si128((__m128i *)(row + end - 8), _mm_setzero_si128());
        return;
    }
    for (int32_t i = n; i < end; ++i) row[i] = 0;
}

/* 8 vectors -> one: lane i = sum of the 8 lanes of v[i]. */
static inline __m256i dk_x86_reduce8(const __m256i *v) {
    const __m256i g0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i g1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20), _mm256_permute2x128_si256(g0, g1, 0x31));
}

/* The last t (1..15) weights of a row ending at w[k) (k = kk + t) sign-extended to int16, zeros after them: rows
 * of at least 16 bytes load the 16 bytes ending at k and shuffle them down; shorter ones are assembled in two
 * 64-bit words (no call, no stack copy: the callers' accumulators stay in registers). */
static inline __m256i dk_x86_w16_tail(const int8_t *w, int32_t kk, int32_t k) {
    const int t = (int)(k - kk);
    if (k >= 16) {
        const __m128i iota = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m128i ctl = _mm_or_si128(_mm_add_epi8(iota, _mm_set1_epi8((char)(16 - t))),
                                         _mm_cmpgt_epi8(iota, _mm_set1_epi8((char)(t - 1)))); /* >= t: 0x80, zero */
        return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(w + k - 16)), ctl));
    }
    uint64_t lo = 0, hi = 0;
    int i = 0;
    if (t >= 8) { /* one 8-byte word (e.g. the whole row of an 8-input layer) */
        __builtin_memcpy(&lo, w + kk, 8);
        i = 8;
    }
    for (; i < t; ++i) {
        const uint64_t b = (uint8_t)w[kk + i];
        if (i < 8)
            lo |= b << (8 * i);
        else
            hi |= b << (8 * (i - 8));
    }
    return _mm256_cvtepi8_epi16(_mm_set_epi64x((long long)hi, (long long)lo));
}
static inline __m256i dk_x86_w16(const int8_t *w, int32_t kk) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + kk)));
}

/* 2 x 4 dot products: lane p * 4 + r = sum_k a[p][k] * w[r][k] (a rows zero-padded to a multiple of 16). Whole
 * 16-weight steps in the loop, a row's tail after it. */
DK_KERNEL __m256i dk_x86_dot2x4(const int16_t *a0, const int16_t *a1, const int8_t *const *w, int32_t k) {
    __m256i c[8];
    const int8_t *wr[4];
    DK_UNROLL
    for (int i = 0; i < 8; ++i) c[i] = _mm256_setzero_si256();
    DK_UNROLL
    for (int r = 0; r < 4; ++r) wr[r] = w[r];
    int32_t kk = 0;
    for (; kk + 16 <= k; kk += 16) {
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(a0 + kk));
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(a1 + kk));
        DK_UNROLL
        for (int r = 0; r < 4; ++r) {
            const __m256i y = dk_x86_w16(wr[r], kk);
            c[r] = _mm256_add_epi32(c[r], _mm256_madd_epi16(x0, y));
            c[4 + r] = _mm256_add_epi32(c[4 + r], _mm256_madd_epi16(x1, y));
        }
    }
    if (kk < k) {
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(a0 + kk));
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(a1 + kk));
        DK_UNROLL
        for (int r = 0; r < 4; ++r) {
            const __m256i y = dk_x86_w16_tail(wr[r], kk, k);
            c[r] = _mm256_add_epi32(c[r], _mm256_madd_epi16(x0, y));
            c[4 + r] = _mm256_add_epi32(c[4 + r], _mm256_madd_epi16(x1, y));
        }
    }
    return dk_x86_reduce8(c);
}

/* 1 x 8 dot products: lane r = sum_k a[k] * w[r][k]. */
DK_KERNEL __m256i dk_x86_dot1x8(const int16_t *a, const int8_t *const *w, int32_t k) {
    __m256i c[8];
    const int8_t *wr[8];
    DK_UNROLL
    for (int i = 0; i < 8; ++i) c[i] = _mm256_setzero_si256();
    DK_UNROLL
    for (int r = 0; r < 8; ++r) wr[r] = w[r];
    int32_t kk = 0;
    for (; kk + 32 <= k; kk += 32) { /* two steps per iteration, the sums of each step added first */
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(a + kk));
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(a + kk + 16));
        DK_UNROLL
        for (int r = 0; r < 8; ++r)
            c[r] = _mm256_add_epi32(c[r], _mm256_add_epi32(_mm256_madd_epi16(x0, dk_x86_w16(wr[r], kk)),
                                                           _mm256_madd_epi16(x1, dk_x86_w16(wr[r], kk + 16))));
    }
    for (; kk + 16 <= k; kk += 16) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(a + kk));
        DK_UNROLL
        for (int r = 0; r < 8; ++r) c[r] = _mm256_add_epi32(c[r], _mm256_madd_epi16(x, dk_x86_w16(wr[r], kk)));
    }
    if (kk < k) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(a + kk));
        DK_UNROLL
        for (int r = 0; r < 8; ++r) c[r] = _mm256_add_epi32(c[r], _mm256_madd_epi16(x, dk_x86_w16_tail(wr[r], kk, k)));
    }
    return dk_x86_reduce8(c);
}

/* Packed weights of one GEMM chunk for the broadcast kernel, as int8 pairs (sign-extended to int16 when loaded):
 *   w[((q * R + r) * 8 + l) * 2 + b] = w[8 r + l][2 q + b]    (R = ceil(nco / 8), q < ceil(k / 2); 0 past k and nco)
 * so one 16-byte load holds the (2q, 2q + 1) pairs of 8 channels, against which `vpmaddwd` multiplies a broadcast
 * activation pair: no horizontal sums. Packing is one 8 x 8 transpose of 16-bit pairs per 128 weight bytes: worth
 * it from 2 pixels on (1: the dot-product kernels). 72 KiB of stack at the longest K. */
#define DK_X86_PANEL_K 1152 /* longest K packed: a 3x3 kernel over 128 channels */
typedef struct {
    int8_t w[64 * DK_X86_PANEL_K];
    int r;
} dk_panel_t;

/* 16 bytes of a weight row from w[kk..), zeros past k. */
static inline __m128i dk_x86_row16(const int8_t *w, int32_t kk, int32_t k) {
    if (kk + 16 <= k) return _mm_loadu_si128((const __m128i *)(w + kk));
    int8_t b[16] = {0};
    for (int32_t i = kk; i < k; ++i) b[i - kk] = w[i];
    return _mm_loadu_si128((const __m128i *)b);
}

/* Pack rows w[j * k ...] (j < nco <= 64) into pn for n_pix output pixels; 0 (use the dot-product kernels) when k
 * exceeds DK_X86_PANEL_K or there is a single pixel (a GEMV: the dot-product kernels read the weights once). */
static inline int dk_simd_pack(dk_panel_t *pn, const int8_t *w, int32_t k, int nco, int32_t n_pix) {
    if (k > DK_X86_PANEL_K || n_pix < 2) return 0;
    const int r_n = (nco + 7) / 8;
    const int32_t q_n = (k + 1) / 2;
    pn->r = r_n;
    for (int r = 0; r < r_n; ++r) {
        const int8_t *base = w + (int32_t)8 * r * k;
        int32_t q0 = 0;
        if (8 * r + 8 <= nco) /* whole blocks of 8 rows x 32 bytes: two 8 x 8 transposes per instruction */
            for (; 2 * q0 + 32 <= k; q0 += 16) {
                __m256i a[8], t[8], u[8];
                DK_UNROLL
                for (int l = 0; l < 8; ++l) a[l] = _mm256_loadu_si256((const __m256i *)(base + l * k + 2 * q0));
                DK_UNROLL
                for (int i = 0; i < 4; ++i) {
                    t[2 * i] = _mm256_unpacklo_epi16(a[2 * i], a[2 * i + 1]);
                    t[2 * i + 1] = _mm256_unpackhi_epi16(a[2 * i], a[2 * i + 1]);
                }
                DK_UNROLL
                for (int h = 0; h < 2; ++h) {
                    u[4 * h] = _mm256_unpacklo_epi32(t[4 * h], t[4 * h + 2]);
                    u[4 * h + 1] = _mm256_unpackhi_epi32(t[4 * h], t[4 * h + 2]);
                    u[4 * h + 2] = _mm256_unpacklo_epi32(t[4 * h + 1], t[4 * h + 3]);
                    u[4 * h + 3] = _mm256_unpackhi_epi32(t[4 * h + 1], t[4 * h + 3]);
                }
                DK_UNROLL
                for (int j = 0; j < 4; ++j) { /* 128-bit lane 0: pairs q0 + j; lane 1: pairs q0 + 8 + j */
                    a[2 * j] = _mm256_unpacklo_epi64(u[j], u[4 + j]);
                    a[2 * j + 1] = _mm256_unpackhi_epi64(u[j], u[4 + j]);
                }
                DK_UNROLL
                for (int j = 0; j < 8; ++j) {
                    _mm_storeu_si128((__m128i *)(pn->w + ((q0 + j) * r_n + r) * 16), _mm256_castsi256_si128(a[j]));
                    _mm_storeu_si128((__m128i *)(pn->w + ((q0 + 8 + j) * r_n + r) * 16), _mm256_extracti128_si256(a[j], 1));
                }
            }
        for (; q0 < q_n; q0 += 8) { /* rows 8r.. x bytes [2 q0, 2 q0 + 16): an 8 x 8 pair transpose */
            __m128i a[8], t[8], u[8];
            DK_UNROLL
            for (int l = 0; l < 8; ++l) a[l] = 8 * r + l < nco ? dk_x86_row16(base + l * k, 2 * q0, k) : _mm_setzero_si128();
            DK_UNROLL
            for (int i = 0; i < 4; ++i) {
                t[2 * i] = _mm_unpacklo_epi16(a[2 * i], a[2 * i + 1]);
                t[2 * i + 1] = _mm_unpackhi_epi16(a[2 * i], a[2 * i + 1]);
            }
            DK_UNROLL
            for (int h = 0; h < 2; ++h) { /* rows 4h..4h+3: u[4h + j] = pairs 2j, 2j + 1 */
                u[4 * h] = _mm_unpacklo_epi32(t[4 * h], t[4 * h + 2]);
                u[4 * h + 1] = _mm_unpackhi_epi32(t[4 * h], t[4 * h + 2]);
                u[4 * h + 2] = _mm_unpacklo_epi32(t[4 * h + 1], t[4 * h + 3]);
                u[4 * h + 3] = _mm_unpackhi_epi32(t[4 * h + 1], t[4 * h + 3]);
            }
            DK_UNROLL
            for (int j = 0; j < 4; ++j) {
                a[2 * j] = _mm_unpacklo_epi64(u[j], u[4 + j]);
                a[2 * j + 1] = _mm_unpackhi_epi64(u[j], u[4 + j]);
            }
            for (int j = 0; j < 8 && q0 + j < q_n; ++j)
                _mm_storeu_si128((__m128i *)(pn->w + ((q0 + j) * r_n + r) * 16), a[j]);
        }
    }
    return 1;
}
static inline void dk_simd_offsets(const dk_panel_t *pn, const int8_t *w, int32_t k, int nco, const int32_t *bias,
                                   int32_t zp, int32_t *off) {
    (void)pn, (void)w, (void)k, (void)zp; /* activations are already x - in_zp: the offsets are the biases */
    for (int j = 0; j < nco; ++j) off[j] = bias ? bias[j] : 0;
}

/* Broadcast kernel: NP (1..4) rows x RR (1 or 2) vectors of 8 channels from a panel whose rows are rs bytes
 * (R * 16) per pair index q: acc[p * accs + 8 r + l] = sum_k x[p][k] * w[8 r + l][k] (rows zero-padded to an even
 * length). One specialized copy per (NP, RR): the accumulators stay in registers. */
static inline __attribute__((always_inline)) void dk_x86_bcast(const int16_t *const *x, const int8_t *pw, int np,
                                                               int rr, int32_t rs, int32_t q_n, int32_t *acc,
                                                               int accs) {
    __m256i c[4][2];
    DK_UNROLL
    for (int p = 0; p < np; ++p)
        DK_UNROLL
        for (int r = 0; r < rr; ++r) c[p][r] = _mm256_setzero_si256();
    _Pragma("GCC unroll 2")
    for (int32_t q = 0; q < q_n; ++q) {
        __m256i wv[2];
        DK_UNROLL
        for (int r = 0; r < rr; ++r) wv[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(pw + q * rs + 16 * r)));
        DK_UNROLL
        for (int p = 0; p < np; ++p) {
            int32_t v;
            __builtin_memcpy(&v, x[p] + 2 * q, 4);
            const __m256i xb = _mm256_set1_epi32(v);
            DK_UNROLL
            for (int r = 0; r < rr; ++r) c[p][r] = _mm256_add_epi32(c[p][r], _mm256_madd_epi16(xb, wv[r]));
        }
    }
    DK_UNROLL
    for (int p = 0; p < np; ++p)
        DK_UNROLL
        for (int r = 0; r < rr; ++r) _mm256_storeu_si256((__m256i *)(acc + (ptrdiff_t)p * accs + 8 * r), c[p][r]);
}
#define DK_X86_BCAST(NP, RR)                                                                                       \
    DK_KERNEL void dk_x86_bcast##NP##x##RR(const int16_t *const *x, const int8_t *pw, int32_t rs, int32_t q_n,      \
                                           int32_t *acc, int accs) {                                               \
        dk_x86_bcast(x, pw, NP, RR, rs, q_n, acc, accs);                                                           \
    }
DK_X86_BCAST(1, 1)
DK_X86_BCAST(1, 2)
DK_X86_BCAST(2, 1)
DK_X86_BCAST(2, 2)
DK_X86_BCAST(3, 1)
DK_X86_BCAST(3, 2)
DK_X86_BCAST(4, 1)
DK_X86_BCAST(4, 2)
#undef DK_X86_BCAST

/* As the AVX-512 dk_simd_gemm; acc rows need room for nco rounded up to 8. */
static inline void dk_simd_gemm(const dk_act_t *const *x, int np, int32_t nk, const int8_t *w, int32_t ws, int nco,
                                const dk_panel_t *pn, int32_t *acc, int accs, int accumulate) {
    const int8_t *wr[8];
    int p = 0;
    if (pn) { /* the whole k, one chunk: never accumulated */
        const int32_t rs = (int32_t)pn->r * 16, q_n = (nk + 1) / 2;
        for (int r0 = 0; r0 < pn->r; r0 += 2) {
            const int8_t *pw = pn->w + 16 * r0;
            int32_t *a = acc + 8 * r0;
            switch ((np - 1) * 2 + (pn->r - r0 >= 2)) { /* rows 1..4 x 1 or 2 vectors */
            case 0: dk_x86_bcast1x1(x, pw, rs, q_n, a, accs); break;
            case 1: dk_x86_bcast1x2(x, pw, rs, q_n, a, accs); break;
            case 2: dk_x86_bcast2x1(x, pw, rs, q_n, a, accs); break;
            case 3: dk_x86_bcast2x2(x, pw, rs, q_n, a, accs); break;
            case 4: dk_x86_bcast3x1(x, pw, rs, q_n, a, accs); break;
            case 5: dk_x86_bcast3x2(x, pw, rs, q_n, a, accs); break;
            case 6: dk_x86_bcast4x1(x, pw, rs, q_n, a, accs); break;
            default: dk_x86_bcast4x2(x, pw, rs, q_n, a, accs); break;
            }
        }
        return;
    }
    for (; p + 2 <= np; p += 2) {
        for (int r0 = 0; r0 < nco; r0 += 4) {
            const int8_t *w0 = w + (int32_t)r0 * ws;
            if (r0 + 4 <= nco) {
                DK_UNROLL
                for (int r = 0; r < 4; ++r) wr[r] = w0 + (int32_t)r * ws;
            } else {
                for (int r = 0; r < 4; ++r) wr[r] = w0 + (int32_t)(r0 + r < nco ? r : 0) * ws;
            }
            const __m256i s = dk_x86_dot2x4(x[p], x[p + 1], wr, nk);
            __m128i *d0 = (__m128i *)(acc + (ptrdiff_t)p * accs + r0), *d1 = (__m128i *)(acc + (ptrdiff_t)(p + 1) * accs + r0);
            const __m128i lo = _mm256_castsi256_si128(s), hi = _mm256_extracti128_si256(s, 1);
            _mm_storeu_si128(d0, accumulate ? _mm_add_epi32(lo, _mm_loadu_si128(d0)) : lo);
            _mm_storeu_si128(d1, accumulate ? _mm_add_epi32(hi, _mm_loadu_si128(d1)) : hi);
        }
    }
    for (; p < np; ++p) {
        for (int r0 = 0; r0 < nco; r0 += 8) {
            const int8_t *w0 = w + (int32_t)r0 * ws;
            if (r0 + 8 <= nco) {
                DK_UNROLL
                for (int r = 0; r < 8; ++r) wr[r] = w0 + (int32_t)r * ws;
            } else { /* rows past nco: row r0 again, its sums unused */
                for (int r = 0; r < 8; ++r) wr[r] = w0 + (int32_t)(r0 + r < nco ? r : 0) * ws;
            }
            const __m256i s = dk_x86_dot1x8(x[p], wr, nk);
            __m256i *dst = (__m256i *)(acc + (ptrdiff_t)p * accs + r0);
            _mm256_storeu_si256(dst, accumulate ? _mm256_add_epi32(s, _mm256_loadu_si256(dst)) : s);
        }
    }
}

#endif /* LEANML_KERNELS_X86_AVX2_H */
