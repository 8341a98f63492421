/*
 * lmq_pool.c -- a persistent thread pool: nthreads - 1 workers are created once; lmq_pool_run(fn, ctx, n) then runs
 * fn(ctx, i, tid) for every chunk i < n on whichever thread claims it first, the caller included.
 *
 * Chunks are claimed by compare-and-swap on one 64-bit word (generation:24 | chunks:20 | next chunk:20), so a worker
 * the OS has not scheduled yet simply claims nothing: the caller (and the other workers) take its share instead of
 * waiting for it (this machine's cores are often shared). The chunk count lives in the same word as the generation so
 * that a worker still holding the previous generation's word can never claim a chunk of the next one: its
 * compare-and-swap fails as soon as the generation changes (with the count in a separate variable, a late worker
 * could read the new count beside the old word, claim a phantom chunk, run it on the new task and count it twice;
 * the caller then waited forever for an exact count it had already passed). A decode step runs ~150 small parallel regions, so an idle worker
 * spins on the word for a while before it sleeps on a condition variable; the caller waits for the count of finished
 * chunks, not for the workers.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "lmq.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LMQ_PAUSE() _mm_pause()
#else
#define LMQ_PAUSE() ((void)0)
#endif

#define LMQ_SPIN 20000 /* pause iterations (~0.1-1 ms) an idle worker watches for work before it sleeps */

/* The work word: generation in bits 40..63, chunk count in bits 20..39, next unclaimed chunk in bits 0..19. */
#define LMQ_GEN_SHIFT 40
#define LMQ_TOTAL_SHIFT 20
#define LMQ_FIELD_MASK ((uint64_t)0xFFFFF)
#define LMQ_MAX_CHUNKS ((int64_t)LMQ_FIELD_MASK) /* chunks per generation; larger runs go in slices */
#define LMQ_GEN(w) ((uint32_t)((w) >> LMQ_GEN_SHIFT))

struct lmq_pool {
    int n;                /* threads, the caller included */
    int started;          /* workers created */
    pthread_t *threads;   /* (n - 1,) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t work;        /* atomic: generation:24 | chunks:20 | next unclaimed chunk:20 */
    int64_t done;         /* atomic: chunks finished in this generation */
    lmq_task_fn fn;       /* atomic loads/stores (pointer-sized) */
    void *ctx;
    int64_t base;         /* atomic: index of this generation's first chunk (runs of more than LMQ_MAX_CHUNKS) */
    int stop;             /* under mu */
};

typedef struct {
    lmq_pool *pool;
    int tid;
} lmq_worker_arg;

/* Claim and run chunks of generation gen until none is left. */
static void lmq_claim(lmq_pool *p, uint32_t gen, int tid) {
    uint64_t w = __atomic_load_n(&p->work, __ATOMIC_ACQUIRE);
    for (;;) {
        if (LMQ_GEN(w) != gen) return;
        const int64_t i = (int64_t)(w & LMQ_FIELD_MASK);
        const int64_t total = (int64_t)((w >> LMQ_TOTAL_SHIFT) & LMQ_FIELD_MASK);
        if (i >= total) return;
        if (__atomic_compare_exchange_n(&p->work, &w, w + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            /* chunk i of this generation is ours: the generation cannot end before we count it done, so fn, ctx
             * and base (stored before the word) are this generation's */
            lmq_task_fn fn = __atomic_load_n(&p->fn, __ATOMIC_ACQUIRE);
            const int64_t base = __atomic_load_n(&p->base, __ATOMIC_ACQUIRE);
            fn(__atomic_load_n(&p->ctx, __ATOMIC_ACQUIRE), base + i, tid);
            __atomic_add_fetch(&p->done, 1, __ATOMIC_ACQ_REL);
            w = __atomic_load_n(&p->work, __ATOMIC_ACQUIRE);
        }
    }
}

static void *lmq_worker(void *arg) {
    lmq_worker_arg *wa = arg;
    lmq_pool *p = wa->pool;
    const int tid = wa->tid;
    free(wa);
    uint32_t seen = 0;
    for (;;) {
        uint32_t gen = LMQ_GEN(__atomic_load_n(&p->work, __ATOMIC_ACQUIRE));
        for (int i = 0; i < LMQ_SPIN && gen == seen; ++i) {
            LMQ_PAUSE();
            gen = LMQ_GEN(__atomic_load_n(&p->work, __ATOMIC_ACQUIRE));
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->mu);
            while ((gen = LMQ_GEN(__atomic_load_n(&p->work, __ATOMIC_ACQUIRE))) == seen && !p->stop)
                pthread_cond_wait(&p->cv, &p->mu);
            const int stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop) return NULL;
        }
        seen = gen;
        lmq_claim(p, gen, tid);
    }
}

lmq_pool *lmq_pool_create(int nthreads) {
    if (nthreads < 1 || nthreads > LMQ_MAX_THREADS) return NULL;
    lmq_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = nthreads;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    if (nthreads > 1 && !(p->threads = calloc((size_t)(nthreads - 1), sizeof *p->threads))) {
        lmq_pool_free(p);
        return NULL;
    }
    for (int i = 1; i < nthreads; ++i) {
        lmq_worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            lmq_pool_free(p);
            return NULL;
        }
        wa->pool = p, wa->tid = i;
        if (pthread_create(&p->threads[i - 1], NULL, lmq_worker, wa) != 0) {
            free(wa);
            lmq_pool_free(p);
            return NULL;
        }
        p->started = i;
    }
    return p;
}

/* One generation: chunks base .. base + n - 1 (n <= LMQ_MAX_CHUNKS). */
static void lmq_pool_run_slice(lmq_pool *p, lmq_task_fn fn, void *ctx, int64_t base, int64_t n) {
    /* the caller is the only writer of a new generation; every chunk of the previous one has finished */
    const uint32_t gen = (LMQ_GEN(__atomic_load_n(&p->work, __ATOMIC_ACQUIRE)) + 1) & 0xFFFFFFu;
    __atomic_store_n(&p->fn, fn, __ATOMIC_RELEASE);
    __atomic_store_n(&p->ctx, ctx, __ATOMIC_RELEASE);
    __atomic_store_n(&p->base, base, __ATOMIC_RELEASE);
    __atomic_store_n(&p->done, 0, __ATOMIC_RELEASE);
    pthread_mutex_lock(&p->mu); /* so a worker about to sleep cannot miss the new generation */
    __atomic_store_n(&p->work, ((uint64_t)gen << LMQ_GEN_SHIFT) | ((uint64_t)n << LMQ_TOTAL_SHIFT), __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    lmq_claim(p, gen, 0);
    for (long spins = 0; __atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < n; ++spins) {
        if (spins < LMQ_SPIN) LMQ_PAUSE();
        else sched_yield(); /* a worker holding a chunk was descheduled: let it run */
    }
}

void lmq_pool_run(lmq_pool *p, lmq_task_fn fn, void *ctx, int64_t n_chunks) {
    if (n_chunks <= 0) return;
    if (p->n == 1 || n_chunks == 1) {
        for (int64_t i = 0; i < n_chunks; ++i) fn(ctx, i, 0);
        return;
    }
    for (int64_t base = 0; base < n_chunks; base += LMQ_MAX_CHUNKS) {
        const int64_t n = n_chunks - base < LMQ_MAX_CHUNKS ? n_chunks - base : LMQ_MAX_CHUNKS;
        lmq_pool_run_slice(p, fn, ctx, base, n);
    }
}

int lmq_pool_threads(const lmq_pool *p) { return p->n; }

void lmq_pool_free(lmq_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; ++i) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}
