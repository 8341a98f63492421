/*
 * lmq.h -- leanml's LLM runtime in C: the data structures shared by the kernels, the thread pool and the decoder.
 *
 * Numbers (docs/llm_format.md, "C runtime layout"):
 *   weights      group-quantized codes (4 or 8 bits, unsigned) with a float16 scale and a uint8 zero per (row, group):
 *                W[o, i] = (q[o, i] - z[o, G]) * s[o, G], G = i / group, group a multiple of 32, the last group of a
 *                row possibly short. Rows are zero padded to kp = roundup(k, 32) and int4 rows are reordered
 *                (pack_rows in kernels.py): the padded row is cut into units of 128 codes, then at most one unit of 64
 *                and one of 32; a unit of u codes takes u/2 bytes, byte j holding code j (low nibble) and code
 *                j + u/2 (high nibble). int8 rows are the codes in order.
 *   activations  quantized on the fly per block of 32 (symmetric, like llama.cpp's Q8_0): d = max|x| / 127,
 *                a = round_half_even(x / d) in [-127, 127], plus each block's code sum (for the zero points).
 *   dot product  y[o] = bias[o] + sum_G s[o,G] * (P[o,G] - z[o,G] * A[G]),  P[o,G] = sum_{b in G} d[b] * isum[o,b],
 *                A[G] = sum_{b in G} d[b] * asum[b], isum[o,b] = sum_{i in b} q[o,i] * a[i] (exact int32).
 */
#ifndef LMQ_H
#define LMQ_H

#include <stddef.h>
#include <stdint.h>

#define LMQ_BLOCK 32      /* activation block: codes sharing one scale */
#define LMQ_MAX_THREADS 256
#define LMQ_ERR_LEN 256

/* A group-quantized matrix y (n) = W (n, k) x (k), as the kernels read it. */
typedef struct {
    const uint8_t *q;       /* (n, row_bytes): row_bytes = kp / 2 (bits 4, reordered) or kp (bits 8) */
    const uint16_t *scales; /* (n, groups) float16 bit patterns */
    const uint8_t *zeros;   /* (n, groups) */
    const float *bias;      /* (n,) or NULL */
    int64_t q_bytes, scales_bytes, zeros_bytes, bias_bytes; /* buffer sizes, checked against the shape */
    int32_t n, k, bits, group;
} lmq_qmat;

/* m activation rows of k floats quantized per block of 32; kp = roundup(k, 32), nb = kp / 32. */
typedef struct {
    int8_t *q;    /* (m, kp) codes, 0 past k */
    float *d;     /* (m, nb) block scales */
    float *d8;    /* (m, nb * 8) each block scale repeated 8 times (the SIMD lanes of one block) */
    int32_t *s;   /* (m, nb) block code sums */
    int32_t m, k, kp, nb;
} lmq_act;

/* One decoder block of a Llama-family model (pointers into arrays Python keeps alive). */
typedef struct {
    const float *attn_norm, *mlp_norm;  /* (hidden,) each */
    int64_t attn_norm_bytes, mlp_norm_bytes;
    lmq_qmat q, k, v, o;                /* (heads * head_dim, hidden) q; (kv_heads * head_dim, hidden) k, v; o back */
    lmq_qmat gate, up, down;            /* (inter, hidden) gate, up; (hidden, inter) down */
} lmq_layer_desc;

/* The whole model as Python hands it to lmq_create (every size is re-checked there). */
typedef struct {
    int32_t n_layers, hidden, n_heads, n_kv_heads, head_dim, inter, vocab, n_ctx, threads;
    float rms_eps, rope_theta;
    const float *embed;         /* (vocab, hidden) */
    const float *final_norm;    /* (hidden,) */
    const float *head_f32;      /* (vocab, hidden) float head, or NULL: head_q is used */
    int64_t embed_bytes, final_norm_bytes, head_f32_bytes;
    lmq_qmat head_q;            /* (vocab, hidden) quantized head (when head_f32 is NULL) */
    const lmq_layer_desc *layers; /* (n_layers,) */
    int64_t layers_bytes;
} lmq_model_desc;

/* Kernel variants (the optimization ladder): plain reference, unrolled scalar, SIMD (if compiled in). */
enum { LMQ_REF = 0, LMQ_UNROLL = 1, LMQ_SIMD = 2 };

/* ------------------------------------------------------------------ thread pool (lmq_pool.c) */
typedef struct lmq_pool lmq_pool;
typedef void (*lmq_task_fn)(void *ctx, int64_t chunk, int tid);
lmq_pool *lmq_pool_create(int nthreads); /* nthreads - 1 workers are started once; NULL on failure */
/* fn(ctx, i, tid) for every chunk i < n_chunks, on whichever thread claims it (tid 0 = the caller). */
void lmq_pool_run(lmq_pool *pool, lmq_task_fn fn, void *ctx, int64_t n_chunks);
int lmq_pool_threads(const lmq_pool *pool);
void lmq_pool_free(lmq_pool *pool);

/* ------------------------------------------------------------------ kernels (lmq_kernels.c) */
static inline int32_t lmq_kp(int32_t k) { return (k + LMQ_BLOCK - 1) / LMQ_BLOCK * LMQ_BLOCK; }
static inline int32_t lmq_groups(int32_t k, int32_t group) { return (k + group - 1) / group; }
static inline int64_t lmq_row_bytes(int32_t k, int32_t bits) { return (int64_t)lmq_kp(k) * bits / 8; }

/* 0 when W's shape, bit width, group size and buffer sizes agree; else an error message in err. */
int lmq_check_qmat(const lmq_qmat *w, char *err, size_t err_len);
/* Bind an activation buffer of m rows of k features to the memory at mem (lmq_act_bytes(m, k) bytes, 64-aligned). */
size_t lmq_act_bytes(int32_t m, int32_t k);
lmq_act lmq_act_bind(void *mem, int32_t m, int32_t k);
/* Quantize x (m, k) (row stride ldx) into act (rows split over the pool's threads when m > 1). */
void lmq_quantize(lmq_pool *pool, int variant, const float *x, int64_t ldx, lmq_act *act);
/* y (m, ldy) columns [0, n): act (m rows) times W^T. Rows of W are split over the pool's threads. */
/* Both return 0, or -1 when out of memory. */
int lmq_qgemm(lmq_pool *pool, int variant, const lmq_qmat *w, const lmq_act *act, float *y, int64_t ldy);
/* Several (<= 4) matrices sharing one input (q, k, v or gate, up): one parallel region over all their rows. */
int lmq_qgemm_multi(lmq_pool *pool, int variant, const lmq_qmat *const *w, int count, const lmq_act *act,
                    float *const *y, const int64_t *ldy);
/* Float head: y (m, ldy) = x (m, k) W^T, W (n, k) float32. */
void lmq_fgemm(lmq_pool *pool, int variant, const float *w, int32_t n, int32_t k, const float *x, int32_t m,
               float *y, int64_t ldy);
int lmq_simd_level(void);      /* 0 scalar, 1 AVX2, 2 AVX-512 VNNI */
void *lmq_alloc(size_t bytes); /* 64-byte aligned (free with free); NULL when out of memory */
const char *lmq_simd_name(void);

/* ------------------------------------------------------------------ packed file (lmq_file.c) */
/* zlib's CRC32 of n bytes continuing crc (0 to start): slice-by-8, and its bytewise reference. */
uint32_t lmq_crc32(uint32_t crc, const uint8_t *p, int64_t n);
uint32_t lmq_crc32_ref(uint32_t crc, const uint8_t *p, int64_t n);
/* Check a mapped .lmq file: the data region [data_start, data_start + data_bytes) ends the file, the n tensors
 * (spans: offset, nbytes pairs relative to the data region, sorted by offset) are 64-byte aligned, inside it and do
 * not overlap; with verify, the region's CRC32 equals crc. 0, or -1 with a message in err. */
int lmq_check_file(const uint8_t *file, int64_t file_bytes, int64_t data_start, int64_t data_bytes,
                   const int64_t *spans, int32_t n, uint32_t crc, int32_t verify, char *err, size_t err_len);

#endif /* LMQ_H */
