/*
 * lmq_model.c -- creating a decoder: every size Python passes is checked against the shapes before any pointer is
 * used, then the KV cache, RoPE tables and scratch are allocated once (nothing is allocated per token).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmq_model.h"

#define LMQ_CHUNK 128 /* tokens per prefill pass */

static int lmq_fail(char *err, size_t len, const char *msg) {
    snprintf(err, len, "%s", msg);
    return -1;
}

/* W must be (n, k); its buffers must match (lmq_check_qmat). */
static int lmq_check_shape(const lmq_qmat *w, int32_t n, int32_t k, const char *what, int layer, char *err,
                           size_t len) {
    char inner[LMQ_ERR_LEN];
    char where[32] = "";
    if (layer >= 0) snprintf(where, sizeof where, "layer %d ", layer);
    if (lmq_check_qmat(w, inner, sizeof inner)) {
        snprintf(err, len, "%s%s: %s", where, what, inner);
        return -1;
    }
    if (w->n != n || w->k != k) {
        snprintf(err, len, "%s%s has shape (%d, %d), expected (%d, %d)", where, what, w->n, w->k, n, k);
        return -1;
    }
    return 0;
}

static int lmq_check_desc(const lmq_model_desc *d, char *err, size_t len) {
    if (!d) return lmq_fail(err, len, "no model description");
    if (d->n_layers < 1 || d->hidden < 1 || d->n_heads < 1 || d->n_kv_heads < 1 || d->head_dim < 2 ||
        d->inter < 1 || d->vocab < 1)
        return lmq_fail(err, len, "model dimensions must be positive");
    if (d->n_heads % d->n_kv_heads != 0) return lmq_fail(err, len, "heads must be a multiple of kv heads");
    if (d->head_dim % 2 != 0) return lmq_fail(err, len, "head_dim must be even (RoPE rotates pairs)");
    if (d->n_ctx < 1 || d->n_ctx > (1 << 24)) return lmq_fail(err, len, "n_ctx must be in 1 .. 2^24");
    if (d->threads < 1 || d->threads > LMQ_MAX_THREADS) return lmq_fail(err, len, "threads must be in 1 .. 256");
    if (!(d->rms_eps > 0.0f) || !(d->rope_theta > 0.0f) || !isfinite(d->rms_eps) || !isfinite(d->rope_theta))
        return lmq_fail(err, len, "rms_eps and rope_theta must be positive and finite");
    const int64_t hv = (int64_t)d->vocab * d->hidden * 4;
    if (!d->embed || d->embed_bytes != hv) return lmq_fail(err, len, "embedding buffer does not match (vocab, hidden)");
    if (!d->final_norm || d->final_norm_bytes != (int64_t)d->hidden * 4)
        return lmq_fail(err, len, "final norm buffer does not match (hidden,)");
    if (d->head_f32) {
        if (d->head_f32_bytes != hv) return lmq_fail(err, len, "float head buffer does not match (vocab, hidden)");
    } else if (lmq_check_shape(&d->head_q, d->vocab, d->hidden, "lm_head", -1, err, len)) {
        return -1;
    }
    if (!d->layers || d->layers_bytes != (int64_t)d->n_layers * (int64_t)sizeof(lmq_layer_desc))
        return lmq_fail(err, len, "layer table does not match n_layers");
    const int32_t qd = d->n_heads * d->head_dim, kvd = d->n_kv_heads * d->head_dim, h = d->hidden;
    for (int i = 0; i < d->n_layers; ++i) {
        const lmq_layer_desc *l = &d->layers[i];
        if (!l->attn_norm || !l->mlp_norm || l->attn_norm_bytes != (int64_t)h * 4 || l->mlp_norm_bytes != (int64_t)h * 4) {
            snprintf(err, len, "layer %d: norm buffers do not match (hidden,)", i);
            return -1;
        }
        if (lmq_check_shape(&l->q, qd, h, "q_proj", i, err, len) || lmq_check_shape(&l->k, kvd, h, "k_proj", i, err, len) ||
            lmq_check_shape(&l->v, kvd, h, "v_proj", i, err, len) || lmq_check_shape(&l->o, h, qd, "o_proj", i, err, len) ||
            lmq_check_shape(&l->gate, d->inter, h, "gate_proj", i, err, len) ||
            lmq_check_shape(&l->up, d->inter, h, "up_proj", i, err, len) ||
            lmq_check_shape(&l->down, h, d->inter, "down_proj", i, err, len))
            return -1;
    }
    return 0;
}

static void *lmq_zalloc(size_t bytes, int *failed) {
    void *p = lmq_alloc(bytes);
    if (!p) *failed = 1;
    else memset(p, 0, bytes);
    return p;
}

lmq_model *lmq_create(const lmq_model_desc *desc, char *err, size_t len) {
    if (lmq_check_desc(desc, err, len)) return NULL;
    lmq_model *m = calloc(1, sizeof *m);
    if (!m) {
        lmq_fail(err, len, "out of memory");
        return NULL;
    }
    m->d = *desc;
    const lmq_model_desc *d = &m->d;
    int failed = 0;
    m->layers = malloc((size_t)d->n_layers * sizeof *m->layers);
    if (!m->layers) failed = 1;
    else memcpy(m->layers, desc->layers, (size_t)d->n_layers * sizeof *m->layers);
    m->d.layers = m->layers;
    m->q_dim = d->n_heads * d->head_dim, m->kv_dim = d->n_kv_heads * d->head_dim;
    m->chunk = d->n_ctx < LMQ_CHUNK ? d->n_ctx : LMQ_CHUNK;
    const size_t c = (size_t)m->chunk, cache = (size_t)d->n_layers * (size_t)d->n_ctx * (size_t)m->kv_dim;
    const size_t half = (size_t)d->n_ctx * (size_t)(d->head_dim / 2);
    m->kc = lmq_zalloc(cache * 2, &failed);
    m->vc = lmq_zalloc(cache * 2, &failed);
    m->rope_cos = lmq_zalloc(half * 4, &failed);
    m->rope_sin = lmq_zalloc(half * 4, &failed);
    m->x = lmq_zalloc(c * (size_t)d->hidden * 4, &failed);
    m->xn = lmq_zalloc(c * (size_t)d->hidden * 4, &failed);
    m->tmp = lmq_zalloc(c * (size_t)d->hidden * 4, &failed);
    m->q = lmq_zalloc(c * (size_t)m->q_dim * 4, &failed);
    m->att = lmq_zalloc(c * (size_t)m->q_dim * 4, &failed);
    m->k = lmq_zalloc(c * (size_t)m->kv_dim * 4, &failed);
    m->v = lmq_zalloc(c * (size_t)m->kv_dim * 4, &failed);
    m->gate = lmq_zalloc(c * (size_t)d->inter * 4, &failed);
    m->up = lmq_zalloc(c * (size_t)d->inter * 4, &failed);
    m->scores = lmq_zalloc((size_t)d->threads * (size_t)d->n_ctx * 4, &failed);
    int32_t kmax = d->hidden > m->q_dim ? d->hidden : m->q_dim;
    kmax = kmax > d->inter ? kmax : d->inter;
    m->act_mem = lmq_zalloc(lmq_act_bytes(m->chunk, kmax), &failed);
    if (!failed && !(m->pool = lmq_pool_create(d->threads))) failed = 2;
    if (failed) {
        lmq_fail(err, len, failed == 2 ? "could not start the thread pool" : "out of memory for the KV cache and buffers");
        lmq_free(m);
        return NULL;
    }
    /* RoPE as Hugging Face's Llama computes it in float32: inv_freq = 1 / theta^(2i / d), angle = pos * inv_freq */
    const int32_t hh = d->head_dim / 2;
    for (int32_t i = 0; i < hh; ++i) {
        const float inv = 1.0f / powf(d->rope_theta, (float)(2 * i) / (float)d->head_dim);
        for (int32_t p = 0; p < d->n_ctx; ++p) {
            const float a = (float)p * inv;
            m->rope_cos[(size_t)p * hh + i] = cosf(a);
            m->rope_sin[(size_t)p * hh + i] = sinf(a);
        }
    }
    return m;
}

void lmq_free(lmq_model *m) {
    if (!m) return;
    lmq_pool_free(m->pool);
    void *bufs[] = {m->layers, m->kc, m->vc, m->rope_cos, m->rope_sin, m->x, m->xn, m->tmp, m->q, m->att,
                    m->k, m->v, m->gate, m->up, m->scores, m->act_mem};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i) free(bufs[i]);
    free(m);
}

void lmq_reset(lmq_model *m) { m->pos = 0; }

int32_t lmq_position(const lmq_model *m) { return m->pos; }

const char *lmq_build_info(void) { return lmq_simd_name(); }
