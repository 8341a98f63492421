/*
 * lmq_kernels.c -- the parallel drivers of the kernels (rows of W split over the pool's threads, 4-row tiles), the
 * checks every entry point runs before touching memory, and the entry points the tests and the micro-benchmark call
 * through ctypes (lmq_k_*). Kernel variants: LMQ_REF, LMQ_UNROLL, LMQ_SIMD (lmq.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmq.h"
#include "lmq_simd.h"

#define LMQ_MULTI 4
#define LMQ_MAX_K (1 << 16)

int lmq_simd_level(void) { return LMQ_SIMD_LEVEL; }

void *lmq_alloc(size_t bytes) {
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 64) == 0 ? p : NULL;
}
const char *lmq_simd_name(void) { return LMQ_SIMD_NAME; }

int lmq_check_qmat(const lmq_qmat *w, char *err, size_t err_len) {
    if (!w || !w->q || !w->scales || !w->zeros) {
        snprintf(err, err_len, "quantized matrix with a missing buffer");
        return -1;
    }
    if (w->n < 1 || w->k < 1 || w->k > LMQ_MAX_K || (w->bits != 4 && w->bits != 8)) {
        snprintf(err, err_len, "quantized matrix of shape (%d, %d) with %d bits: need 1 <= k <= %d and 4 or 8 bits",
                 w->n, w->k, w->bits, LMQ_MAX_K);
        return -1;
    }
    if (w->group < LMQ_BLOCK || w->group % LMQ_BLOCK != 0) {
        snprintf(err, err_len, "group size %d is not a positive multiple of %d", w->group, LMQ_BLOCK);
        return -1;
    }
    const int64_t ng = lmq_groups(w->k, w->group);
    if (w->q_bytes != (int64_t)w->n * lmq_row_bytes(w->k, w->bits) || w->scales_bytes != (int64_t)w->n * ng * 2 ||
        w->zeros_bytes != (int64_t)w->n * ng || (w->bias && w->bias_bytes != (int64_t)w->n * 4)) {
        snprintf(err, err_len, "buffer sizes of a (%d, %d) matrix do not match its shape", w->n, w->k);
        return -1;
    }
    return 0;
}

size_t lmq_act_bytes(int32_t m, int32_t k) {
    const size_t kp = (size_t)lmq_kp(k), nb = kp / LMQ_BLOCK, rows = (size_t)m;
    /* q, then d, d8, s: each part a multiple of 64 bytes */
    return (rows * kp + 63) / 64 * 64 + 2 * ((rows * nb * 4 + 63) / 64 * 64) + (rows * nb * 32 + 63) / 64 * 64;
}

lmq_act lmq_act_bind(void *mem, int32_t m, int32_t k) {
    lmq_act a;
    const size_t kp = (size_t)lmq_kp(k), nb = kp / LMQ_BLOCK, rows = (size_t)m;
    char *p = mem;
    a.q = (int8_t *)p;
    p += (rows * kp + 63) / 64 * 64;
    a.d = (float *)p;
    p += (rows * nb * 4 + 63) / 64 * 64;
    a.d8 = (float *)p;
    p += (rows * nb * 32 + 63) / 64 * 64;
    a.s = (int32_t *)p;
    a.m = m, a.k = k, a.kp = (int32_t)kp, a.nb = (int32_t)nb;
    return a;
}

/* ---------------------------------------------------------------- activation quantization */
typedef struct {
    int variant;
    const float *x;
    int64_t ldx;
    lmq_act *act;
} lmq_quant_ctx;

static void lmq_quant_task(void *p, int64_t t, int tid) {
    const lmq_quant_ctx *c = p;
    lmq_act *a = c->act;
    (void)tid;
    const float *x = c->x + t * c->ldx;
    int8_t *q = a->q + t * a->kp;
    float *d = a->d + t * a->nb, *d8 = a->d8 + t * a->nb * 8;
    int32_t *s = a->s + t * a->nb;
    if (c->variant == LMQ_SIMD) lmq_quantize_row_simd(x, a->k, q, d, d8, s);
    else lmq_quantize_row_ref(x, a->k, q, d, d8, s);
}

void lmq_quantize(lmq_pool *pool, int variant, const float *x, int64_t ldx, lmq_act *act) {
    lmq_quant_ctx c = {variant, x, ldx, act};
    lmq_pool_run(pool, lmq_quant_task, &c, act->m);
}

/* Rows per chunk of a parallel region over `rows` rows: a multiple of 4, about 8 chunks per thread. */
static int64_t lmq_chunk_rows(int64_t rows, const lmq_pool *pool) {
    const int64_t per = rows / (8 * (int64_t)lmq_pool_threads(pool));
    return per < 4 ? 4 : (per + 3) / 4 * 4;
}

/* ---------------------------------------------------------------- quantized GEMM / GEMV */
typedef struct {
    int variant, count;
    const lmq_qmat *w[LMQ_MULTI];
    float *y[LMQ_MULTI];
    int64_t ldy[LMQ_MULTI];
    const float *A[LMQ_MULTI];     /* (m, groups) group sums of the activations for each matrix */
    const int32_t *gidx[LMQ_MULTI]; /* (nb,) group of each activation block */
    int64_t total, chunk;           /* 4-row tiles of all matrices, tiles per chunk */
    const lmq_act *act;
} lmq_gemm_ctx;

static void lmq_gemm_task(void *p, int64_t chunk, int tid) {
    const lmq_gemm_ctx *c = p;
    (void)tid;
    /* chunks are ranges of 4-row tiles over all matrices (a tile never straddles two chunks: lmq.h's layout) */
    const int64_t lo = chunk * c->chunk, hi = lo + c->chunk < c->total ? lo + c->chunk : c->total;
    int64_t first = 0;
    for (int j = 0; j < c->count; ++j) {
        const lmq_qmat *w = c->w[j];
        const int64_t tiles = (w->n + 3) / 4;
        const int64_t t0 = lo > first ? lo - first : 0, t1 = hi - first < tiles ? hi - first : tiles;
        const int32_t ng = lmq_groups(w->k, w->group);
        for (int64_t tl = t0; tl < t1; ++tl) {
            const int32_t o = (int32_t)(4 * tl), oe = o + 4 < w->n ? o + 4 : w->n;
            if (c->variant == LMQ_SIMD && c->act->m > 1) {
                lmq_qgemm_simd(w, o, oe, c->act, c->A[j], c->gidx[j], c->y[j], c->ldy[j]);
                continue;
            }
            for (int32_t t = 0; t < c->act->m; ++t) {
                float *y = c->y[j] + t * c->ldy[j];
                const float *A = c->A[j] + (int64_t)t * ng;
                if (c->variant == LMQ_SIMD) lmq_qrows_simd(w, o, oe, c->act, t, A, c->gidx[j], y);
                else if (c->variant == LMQ_UNROLL) lmq_qrows_unroll(w, o, oe, c->act, t, A, y);
                else lmq_qrows_ref(w, o, oe, c->act, t, A, y);
            }
        }
        first += tiles;
    }
}

int lmq_qgemm_multi(lmq_pool *pool, int variant, const lmq_qmat *const *w, int count, const lmq_act *act,
                    float *const *y, const int64_t *ldy) {
    lmq_gemm_ctx c;
    c.variant = variant, c.count = count, c.act = act, c.total = 0;
    int32_t gidx[LMQ_MULTI][LMQ_MAX_K / LMQ_BLOCK];
    float small[LMQ_MULTI][64], *heap = NULL;
    size_t need = 0;
    for (int j = 0; j < count; ++j) need += (size_t)act->m * (size_t)lmq_groups(w[j]->k, w[j]->group);
    if (count < 1 || count > LMQ_MULTI) return -1;
    float *A = need <= 64 * LMQ_MULTI ? &small[0][0] : (heap = malloc(need * sizeof *heap));
    if (!A) return -1;
    for (int j = 0; j < count; ++j) {
        const int32_t ng = lmq_groups(w[j]->k, w[j]->group);
        for (int32_t b = 0; b < act->nb; ++b) gidx[j][b] = b * LMQ_BLOCK / w[j]->group;
        for (int32_t t = 0; t < act->m; ++t)
            lmq_group_sums(act->d + (int64_t)t * act->nb, act->s + (int64_t)t * act->nb, act->nb, w[j]->group,
                           A + (int64_t)t * ng);
        c.w[j] = w[j], c.y[j] = y[j], c.ldy[j] = ldy[j], c.A[j] = A, c.gidx[j] = gidx[j];
        c.total += (w[j]->n + 3) / 4;
        A += (int64_t)act->m * ng;
    }
    c.chunk = lmq_chunk_rows(4 * c.total, pool) / 4;
    lmq_pool_run(pool, lmq_gemm_task, &c, (c.total + c.chunk - 1) / c.chunk);
    free(heap);
    return 0;
}

int lmq_qgemm(lmq_pool *pool, int variant, const lmq_qmat *w, const lmq_act *act, float *y, int64_t ldy) {
    return lmq_qgemm_multi(pool, variant, &w, 1, act, &y, &ldy);
}

/* ---------------------------------------------------------------- float GEMM (the float32 head) */
typedef struct {
    int variant;
    const float *w, *x;
    int32_t n, k, m;
    float *y;
    int64_t ldy, chunk;
} lmq_fgemm_ctx;

static void lmq_fgemm_task(void *p, int64_t chunk, int tid) {
    const lmq_fgemm_ctx *c = p;
    (void)tid;
    const int32_t r0 = (int32_t)(chunk * c->chunk), r1 = r0 + c->chunk < c->n ? (int32_t)(r0 + c->chunk) : c->n;
    for (int32_t t = 0; t < c->m; ++t) {
        const float *x = c->x + (int64_t)t * c->k;
        float *y = c->y + t * c->ldy;
        if (c->variant == LMQ_SIMD) lmq_frows_simd(c->w, c->k, r0, r1, x, y);
        else if (c->variant == LMQ_UNROLL) lmq_frows_unroll(c->w, c->k, r0, r1, x, y);
        else lmq_frows_ref(c->w, c->k, r0, r1, x, y);
    }
}

void lmq_fgemm(lmq_pool *pool, int variant, const float *w, int32_t n, int32_t k, const float *x, int32_t m,
               float *y, int64_t ldy) {
    lmq_fgemm_ctx c = {variant, w, x, n, k, m, y, ldy, lmq_chunk_rows(n, pool)};
    lmq_pool_run(pool, lmq_fgemm_task, &c, (n + c.chunk - 1) / c.chunk);
}

/* ---------------------------------------------------------------- entry points for tests and benchmarks */
static int lmq_k_args(lmq_pool *pool, int variant, int32_t m, char *err, size_t len) {
    if (!pool || variant < LMQ_REF || variant > LMQ_SIMD || m < 1) {
        snprintf(err, len, "bad arguments: pool %s, variant %d, rows %d", pool ? "set" : "missing", variant, m);
        return -1;
    }
    return 0;
}

/* y (m, n) = quantize(x (m, k)) W^T with kernel `variant`; 0, or -1 with a message in err. */
int lmq_k_gemm(lmq_pool *pool, int variant, const lmq_qmat *w, const float *x, int32_t m, float *y, char *err,
               size_t len) {
    if (lmq_k_args(pool, variant, m, err, len) || lmq_check_qmat(w, err, len)) return -1;
    void *mem = lmq_alloc(lmq_act_bytes(m, w->k));
    if (!mem) {
        snprintf(err, len, "out of memory");
        return -1;
    }
    lmq_act a = lmq_act_bind(mem, m, w->k);
    lmq_quantize(pool, variant, x, w->k, &a);
    const int rc = lmq_qgemm(pool, variant, w, &a, y, w->n);
    free(mem);
    if (rc) snprintf(err, len, "out of memory");
    return rc;
}

/* Quantize x (m, k): codes q (m, kp), scales d (m, nb), sums s (m, nb). */
int lmq_k_quantize(int variant, const float *x, int32_t m, int32_t k, int8_t *q, float *d, int32_t *s) {
    if (m < 1 || k < 1 || k > LMQ_MAX_K) return -1;
    const int32_t kp = lmq_kp(k), nb = kp / LMQ_BLOCK;
    float *d8 = malloc((size_t)nb * 8 * sizeof *d8);
    if (!d8) return -1;
    for (int32_t t = 0; t < m; ++t) {
        const float *xr = x + (int64_t)t * k;
        int8_t *qr = q + (int64_t)t * kp;
        if (variant == LMQ_SIMD) lmq_quantize_row_simd(xr, k, qr, d + (int64_t)t * nb, d8, s + (int64_t)t * nb);
        else lmq_quantize_row_ref(xr, k, qr, d + (int64_t)t * nb, d8, s + (int64_t)t * nb);
        for (int32_t i = 0; i < nb * 8; ++i) {
            if (d8[i] != d[(int64_t)t * nb + i / 8]) { /* the lane copies disagree with the scales */
                free(d8);
                return -2;
            }
        }
    }
    free(d8);
    return 0;
}

int lmq_k_fgemm(lmq_pool *pool, int variant, const float *w, int32_t n, int32_t k, const float *x, int32_t m,
                float *y) {
    if (!pool || n < 1 || k < 1 || m < 1) return -1;
    lmq_fgemm(pool, variant, w, n, k, x, m, y, n);
    return 0;
}

/* out[t] = q . k[t] for t < count, each of length n (q: n floats, k: count * n float16). */
int lmq_k_dot_f16(int variant, const float *q, const uint16_t *k, int32_t n, int32_t count, float *out) {
    if (n < 1 || count < 1) return -1;
    for (int32_t t = 0; t < count; ++t)
        out[t] = variant == LMQ_SIMD ? lmq_dot_f16_simd(q, k + (int64_t)t * n, n) : lmq_dot_f16_ref(q, k + (int64_t)t * n, n);
    return 0;
}

/* out[t] += p[t] * v[t] for t < count, rows of n (v float16). */
int lmq_k_axpy_f16(int variant, const float *p, const uint16_t *v, int32_t n, int32_t count, float *out) {
    if (n < 1 || count < 1) return -1;
    for (int32_t t = 0; t < count; ++t) {
        if (variant == LMQ_SIMD) lmq_axpy_f16_simd(p[t], v + (int64_t)t * n, n, out + (int64_t)t * n);
        else lmq_axpy_f16_ref(p[t], v + (int64_t)t * n, n, out + (int64_t)t * n);
    }
    return 0;
}

/* Attention of one head over n positions: out (hd) from q (hd), keys and values (n, hd) float16. */
int lmq_k_attend(int variant, const float *q, const uint16_t *k, const uint16_t *v, int32_t n, int32_t hd,
                 float scale, float *out) {
    if (n < 1 || hd < 1) return -1;
    float *s = malloc((size_t)n * sizeof *s);
    if (!s) return -1;
    if (variant == LMQ_SIMD) lmq_attend_simd(q, k, v, n, hd, scale, s, out);
    else lmq_attend_ref(q, k, v, n, hd, scale, s, out);
    free(s);
    return 0;
}

/* Sizes of the structs Python mirrors with ctypes: 0 lmq_qmat, 1 lmq_layer_desc, 2 lmq_model_desc. */
size_t lmq_sizeof(int which) {
    return which == 0 ? sizeof(lmq_qmat) : which == 1 ? sizeof(lmq_layer_desc) : which == 2 ? sizeof(lmq_model_desc) : 0;
}

/* Monotonic clock in nanoseconds (the timing harnesses' only timer: they return raw samples, Python computes the
 * statistics). */
static int64_t lmq_clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

/* Time the GEMM (activations quantized once, outside the timing): `warmup` untimed batches, then `repeats` timed
 * batches of `calls` back-to-back calls; ns[r] = nanoseconds of batch r. */
int lmq_k_bench_gemm(lmq_pool *pool, int variant, const lmq_qmat *w, const float *x, int32_t m, float *y,
                     int32_t calls, int32_t warmup, int32_t repeats, int64_t *ns, char *err, size_t len) {
    if (lmq_k_args(pool, variant, m, err, len) || lmq_check_qmat(w, err, len)) return -1;
    if (calls < 1 || warmup < 0 || repeats < 1 || !ns) {
        snprintf(err, len, "bad timing arguments: calls %d, warmup %d, repeats %d", calls, warmup, repeats);
        return -1;
    }
    void *mem = lmq_alloc(lmq_act_bytes(m, w->k));
    if (!mem) return -1;
    lmq_act a = lmq_act_bind(mem, m, w->k);
    lmq_quantize(pool, variant, x, w->k, &a);
    for (int32_t r = -warmup; r < repeats; ++r) {
        const int64_t t0 = lmq_clock_ns();
        for (int32_t c = 0; c < calls; ++c) lmq_qgemm(pool, variant, w, &a, y, w->n);
        if (r >= 0) ns[r] = lmq_clock_ns() - t0;
    }
    free(mem);
    return 0;
}

/* The same for the float GEMM. */
int lmq_k_bench_fgemm(lmq_pool *pool, int variant, const float *w, int32_t n, int32_t k, const float *x, int32_t m,
                      float *y, int32_t calls, int32_t warmup, int32_t repeats, int64_t *ns) {
    if (!pool || n < 1 || k < 1 || m < 1 || calls < 1 || warmup < 0 || repeats < 1 || !ns) return -1;
    for (int32_t r = -warmup; r < repeats; ++r) {
        const int64_t t0 = lmq_clock_ns();
        for (int32_t c = 0; c < calls; ++c) lmq_fgemm(pool, variant, w, n, k, x, m, y, n);
        if (r >= 0) ns[r] = lmq_clock_ns() - t0;
    }
    return 0;
}

/* ---------------------------------------------------------------- memory bandwidth (the decode bound) */
typedef struct {
    const uint64_t *buf;
    int64_t words, chunk;
    uint64_t sums[LMQ_MAX_THREADS];
} lmq_read_ctx;

static void lmq_read_task(void *p, int64_t chunk, int tid) {
    lmq_read_ctx *c = p;
    const int64_t lo = chunk * c->chunk, hi = lo + c->chunk < c->words ? lo + c->chunk : c->words;
    uint64_t s = 0;
    for (int64_t i = lo; i < hi; ++i) s += c->buf[i]; /* vectorized by the compiler: a streaming read */
    c->sums[tid] += s;
}

/* Read `bytes` (a multiple of 8) of buf `repeats` times over the pool's threads; ns[r] = nanoseconds of pass r. */
int lmq_k_bench_read(lmq_pool *pool, const void *buf, int64_t bytes, int32_t repeats, int64_t *ns) {
    if (!pool || !buf || bytes < 8 || bytes % 8 || repeats < 1 || !ns) return -1;
    lmq_read_ctx *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->buf = buf, c->words = bytes / 8;
    c->chunk = (c->words / (16 * (int64_t)lmq_pool_threads(pool)) + 7) / 8 * 8;
    if (c->chunk < 8) c->chunk = 8;
    for (int32_t r = 0; r < repeats; ++r) {
        const int64_t t0 = lmq_clock_ns();
        lmq_pool_run(pool, lmq_read_task, c, (c->words + c->chunk - 1) / c->chunk);
        ns[r] = lmq_clock_ns() - t0;
    }
    const int ok = c->sums[0] != 1; /* keep the sums alive */
    free(c);
    return ok ? 0 : 0;
}

/* ------------------------------------------------------------------ pool check (tests) */
typedef struct {
    int32_t *counts; /* (n,) times each chunk ran in this run */
} lmq_count_ctx;

static void lmq_count_task(void *ctx, int64_t i, int tid) {
    (void)tid;
    __atomic_add_fetch(&((lmq_count_ctx *)ctx)->counts[i], 1, __ATOMIC_RELAXED);
}

/* Run `runs` back-to-back parallel regions of 1 .. max_chunks chunks (a fixed pseudo-random sequence) and count the
 * chunks that did not run exactly once; counts is (max_chunks,) scratch. Returns -1 on bad arguments. */
int64_t lmq_k_pool_check(lmq_pool *pool, int32_t runs, int32_t max_chunks, int32_t *counts) {
    if (!pool || runs < 1 || max_chunks < 1 || !counts) return -1;
    lmq_count_ctx c = {counts};
    uint32_t state = 12345u;
    int64_t wrong = 0;
    for (int32_t r = 0; r < runs; ++r) {
        state = state * 1664525u + 1013904223u;
        const int32_t n = 1 + (int32_t)((state >> 8) % (uint32_t)max_chunks);
        memset(counts, 0, (size_t)n * sizeof *counts);
        lmq_pool_run(pool, lmq_count_task, &c, n);
        for (int32_t i = 0; i < n; ++i) wrong += counts[i] != 1;
    }
    return wrong;
}
