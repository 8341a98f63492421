/*
 * leanml_kernels_x86_avx512.h -- the AVX-512 (F, BW) + VNNI backend of leanml_kernels_simd.h: 16 int32 lanes.
 * Included by leanml_kernels_x86.h (see it for the integer algebra); include leanml_kernels.h, not this file.
 */
#ifndef LEANML_KERNELS_X86_AVX512_H
#define LEANML_KERNELS_X86_AVX512_H

#define DK_SIMD_ISA "x86-avx512vnni"
#define DK_SIMD_LANES 16
typedef __m512i dk_vec_t;
typedef uint8_t dk_act_t; /* im2col element: x + 128 */
#define DK_SIMD_ROW_ALIGN 4 /* the broadcast kernel reads rows in 4-byte groups */
#define DK_SIMD_PANEL_ROW_ALIGN 4 /* the broadcast kernels read rows in 4-byte groups */

static inline __mmask16 dk_x86_mask16(int n) { return (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1u); }
static inline __mmask64 dk_x86_mask64(int32_t n) { return n >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1u; }

static inline dk_vec_t dk_v_set1(int32_t v) { return _mm512_set1_epi32(v); }
static inline dk_vec_t dk_v_add(dk_vec_t a, dk_vec_t b) { return _mm512_add_epi32(a, b); }
static inline dk_vec_t dk_v_sub(dk_vec_t a, dk_vec_t b) { return _mm512_sub_epi32(a, b); }
static inline dk_vec_t dk_v_max(dk_vec_t a, dk_vec_t b) { return _mm512_max_epi32(a, b); }
static inline dk_vec_t dk_v_min(dk_vec_t a, dk_vec_t b) { return _mm512_min_epi32(a, b); }
static inline dk_vec_t dk_v_shl_add(dk_vec_t a) { return _mm512_slli_epi32(a, DK_ADD_LEFT_SHIFT); }
/* p[0..n) as int32 lanes (n <= 16), lanes >= n are 0. */
static inline dk_vec_t dk_v_load_i32(const int32_t *p, int n) { return _mm512_maskz_loadu_epi32(dk_x86_mask16(n), p); }
/* p[0..n) int8 sign-extended to int32 lanes (n <= 16), lanes >= n are 0. */
static inline dk_vec_t dk_v_load_s8(const int8_t *p, int n) {
    return _mm512_cvtepi8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(dk_x86_mask16(n), p)));
}
/* Lanes [0, n) (values in [-128, 127]) to p[0..n) as int8. */
static inline void dk_v_store_s8(int8_t *p, dk_vec_t v, int n) {
    _mm512_mask_cvtepi32_storeu_epi8(p, dk_x86_mask16(n), v);
}

/* Per-lane requantization constants (dk_rq_load, dk_rq_set1): multiplier, its odd lanes moved down, left and
 * right shifts, dk_i32_shift_round's mask and mask >> 1, and the lanes whose multiplier is INT32_MIN
 * (dk_q31_mul_high can saturate). */
typedef struct {
    __m512i mult, mult_odd, left, right, mask, half;
    __mmask16 sat;
    int any_left, any_sat; /* whether a lane shifts left / can saturate: else those steps are skipped */
} dk_rq_t;

static inline dk_rq_t dk_x86_rq(__m512i mult, __m512i shift) {
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    dk_rq_t q;
    q.mult = mult;
    q.mult_odd = _mm512_srli_epi64(mult, 32);
    q.left = _mm512_max_epi32(shift, zero);
    q.right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
    q.mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, q.right), one);
    q.half = _mm512_srli_epi32(q.mask, 1);
    q.sat = _mm512_cmpeq_epi32_mask(mult, _mm512_set1_epi32(INT32_MIN));
    q.any_left = _mm512_test_epi32_mask(q.left, q.left) != 0;
    q.any_sat = q.sat != 0;
    return q;
}
/* Constants of n <= 16 channels (lanes >= n: multiplier 0); or the same constants in every lane. */
static inline dk_rq_t dk_rq_load(const int32_t *mult, const int32_t *shift, int n) {
    return dk_x86_rq(dk_v_load_i32(mult, n), dk_v_load_i32(shift, n));
}
static inline dk_rq_t dk_rq_set1(int32_t mult, int32_t shift) { return dk_x86_rq(dk_v_set1(mult), dk_v_set1(shift)); }

/* dk_i32_mul_multiplier(x[i], mult[i], shift[i]) per lane. */
static inline dk_vec_t dk_v_mul_multiplier(dk_vec_t x, const dk_rq_t *q) {
    const __m512i nudge = _mm512_set1_epi64((int64_t)1 << 30), one = _mm512_set1_epi32(1);
    if (q->any_left) x = _mm512_sllv_epi32(x, q->left);
    const __m512i even = _mm512_add_epi64(_mm512_mul_epi32(x, q->mult), nudge); /* lanes 0, 2, ...: 64-bit */
    const __m512i odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), q->mult_odd), nudge);
    /* bits 31..62 of each 64-bit sum: even lanes shifted down, odd lanes shifted up into the high half */
    __m512i h = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 31), _mm512_add_epi64(odd, odd));
    if (q->any_sat)
        h = _mm512_mask_mov_epi32(h, _mm512_mask_cmpeq_epi32_mask(q->sat, x, _mm512_set1_epi32(INT32_MIN)),
                                  _mm512_set1_epi32(INT32_MAX));
    const __m512i thr = _mm512_sub_epi32(q->half, _mm512_srai_epi32(h, 31));
    const __m512i r = _mm512_srav_epi32(h, q->right);
    return _mm512_mask_add_epi32(r, _mm512_cmpgt_epi32_mask(_mm512_and_si512(h, q->mask), thr), r, one);
}

/* dk_v_mul_multiplier for constants without left shifts or INT32_MIN multipliers (!q->any_left && !q->any_sat: the
 * caller checked once per block, not per vector). */
static inline dk_vec_t dk_v_mul_multiplier_rs(dk_vec_t x, const dk_rq_t *q) {
    const __m512i nudge = _mm512_set1_epi64((int64_t)1 << 30), one = _mm512_set1_epi32(1);
    const __m512i even = _mm512_add_epi64(_mm512_mul_epi32(x, q->mult), nudge);
    const __m512i odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), q->mult_odd), nudge);
    const __m512i h = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 31), _mm512_add_epi64(odd, odd));
    const __m512i thr = _mm512_sub_epi32(q->half, _mm512_srai_epi32(h, 31));
    const __m512i r = _mm512_srav_epi32(h, q->right);
    return _mm512_mask_add_epi32(r, _mm512_cmpgt_epi32_mask(_mm512_and_si512(h, q->mask), thr), r, one);
}

/* Depthwise weights of n channels: each int32 lane holds w as a zero-extended int16, so `vpdpwssd` with an
 * (x - zp) lane (sign-extended: high half 0 or -1) adds exactly (x - zp) * w. */
static inline dk_vec_t dk_v_dw_weight(const int8_t *w, int n) {
    return _mm512_and_si512(dk_v_load_s8(w, n), _mm512_set1_epi32(0xFFFF));
}
static inline dk_vec_t dk_v_dw_mac(dk_vec_t acc, dk_vec_t x, dk_vec_t wv) { return _mm512_dpwssd_epi32(acc, x, wv); }
/* 16 int16 sign-extended to int32 lanes. */
static inline dk_vec_t dk_v_load_i16(const int16_t *p) {
    return _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)p));
}
/* The int16 pair (p[0], p[1]) in every lane (for dk_v_dw_mac with pairs of weights). */
static inline dk_vec_t dk_v_bcast_pair(const int16_t *p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
/* One staged pixel: dst[i] = src[i] - zp (int16) for i < n; lanes n..15 get -zp (their weights are 0). */
static inline void dk_simd_stage_px(int16_t *dst, const int8_t *src, int n, int32_t zp) {
    const __m256i x = _mm256_cvtepi8_epi16(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(dk_x86_mask16(n), src)));
    _mm256_storeu_si256((__m256i *)dst, _mm256_sub_epi16(x, _mm256_set1_epi16((int16_t)zp)));
}

/* im2col pieces: dst[0..n) = src + 128 (a sign-bit flip); dst[0..n) = zp + 128 (the padding value in_zp); a row's
 * end padded with zeros to a multiple of 4 (the broadcast kernel reads 4-byte groups). */
static inline void dk_simd_act_copy(dk_act_t *dst, const int8_t *src, int32_t n, int32_t zp) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    (void)zp;
    for (int32_t i = 0; i < n; i += 64) {
        const __mmask64 m = dk_x86_mask64(n - i);
        _mm512_mask_storeu_epi8(dst + i, m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, src + i), flip));
    }
}
static inline void dk_simd_act_fill(dk_act_t *dst, int32_t n, int32_t zp) {
    const __m512i v = _mm512_set1_epi8((char)(zp + 128));
    for (int32_t i = 0; i < n; i += 64) _mm512_mask_storeu_epi8(dst + i, dk_x86_mask64(n - i), v);
}
static inline void dk_simd_act_pad(dk_act_t *row, int32_t n) {
    for (int32_t i = n; i % 4; ++i) row[i] = 0;
}

/* sum of w[0..k) (int8). */
static inline int32_t dk_x86_wsum(const int8_t *w, int32_t k) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i s = _mm512_setzero_si512();
    for (int32_t i = 0; i < k; i += 64)
        s = _mm512_dpbusd_epi32(s, ones, _mm512_maskz_loadu_epi8(dk_x86_mask64(k - i), w + i));
    return _mm512_reduce_add_epi32(s);
}
/* 16 vectors -> one: lane i = sum of the 16 lanes of v[i]. */
static inline __m512i dk_x86_reduce16(const __m512i *v) {
    __m512i t[8], u[4];
    DK_UNROLL
    for (int i = 0; i < 8; ++i)
        t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    DK_UNROLL
    for (int i = 0; i < 4; ++i)
        u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
                                _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
    const __m512i s0 = _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], 0x88), _mm512_shuffle_i32x4(u[0], u[1], 0xDD));
    const __m512i s1 = _mm512_add_epi32(_mm512_shuffle_i32x4(u[2], u[3], 0x88), _mm512_shuffle_i32x4(u[2], u[3], 0xDD));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(s0, s1, 0x88), _mm512_shuffle_i32x4(s0, s1, 0xDD));
}

/* Dot-product kernels (weights read in place, any k): u8 activation rows (x + 128) x s8 weights.
 * 4 x 4: lane p * 4 + r = sum_k x[p][k] * w[r][k]. */
DK_KERNEL __m512i dk_x86_dot4x4(const uint8_t *const *x, const int8_t *const *w, int32_t k) {
    __m512i c[16], a[4], b[4];
    DK_UNROLL
    for (int i = 0; i < 16; ++i) c[i] = _mm512_setzero_si512();
    for (int32_t kk = 0; kk < k; kk += 64) {
        const __mmask64 m = dk_x86_mask64(k - kk);
        DK_UNROLL
        for (int p = 0; p < 4; ++p) a[p] = _mm512_maskz_loadu_epi8(m, x[p] + kk);
        DK_UNROLL
        for (int r = 0; r < 4; ++r) b[r] = _mm512_maskz_loadu_epi8(m, w[r] + kk);
        DK_UNROLL
        for (int p = 0; p < 4; ++p)
            DK_UNROLL
            for (int r = 0; r < 4; ++r) c[p * 4 + r] = _mm512_dpbusd_epi32(c[p * 4 + r], a[p], b[r]);
    }
    return dk_x86_reduce16(c);
}

/* 1 x 16: lane r = sum_k x[k] * w[r * ws + k] for r < nr (lanes >= nr: 0). Four rows at a time re-read x (it
 * stays in L1) so that only four weight pointers are live. */
DK_KERNEL __m512i dk_x86_dot1x16(const uint8_t *x, const int8_t *w, int32_t ws, int nr, int32_t k) {
    __m512i c[16];
    DK_UNROLL
    for (int i = 0; i < 16; ++i) c[i] = _mm512_setzero_si512();
    DK_UNROLL
    for (int g = 0; g < 4; ++g) {
        const int8_t *w0 = w + (int32_t)(4 * g) * ws;
        const unsigned rows = nr > 4 * g ? (nr - 4 * g >= 4 ? 15u : (1u << (nr - 4 * g)) - 1u) : 0u;
        if (!rows) break;
        for (int32_t kk = 0; kk < k; kk += 64) {
            const __mmask64 m = dk_x86_mask64(k - kk);
            const __m512i a = _mm512_maskz_loadu_epi8(m, x + kk);
            DK_UNROLL
            for (int r = 0; r < 4; ++r) { /* rows past nr: masked off, never read */
                const __mmask64 mr = (rows >> r) & 1u ? m : 0;
                c[4 * g + r] = _mm512_dpbusd_epi32(c[4 * g + r], a, _mm512_maskz_loadu_epi8(mr, w0 + r * ws + kk));
            }
        }
    }
    return dk_x86_reduce16(c);
}

/* Packed weights of one GEMM chunk for the broadcast kernel:
 *   w[((q * R + r) * 16 + l) * 4 + b] = w[16 r + l][4 q + b]    (R = ceil(nco / 16), q < ceil(k / 4); 0 past k)
 * (rows past nco: 0) and wsum[j] = sum_k w[j][k]. Packing costs about one pass over the
 * chunk's weights (~0.5 us for 64 x 256 on Zen 4): worth it from 8 pixels on. */
#define DK_X86_PANEL_K 512 /* longest K packed: 64 channels (DK_SIMD_COB) * 512 bytes = 32 KiB of stack */
typedef struct {
    int8_t w[64 * DK_X86_PANEL_K];
    int32_t wsum[64]; /* entries >= nco: 0 */
    int r;
} dk_panel_t;

/* In-place transpose of a 16 x 16 matrix of dwords (v[row] lane col -> v[col] lane row): 64 shuffles. */
static inline void dk_x86_transpose16(__m512i *v) {
    __m512i t[16], u[16];
    DK_UNROLL
    for (int i = 0; i < 8; ++i) { /* per 128-bit lane L: t[2i] = (a0 b0 a1 b1), t[2i + 1] = (a2 b2 a3 b3) */
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    DK_UNROLL
    for (int g = 0; g < 4; ++g) { /* u[4g + j] lane L: rows 4g..4g+3 of column 4L + j */
        u[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    DK_UNROLL
    for (int h = 0; h < 2; ++h)
        DK_UNROLL
        for (int j = 0; j < 4; ++j) {
            t[8 * h + 2 * j] = _mm512_shuffle_i32x4(u[8 * h + j], u[8 * h + 4 + j], 0x88);
            t[8 * h + 2 * j + 1] = _mm512_shuffle_i32x4(u[8 * h + j], u[8 * h + 4 + j], 0xDD);
        }
    DK_UNROLL
    for (int j = 0; j < 4; ++j)
        DK_UNROLL
        for (int e = 0; e < 2; ++e) { /* columns 4e + j and 8 + 4e + j */
            v[4 * e + j] = _mm512_shuffle_i32x4(t[2 * j + e], t[8 + 2 * j + e], 0x88);
            v[8 + 4 * e + j] = _mm512_shuffle_i32x4(t[2 * j + e], t[8 + 2 * j + e], 0xDD);
        }
}

/* Pack rows w[j * k ...] (j < nco <= 64) into pn for n_pix output pixels; 0 (use the dot-product kernels) when k
 * exceeds DK_X86_PANEL_K or there are too few pixels to repay it. 16 rows x 64 bytes at a time are loaded (masked
 * at k; rows past nco read as 0) and transposed as 16 x 16 dwords; wsum comes from the same vectors. */
static inline int dk_simd_pack(dk_panel_t *pn, const int8_t *w, int32_t k, int nco, int32_t n_pix) {
    if (k > DK_X86_PANEL_K || n_pix < 8) return 0;
    const int r_n = (nco + 15) / 16;
    const int32_t q_n = (k + 3) / 4;
    const __m512i ones = _mm512_set1_epi8(1);
    pn->r = r_n;
    for (int r = 0; r < r_n; ++r) {
        const int8_t *base = w + (int32_t)16 * r * k;
        __m512i sum = _mm512_setzero_si512(), v[16];
        for (int32_t q0 = 0; q0 < q_n; q0 += 16) {
            const __mmask64 m = dk_x86_mask64(k - 4 * q0);
            DK_UNROLL
            for (int l = 0; l < 16; ++l)
                v[l] = 16 * r + l < nco ? _mm512_maskz_loadu_epi8(m, base + l * k + 4 * q0) : _mm512_setzero_si512();
            dk_x86_transpose16(v);
            for (int c = 0; c < 16 && q0 + c < q_n; ++c) {
                sum = _mm512_dpbusd_epi32(sum, ones, v[c]); /* lane l: sum of row l */
                _mm512_storeu_si512(pn->w + ((q0 + c) * r_n + r) * 64, v[c]);
            }
        }
        _mm512_storeu_si512(pn->wsum + 16 * r, sum);
    }
    return 1;
}

/* The per-channel offsets of a chunk: bias - (in_zp + 128) * sum(w) (the rows hold x + 128, padding in_zp + 128). */
static inline void dk_simd_offsets(const dk_panel_t *pn, const int8_t *w, int32_t k, int nco, const int32_t *bias,
                                   int32_t zp, int32_t *off) {
    for (int j = 0; j < nco; ++j) {
        const int64_t b = bias ? bias[j] : 0, wsum = pn ? pn->wsum[j] : dk_x86_wsum(w + (int32_t)j * k, k);
        off[j] = (int32_t)(b - (int64_t)(zp + 128) * wsum);
    }
}

/* Broadcast kernel: 4 rows x R vectors of 16 channels from a panel, k bytes per row read in 4-byte groups (rows are
 * zero-padded to a multiple of 4): acc[p * accs + 16 r + l] = sum_k x[p][k] * w[16 r + l][k]. No horizontal sums. */
static inline __attribute__((always_inline)) void dk_x86_bcast4(const uint8_t *const *x, const int8_t *pw, int r_n,
                                                                int32_t k, int32_t *acc, int accs) {
    const int32_t q_n = (k + 3) / 4;
    __m512i c[4][4], xb[4];
    DK_UNROLL
    for (int p = 0; p < 4; ++p)
        DK_UNROLL
        for (int r = 0; r < r_n; ++r) c[p][r] = _mm512_setzero_si512();
    for (int32_t q = 0; q < q_n; ++q) {
        DK_UNROLL
        for (int p = 0; p < 4; ++p) {
            int32_t v;
            __builtin_memcpy(&v, x[p] + 4 * q, 4);
            xb[p] = _mm512_set1_epi32(v);
        }
        DK_UNROLL
        for (int r = 0; r < r_n; ++r) {
            __m512i wv = _mm512_loadu_si512(pw + (q * r_n + r) * 64);
            __asm__("" : "+v"(wv)); /* keep it in a register: folded into each vpdpbusd it would be loaded 4 times */
            DK_UNROLL
            for (int p = 0; p < 4; ++p) c[p][r] = _mm512_dpbusd_epi32(c[p][r], xb[p], wv);
        }
    }
    DK_UNROLL
    for (int p = 0; p < 4; ++p)
        DK_UNROLL
        for (int r = 0; r < r_n; ++r) _mm512_storeu_si512(acc + (ptrdiff_t)p * accs + 16 * r, c[p][r]);
}

#define DK_X86_BCAST(R)                                                                                            \
    DK_KERNEL void dk_x86_bcast4x##R(const uint8_t *const *x, const int8_t *pw, int32_t k, int32_t *acc, int accs) { \
        dk_x86_bcast4(x, pw, R, k, acc, accs);                                                                     \
    }
DK_X86_BCAST(1)
DK_X86_BCAST(2)
DK_X86_BCAST(3)
DK_X86_BCAST(4)

/* acc[p * accs + j] (+)= the dot product of row x[p] (np <= DK_SIMD_P rows of nk activations) with weight row j
 * (w + j * ws, j < nco) in the integer domain of dk_simd_offsets: the whole k from the panel pn when packed (then
 * k <= DK_X86_PANEL_K <= DK_SIMD_KC is one chunk, never accumulated), else this K chunk by dot products. acc rows
 * need room for nco rounded up to 16; rows p >= np of acc get garbage. */
static inline void dk_simd_gemm(const dk_act_t *const *x, int np, int32_t nk, const int8_t *w, int32_t ws, int nco,
                                const dk_panel_t *pn, int32_t *acc, int accs, int accumulate) {
    const uint8_t *rows[4];
    const int8_t *wr[4];
    DK_UNROLL
    for (int p = 0; p < 4; ++p) rows[p] = x[p < np ? p : 0];
    if (pn) {
        switch (pn->r) { /* one specialized copy per vector count: accumulators stay in registers */
        case 1: dk_x86_bcast4x1(rows, pn->w, nk, acc, accs); break;
        case 2: dk_x86_bcast4x2(rows, pn->w, nk, acc, accs); break;
        case 3: dk_x86_bcast4x3(rows, pn->w, nk, acc, accs); break;
        default: dk_x86_bcast4x4(rows, pn->w, nk, acc, accs); break;
        }
        return;
    }
    if (np == 4) {
        for (int r0 = 0; r0 < nco; r0 += 4) {
            DK_UNROLL
            for (int r = 0; r < 4; ++r) wr[r] = w + (int32_t)(r0 + (r0 + r < nco ? r : 0)) * ws;
            const __m512i s = dk_x86_dot4x4(rows, wr, nk);
            __m128i v[4] = {_mm512_extracti32x4_epi32(s, 0), _mm512_extracti32x4_epi32(s, 1),
                            _mm512_extracti32x4_epi32(s, 2), _mm512_extracti32x4_epi32(s, 3)};
            DK_UNROLL
            for (int p = 0; p < 4; ++p) {
                __m128i *dst = (__m128i *)(acc + (ptrdiff_t)p * accs + r0);
                _mm_storeu_si128(dst, accumulate ? _mm_add_epi32(v[p], _mm_loadu_si128(dst)) : v[p]);
            }
        }
        return;
    }
    for (int p = 0; p < np; ++p) {
        for (int r0 = 0; r0 < nco; r0 += 16) {
            const __m512i s = dk_x86_dot1x16(rows[p], w + (int32_t)r0 * ws, ws, nco - r0, nk);
            int32_t *dst = acc + (ptrdiff_t)p * accs + r0;
            _mm512_storeu_si512(dst, accumulate ? _mm512_add_epi32(s, _mm512_loadu_si512(dst)) : s);
        }
    }
}

#endif /* LEANML_KERNELS_X86_AVX512_H */
