/* The CPU kernels' thread pool and their per-thread scratch memory (see
 * pool.h): what kernels.c and lowp.c run their larger loops on, apart from
 * the loops themselves. */
#include "models/cpu/pool.h"
#include "models/tensor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the thread pool ----
 * A job has one part per thread, and the caller and the workers take the
 * parts from a shared ticket in any order: a worker that is asleep, late
 * or sharing its core with another process leaves its part to the caller
 * instead of holding the whole job up (with a fixed part per thread, one
 * busy-looping process on the 2 cores made a caption 6x slower; cutting
 * jobs into 4 parts per thread did no better under load and cost 5-10%
 * on a quiet machine). The ticket packs the job's generation, its part
 * count and the next part into one word, so taking a part is one
 * compare-and-swap that fails for a job that has moved on. Workers spin
 * briefly, then sleep on a condition variable; sgemm calls (OpenBLAS's
 * own threads) never overlap a pool job, so the two never compete for
 * the cores. */
#define S_WORKER_SPINS 20000 /* pauses before a worker sleeps (about a millisecond) */
/* pauses before a caller sleeps on a part a worker still runs: decode
 * steps are jobs of tens of microseconds, and a caller that slept after
 * 2,000 made a BLIP-base beam-4 caption 2-4% slower on a quiet machine
 * (5-8% faster beside a busy process: the spin takes CPU from it) */
#define S_CALLER_SPINS 200000

static struct {
    pthread_mutex_t use, m;
    pthread_cond_t cv, done_cv;
    int n;                  /* threads including the caller */
    pthread_t th[63];
    uint32_t gen;           /* the last job's generation (under use) */
    _Atomic uint64_t ticket; /* generation << 32 | parts << 16 | next part */
    atomic_int done;        /* parts of the current job finished */
    nr_cpu_task_fn fn;      /* read only by a thread that holds one of the job's parts */
    void *arg;
} s_pool = {.use = PTHREAD_MUTEX_INITIALIZER, .m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
            .done_cv = PTHREAD_COND_INITIALIZER, .n = 1};
/* A spin-wait hint (x86 pause; nothing elsewhere). */
static inline void s_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static pthread_once_t s_pool_once = PTHREAD_ONCE_INIT;
static int s_pool_want = 1;

static inline uint32_t s_gen_of(uint64_t t) { return (uint32_t)(t >> 32); }

/* Takes the next part of job gen: 1 with *part and *nparts set, 0 when
 * every part is taken or the job is over. */
static int s_take(uint32_t gen, int *part, int *nparts) {
    uint64_t t = atomic_load_explicit(&s_pool.ticket, memory_order_acquire);
    for (;;) {
        const int np = (int)((t >> 16) & 0xffff), next = (int)(t & 0xffff);
        if (s_gen_of(t) != gen || next >= np) return 0;
        if (atomic_compare_exchange_weak_explicit(&s_pool.ticket, &t, t + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *part = next;
            *nparts = np;
            return 1;
        }
    }
}

/* Runs parts of job gen until none is left; 1 when this thread finished
 * the job's last part. */
static int s_work(uint32_t gen) {
    int part, nparts, last = 0;
    while (s_take(gen, &part, &nparts)) {
        s_pool.fn(s_pool.arg, part, nparts);
        last = atomic_fetch_add_explicit(&s_pool.done, 1, memory_order_acq_rel) + 1 == nparts;
    }
    return last;
}

static void *s_worker(void *p) {
    (void)p;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = s_gen_of(atomic_load_explicit(&s_pool.ticket, memory_order_acquire))) == seen &&
               spins < S_WORKER_SPINS) {
            spins++;
            s_pause();
        }
        if (g == seen) {
            pthread_mutex_lock(&s_pool.m);
            while ((g = s_gen_of(atomic_load_explicit(&s_pool.ticket, memory_order_acquire))) == seen)
                pthread_cond_wait(&s_pool.cv, &s_pool.m);
            pthread_mutex_unlock(&s_pool.m);
        }
        seen = g;
        if (s_work(g)) {
            pthread_mutex_lock(&s_pool.m);
            pthread_cond_signal(&s_pool.done_cv);
            pthread_mutex_unlock(&s_pool.m);
        }
    }
    return NULL;
}

static void s_pool_init(void) {
    int n = s_pool_want < 1 ? 1 : s_pool_want > 64 ? 64 : s_pool_want;
    int started = 1;
    for (int i = 1; i < n; i++) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&s_pool.th[i - 1], &at, s_worker, NULL) == 0) started++;
        pthread_attr_destroy(&at);
        if (started != i + 1) break;
    }
    s_pool.n = started;
}

void nr_cpu_pool_init(int threads) {
    s_pool_want = threads;
    pthread_once(&s_pool_once, s_pool_init);
}

int nr_cpu_pool_size(void) { return s_pool.n; }

void nr_cpu_run(nr_cpu_task_fn fn, void *arg) {
    if (s_pool.n <= 1 || pthread_mutex_trylock(&s_pool.use) != 0) {
        fn(arg, 0, 1);
        return;
    }
    const int nparts = s_pool.n;
    const uint32_t gen = ++s_pool.gen;
    s_pool.fn = fn;
    s_pool.arg = arg;
    atomic_store_explicit(&s_pool.done, 0, memory_order_relaxed);
    atomic_store_explicit(&s_pool.ticket, (uint64_t)gen << 32 | (uint64_t)nparts << 16, memory_order_release);
    pthread_mutex_lock(&s_pool.m);
    pthread_cond_broadcast(&s_pool.cv);
    pthread_mutex_unlock(&s_pool.m);
    s_work(gen);
    /* every part is taken; wait for the ones other threads still run */
    int spins = 0;
    while (atomic_load_explicit(&s_pool.done, memory_order_acquire) < nparts && spins < S_CALLER_SPINS) {
        spins++;
        s_pause();
    }
    if (atomic_load_explicit(&s_pool.done, memory_order_acquire) < nparts) {
        pthread_mutex_lock(&s_pool.m);
        while (atomic_load_explicit(&s_pool.done, memory_order_acquire) < nparts)
            pthread_cond_wait(&s_pool.done_cv, &s_pool.m);
        pthread_mutex_unlock(&s_pool.m);
    }
    pthread_mutex_unlock(&s_pool.use);
}

/* ---- per-thread scratch (see pool.h) ----
 * The buffers hang off a _Thread_local pointer (no lock, no lookup on the
 * hot path); a pthread key with a destructor frees them when the thread
 * exits. If no key can be made (PTHREAD_KEYS_MAX reached), the scratch
 * still works but a thread's buffers outlive it. */
typedef struct {
    void *p[NR_CPU_SCRATCH_COUNT];
    size_t size[NR_CPU_SCRATCH_COUNT];
} s_scratch_t;

static _Thread_local s_scratch_t *s_scratch;
static pthread_key_t s_scratch_key;
static int s_scratch_key_ok;
static pthread_once_t s_scratch_once = PTHREAD_ONCE_INIT;

static void s_scratch_destroy(void *p) {
    s_scratch_t *sc = p;
    if (!sc) return;
    for (int i = 0; i < NR_CPU_SCRATCH_COUNT; i++) free(sc->p[i]);
    free(sc);
    if (s_scratch == sc) s_scratch = NULL;
}

static void s_scratch_key_init(void) { s_scratch_key_ok = pthread_key_create(&s_scratch_key, s_scratch_destroy) == 0; }

void *nr_cpu_scratch(nr_cpu_scratch_slot_t slot, size_t bytes) {
    if ((int)slot < 0 || slot >= NR_CPU_SCRATCH_COUNT || bytes == 0) return NULL;
    s_scratch_t *sc = s_scratch;
    if (!sc) {
        pthread_once(&s_scratch_once, s_scratch_key_init);
        sc = calloc(1, sizeof(*sc));
        if (!sc) return NULL;
        if (s_scratch_key_ok) pthread_setspecific(s_scratch_key, sc);
        s_scratch = sc;
    }
    if (sc->size[slot] >= bytes) return sc->p[slot];
    /* grow by at least half, so sizes that creep up (attention over a
     * growing KV cache) reallocate only a few times; the old contents are
     * not needed, so free first and never hold both */
    size_t want = sc->size[slot] + sc->size[slot] / 2;
    want = want > bytes ? want : bytes;
    want = (want + 4095) & ~(size_t)4095;
    if (want < bytes) return NULL;
    free(sc->p[slot]);
    sc->p[slot] = nr_aligned_alloc(want);
    if (!sc->p[slot] && want > bytes) { /* the headroom did not fit: try the exact size */
        want = bytes;
        sc->p[slot] = nr_aligned_alloc(want);
    }
    sc->size[slot] = sc->p[slot] ? want : 0;
    return sc->p[slot];
}

void nr_cpu_scratch_free(void) {
    s_scratch_t *sc = s_scratch;
    if (!sc) return;
    if (s_scratch_key_ok) pthread_setspecific(s_scratch_key, NULL);
    s_scratch_destroy(sc); /* and forgets it */
}
