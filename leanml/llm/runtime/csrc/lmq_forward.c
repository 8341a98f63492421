/*
 * lmq_forward.c -- the Llama decoder step: embedding lookup, per layer RMSNorm -> q/k/v (one parallel region) ->
 * RoPE -> grouped-query attention over the float16 KV cache -> o_proj + residual -> RMSNorm -> gate/up (one region)
 * -> SiLU(gate) * up -> down_proj + residual; final RMSNorm and the head (float32 or quantized). Every matrix product
 * is W4A8/W8A8 (lmq_kernels.c); the per-token steps run as parallel tasks over the tokens of a prefill chunk.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lmq_model.h"
#include "lmq_simd.h"

enum { OP_NORM, OP_ADD_NORM, OP_ROPE, OP_SILU, OP_QUANT, OP_ATTN };

typedef struct {
    lmq_model *m;
    int op, layer;
    int32_t p0;           /* position of the chunk's first token */
    const float *norm;    /* (hidden,) weight of OP_NORM / OP_ADD_NORM */
    int32_t row0;         /* first token row the op touches (the head may need only the last) */
    lmq_act *act;         /* where normed / activated rows are quantized (NULL: keep them float in xn) */
} lmq_step;

/* xn[t] = x[t] / rms(x[t]) * w, as Hugging Face's LlamaRMSNorm (float32 in, float32 out). */
static void lmq_rmsnorm(const float *x, const float *w, int32_t n, float eps, float *out) {
    double ss = 0.0;
    for (int32_t i = 0; i < n; ++i) ss += (double)x[i] * x[i];
    const float inv = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int32_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

static void lmq_quant_row(lmq_act *a, int32_t t, const float *x) {
    lmq_quantize_row_simd(x, a->k, a->q + (int64_t)t * a->kp, a->d + (int64_t)t * a->nb,
                          a->d8 + (int64_t)t * a->nb * 8, a->s + (int64_t)t * a->nb);
}

/* Rotate pairs (i, i + d/2) of one head by the angles of position p (rotate_half convention). */
static void lmq_rope(float *v, const float *cs, const float *sn, int32_t half) {
    for (int32_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
    }
}

/* One query head of token t against cache positions 0 .. p (causal), into att[t, head]. */
static void lmq_attend(lmq_model *m, int layer, int32_t t, int32_t p, int32_t head, int tid) {
    const lmq_model_desc *d = &m->d;
    const int32_t hd = d->head_dim, kvh = head / (d->n_heads / d->n_kv_heads);
    const size_t base = ((size_t)layer * d->n_kv_heads + (size_t)kvh) * (size_t)d->n_ctx * (size_t)hd;
    const float *q = m->q + (size_t)t * m->q_dim + (size_t)head * hd;
    float *s = m->scores + (size_t)tid * d->n_ctx, *out = m->att + (size_t)t * m->q_dim + (size_t)head * hd;
    lmq_attend_simd(q, m->kc + base, m->vc + base, p + 1, hd, 1.0f / sqrtf((float)hd), s, out);
}

static void lmq_step_task(void *ctx, int64_t chunk, int tid) {
    const lmq_step *st = ctx;
    lmq_model *m = st->m;
    const lmq_model_desc *d = &m->d;
    if (st->op == OP_ATTN) {
        const int32_t t = (int32_t)(chunk / d->n_heads), h = (int32_t)(chunk % d->n_heads);
        lmq_attend(m, st->layer, t, st->p0 + t, h, tid);
        return;
    }
    const int32_t t = st->row0 + (int32_t)chunk, hs = d->hidden;
    float *x = m->x + (size_t)t * hs, *xn = m->xn + (size_t)t * hs;
    switch (st->op) {
    case OP_ADD_NORM:
        for (int32_t i = 0; i < hs; ++i) x[i] += m->tmp[(size_t)t * hs + i];
        /* fall through */
    case OP_NORM:
        lmq_rmsnorm(x, st->norm, hs, d->rms_eps, xn);
        if (st->act) lmq_quant_row(st->act, t - st->row0, xn);
        break;
    case OP_ROPE: {
        const int32_t p = st->p0 + t, half = d->head_dim / 2, hd = d->head_dim;
        const float *cs = m->rope_cos + (size_t)p * half, *sn = m->rope_sin + (size_t)p * half;
        for (int32_t h = 0; h < d->n_heads; ++h) lmq_rope(m->q + (size_t)t * m->q_dim + (size_t)h * hd, cs, sn, half);
        for (int32_t h = 0; h < d->n_kv_heads; ++h) {
            float *k = m->k + (size_t)t * m->kv_dim + (size_t)h * hd;
            const float *v = m->v + (size_t)t * m->kv_dim + (size_t)h * hd;
            lmq_rope(k, cs, sn, half);
            const size_t at = (((size_t)st->layer * d->n_kv_heads + (size_t)h) * (size_t)d->n_ctx + (size_t)p) * hd;
            for (int32_t i = 0; i < hd; ++i) m->kc[at + i] = lmq_f2h(k[i]), m->vc[at + i] = lmq_f2h(v[i]);
        }
        break;
    }
    case OP_SILU: {
        float *g = m->gate + (size_t)t * d->inter;
        const float *u = m->up + (size_t)t * d->inter;
        for (int32_t i = 0; i < d->inter; ++i) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        lmq_quant_row(st->act, t, g);
        break;
    }
    case OP_QUANT:
        lmq_quant_row(st->act, t, m->att + (size_t)t * m->q_dim);
        break;
    default:
        break;
    }
}

static void lmq_run(lmq_model *m, lmq_step *st, int op, int64_t tasks) {
    st->op = op;
    lmq_pool_run(m->pool, lmq_step_task, st, tasks);
}

/* n <= chunk tokens at positions pos .. pos + n - 1; logits of rows [row0, n) into out (rows of vocab). */
static int lmq_chunk(lmq_model *m, const int32_t *ids, int32_t n, int32_t row0, float *out) {
    const lmq_model_desc *d = &m->d;
    const int32_t hs = d->hidden;
    for (int32_t t = 0; t < n; ++t) memcpy(m->x + (size_t)t * hs, d->embed + (size_t)ids[t] * hs, (size_t)hs * 4);
    lmq_step st = {m, OP_NORM, 0, m->pos, NULL, 0, NULL};
    lmq_act ah = lmq_act_bind(m->act_mem, n, hs), aq = lmq_act_bind(m->act_mem, n, m->q_dim);
    lmq_act ai = lmq_act_bind(m->act_mem, n, d->inter);
    int rc = 0;
    for (int l = 0; l < d->n_layers && !rc; ++l) {
        const lmq_layer_desc *L = &m->layers[l];
        st.layer = l, st.act = &ah, st.norm = L->attn_norm;
        lmq_run(m, &st, l == 0 ? OP_NORM : OP_ADD_NORM, n);
        const lmq_qmat *qkv[3] = {&L->q, &L->k, &L->v};
        float *ys[3] = {m->q, m->k, m->v};
        const int64_t ld[3] = {m->q_dim, m->kv_dim, m->kv_dim};
        rc |= lmq_qgemm_multi(m->pool, LMQ_SIMD, qkv, 3, &ah, ys, ld);
        lmq_run(m, &st, OP_ROPE, n);
        lmq_run(m, &st, OP_ATTN, (int64_t)n * d->n_heads);
        st.act = &aq;
        lmq_run(m, &st, OP_QUANT, n);
        rc |= lmq_qgemm(m->pool, LMQ_SIMD, &L->o, &aq, m->tmp, hs);
        st.act = &ah, st.norm = L->mlp_norm;
        lmq_run(m, &st, OP_ADD_NORM, n);
        const lmq_qmat *gu[2] = {&L->gate, &L->up};
        float *yg[2] = {m->gate, m->up};
        const int64_t lg[2] = {d->inter, d->inter};
        rc |= lmq_qgemm_multi(m->pool, LMQ_SIMD, gu, 2, &ah, yg, lg);
        st.act = &ai;
        lmq_run(m, &st, OP_SILU, n);
        rc |= lmq_qgemm(m->pool, LMQ_SIMD, &L->down, &ai, m->tmp, hs);
    }
    if (rc) return -1;
    m->pos += n; /* the cache now holds these positions */
    if (!out) return 0; /* a prefill chunk before the last: no logits wanted */
    const int32_t rows = n - row0;
    lmq_act ax = lmq_act_bind(m->act_mem, rows, hs);
    st.row0 = row0, st.norm = d->final_norm, st.act = d->head_f32 ? NULL : &ax;
    lmq_run(m, &st, OP_ADD_NORM, rows);
    if (d->head_f32) {
        lmq_fgemm(m->pool, LMQ_SIMD, d->head_f32, d->vocab, hs, m->xn + (size_t)row0 * hs, rows, out, d->vocab);
        return 0;
    }
    return lmq_qgemm(m->pool, LMQ_SIMD, &d->head_q, &ax, out, d->vocab);
}

int lmq_forward(lmq_model *m, const int32_t *ids, int32_t n, float *logits, int32_t all_logits, char *err,
                size_t len) {
    if (!m || !ids || !logits || n < 1) {
        snprintf(err, len, "forward needs a model, at least one token and a logits buffer");
        return -1;
    }
    if ((int64_t)m->pos + n > m->d.n_ctx) {
        snprintf(err, len, "context full: %d cached + %d new tokens > n_ctx %d", m->pos, n, m->d.n_ctx);
        return -1;
    }
    for (int32_t i = 0; i < n; ++i) {
        if (ids[i] < 0 || ids[i] >= m->d.vocab) {
            snprintf(err, len, "token id %d at %d is outside the vocabulary of %d", ids[i], i, m->d.vocab);
            return -1;
        }
    }
    for (int32_t off = 0; off < n; off += m->chunk) {
        const int32_t c = n - off < m->chunk ? n - off : m->chunk, last = off + c == n;
        float *out = all_logits ? logits + (size_t)off * m->d.vocab : last ? logits : NULL;
        if (lmq_chunk(m, ids + off, c, all_logits ? 0 : c - 1, out)) {
            snprintf(err, len, "out of memory during the forward pass");
            return -1;
        }
    }
    return 0;
}
