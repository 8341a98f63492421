/*
 * lmq_model.h -- the decoder's state (private to lmq_model.c and lmq_forward.c) and its public entry points.
 *
 * A model holds pointers into Python's arrays (weights in the C runtime layout, float32 norms and embeddings), a
 * persistent thread pool, a float16 KV cache preallocated for n_ctx positions, RoPE tables, and scratch buffers for a
 * chunk of up to `chunk` tokens (a prompt is prefilled chunk by chunk).
 */
#ifndef LMQ_MODEL_H
#define LMQ_MODEL_H

#include "lmq.h"

typedef struct lmq_model {
    lmq_model_desc d;          /* a copy; d.layers points at `layers` */
    lmq_layer_desc *layers;    /* (n_layers,) a copy */
    lmq_pool *pool;
    int32_t pos;               /* positions filled in the KV cache */
    int32_t chunk;             /* most tokens per forward pass */
    int32_t q_dim, kv_dim;     /* n_heads * head_dim, n_kv_heads * head_dim */
    uint16_t *kc, *vc;         /* (n_layers, n_kv_heads, n_ctx, head_dim) float16 keys (after RoPE) and values */
    float *rope_cos, *rope_sin;/* (n_ctx, head_dim / 2) */
    float *x, *xn, *tmp;       /* (chunk, hidden) residual stream, normed input, projection output */
    float *q, *k, *v, *att;    /* (chunk, q_dim), (chunk, kv_dim) x 2, (chunk, q_dim) */
    float *gate, *up;          /* (chunk, inter) */
    float *scores;             /* (threads, n_ctx) attention scores, one row per thread */
    void *act_mem;             /* quantized activations of (chunk, max(hidden, q_dim, inter)) */
} lmq_model;

/* Check desc, allocate the cache and scratch, start the pool; NULL with a message in err on failure. */
lmq_model *lmq_create(const lmq_model_desc *desc, char *err, size_t err_len);
void lmq_free(lmq_model *m);
void lmq_reset(lmq_model *m);               /* forget every cached position */
int32_t lmq_position(const lmq_model *m);   /* positions in the cache */
/* Append n tokens at the current position; logits (n, vocab) when all_logits, else (vocab,) of the last token.
 * 0, or -1 with a message in err (the cache is unchanged when the input is refused). */
int lmq_forward(lmq_model *m, const int32_t *ids, int32_t n, float *logits, int32_t all_logits, char *err,
                size_t err_len);

#endif /* LMQ_MODEL_H */
