/*
 * leanml_pool.h -- the host multi-thread mode of a generated model: a fork-join pool that runs one layer's parts
 * on N threads (the caller runs part 0, N - 1 workers the others), and the row bands a layer is split into.
 * POSIX threads and C11 atomics; host only (a microcontroller build never includes it). Included by the generated
 * model source when it is built with DeployConfig(threads=N > 1), after leanml_kernels.h.
 *
 * Synchronization: the caller publishes the task, then bumps `job` (seq_cst); workers spin on `job` for a short
 * while (a layer lasts microseconds), then sleep on a condition variable (between inferences they do not burn a
 * core). The caller wakes sleepers only when there are some, runs part 0, and spins until every worker has
 * finished its part (`remaining` reaches 0). The pool lives as long as the process (it is a static of the
 * generated model, started once with pthread_once).
 */
#ifndef LEANML_POOL_H
#define LEANML_POOL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#define DK_POOL_MAX_THREADS 8
#define DK_POOL_SPINS 20000 /* polls of `job` before a worker sleeps (tens to hundreds of microseconds) */
#define DK_POOL_YIELD_EVERY 64 /* a busy-wait yields the core this often: a shared machine stays usable */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DK_CPU_RELAX() _mm_pause()
#else
#define DK_CPU_RELAX() ((void)0)
#endif

/* One part of a layer: (model input, arena, part index, number of parts). */
typedef void (*dk_pool_task_t)(const float *input, int8_t *arena, int part, int parts);

typedef struct dk_pool dk_pool_t;

typedef struct {
    dk_pool_t *pool;
    int part;
} dk_pool_slot_t;

struct dk_pool {
    int parts;                                  /* threads, the caller included */
    pthread_t workers[DK_POOL_MAX_THREADS - 1]; /* parts - 1 started */
    dk_pool_slot_t slots[DK_POOL_MAX_THREADS - 1];
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint job;      /* bumped once per task */
    atomic_int remaining; /* workers still running the current task */
    atomic_int sleeping;  /* workers waiting on `wake` */
    dk_pool_task_t task;  /* the current task and its arguments (published before `job`) */
    const float *input;
    int8_t *arena;
};

/* One poll of a busy-wait: a CPU pause, and every DK_POOL_YIELD_EVERY polls a yield of the core. */
static inline void dk_pool_pause(int spins) {
    if (spins % DK_POOL_YIELD_EVERY == 0)
        sched_yield();
    else
        DK_CPU_RELAX();
}

static inline void *dk_pool_worker(void *arg) {
    dk_pool_slot_t *slot = (dk_pool_slot_t *)arg;
    dk_pool_t *p = slot->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned job;
        int spins = 0;
        while ((job = atomic_load(&p->job)) == seen) {
            if (++spins < DK_POOL_SPINS) {
                dk_pool_pause(spins);
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping, 1);
            while (atomic_load(&p->job) == seen) pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        seen = job;
        p->task(p->input, p->arena, slot->part, p->parts);
        atomic_fetch_sub(&p->remaining, 1);
    }
    return (void *)0;
}

/* Start `parts - 1` workers (parts in [1, DK_POOL_MAX_THREADS]); returns the number of parts that run (1 when a
 * thread could not be created: the model then runs on the caller alone, with the same results). */
static inline int dk_pool_start(dk_pool_t *p, int parts) {
    pthread_mutex_init(&p->mu, (const pthread_mutexattr_t *)0);
    pthread_cond_init(&p->wake, (const pthread_condattr_t *)0);
    atomic_init(&p->job, 0u);
    atomic_init(&p->remaining, 0);
    atomic_init(&p->sleeping, 0);
    p->parts = 1;
    for (int i = 1; i < parts && i < DK_POOL_MAX_THREADS; ++i) {
        p->slots[i - 1].pool = p;
        p->slots[i - 1].part = i;
        if (pthread_create(&p->workers[i - 1], (const pthread_attr_t *)0, dk_pool_worker, &p->slots[i - 1]) != 0)
            break;
        p->parts = i + 1;
    }
    return p->parts;
}

/* Run `task` on every part and return when all parts are done. */
static inline void dk_pool_run(dk_pool_t *p, dk_pool_task_t task, const float *input, int8_t *arena) {
    if (p->parts == 1) {
        task(input, arena, 0, 1);
        return;
    }
    p->task = task;
    p->input = input;
    p->arena = arena;
    atomic_store(&p->remaining, p->parts - 1);
    atomic_fetch_add(&p->job, 1u);
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    task(input, arena, 0, p->parts);
    for (int spins = 1; atomic_load(&p->remaining) > 0; ++spins) dk_pool_pause(spins);
}

/* The output rows [out_row0, out_row0 + out_rows) of part `part` of `parts`, and the input rows they read
 * [in_row0, in_row0 + in_rows) with the padding above them (pad_top), for a window of kh rows, stride sh, top
 * padding ph over in_h input rows. A kernel called on (input + in_row0 rows, in_rows, pad_top, out_rows)
 * computes exactly those output rows: windows below the band's last input row only occur at the real bottom. */
typedef struct {
    int out_row0, out_rows, in_row0, in_rows, pad_top;
} dk_band_t;

static inline dk_band_t dk_band_rows(int part, int parts, int out_h, int sh, int ph, int kh, int in_h) {
    dk_band_t b;
    const int o0 = (int)((int64_t)out_h * part / parts), o1 = (int)((int64_t)out_h * (part + 1) / parts);
    int i0 = o0 * sh - ph, i1 = (o1 - 1) * sh - ph + kh;
    b.out_row0 = o0;
    b.out_rows = o1 - o0;
    b.pad_top = i0 < 0 ? -i0 : 0;
    i0 = i0 < 0 ? 0 : i0;
    i1 = i1 > in_h ? in_h : i1;
    b.in_row0 = i0;
    b.in_rows = i1 > i0 ? i1 - i0 : 0;
    return b;
}

/* [first, first + count) of n items for part `part` of `parts`. */
static inline void dk_band_items(int part, int parts, int32_t n, int32_t *first, int32_t *count) {
    const int32_t a = (int32_t)((int64_t)n * part / parts), b = (int32_t)((int64_t)n * (part + 1) / parts);
    *first = a;
    *count = b - a;
}

#endif /* LEANML_POOL_H */
