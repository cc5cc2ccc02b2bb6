/* Concurrent callers of the CPU kernels: 4 threads call the kernels at the
 * same time, several times each, and every output must equal, bit for bit,
 * the one computed first by a single thread. This checks the per-thread
 * scratch buffers (nr_cpu_scratch), the shared thread pool (one job at a
 * time; a caller that finds it busy runs its job itself) and the CPU
 * backend's lock-free table of converted BF16/INT8 weights, whose entries
 * are made on first use while other threads look them up. The kernels
 * split work by output element only, so the result does not depend on who
 * ran which part: any difference is a race. ctest runs this file once per
 * CPU kernel path (NR_CPU_PATH, tests/precision.cmake); a path the CPU
 * lacks skips. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/backend.h"
#include "models/cpu/cpu.h"
#include "models/cpu/dispatch.h"
#include "models/cpu/kernels.h"
#include "models/cpu/pool.h"

#define S_THREADS 4
#define S_REPS 4

/* ---- inputs (shared, read-only while the threads run) ---- */

/* F32 GEMM: the ViT's 2 x 197 rows (own packed GEMM on the pool, A packed
 * on the pool too) in both weight layouts, and a 3-row decode-sized one
 * (streaming kernel on the pool) accumulating onto y0. */
#define S_BM (197 * 2)
#define S_BN 768
#define S_BK 768
#define S_SM 3
/* Attention: batch 2, 4 heads of 32; non-causal over 50 query rows (pool,
 * four rows at a time plus a tail of two), a causal prefill of 20 rows and
 * 50 decode steps (one query against a growing cache). */
#define S_AB 2
#define S_AH 4
#define S_AD 32
#define S_AN 50
#define S_AW (S_AH * S_AD)
#define S_ATT ((size_t)S_AB * S_AN * S_AW)
/* Patch embedding: 2 images 3 x 112 x 112, patch 16 (49 patches: the own
 * GEMM over im2col rows), dim 64. */
#define S_PB 2
#define S_PC 3
#define S_PS 112
#define S_PP 16
#define S_PD 64
#define S_PNP ((S_PS / S_PP) * (S_PS / S_PP))
#define S_PATCH ((size_t)S_PB * (1 + S_PNP) * S_PD)
/* BF16/INT8: 160 weights (more than the 128 entries at which the
 * backend's table of converted weights grows), distinct pointers into one
 * buffer, N = 128. In each group of 8, weights 1..6 are 128 x 128 with 9,
 * 2 or 33 rows (run on the caller); weights 0 and 7 are 512 x 128, big
 * enough for the pool, with 1 and 65 rows (65: BF16 packs the activations
 * on the pool, INT8 falls back to the F32 GEMM). Few pool jobs: with 4
 * callers on 2 cores the pool's spin-waits, not the arithmetic, set the
 * test's time. */
#define S_NW 160
#define S_LN 128
#define S_LK 128
#define S_LKBIG 512
#define S_LSTEP 64
#define S_LMAX 65
#define S_LROWS8 (1 + 9 + 2 + 33 + 9 + 2 + 33 + S_LMAX) /* rows of weights 8i .. 8i+7 */
#define S_LROWS ((S_NW / 8) * S_LROWS8)

static float *s_bx, *s_bw, *s_y0, *s_q, *s_k, *s_v, *s_img, *s_pw, *s_pb, *s_cls, *s_pos, *s_lw, *s_lx;

static float *s_rand(size_t n, uint64_t seed) {
    float *p = malloc(n * sizeof(float));
    cr_assert(p);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = (float)(s >> 40) * (1.0f / 16777216.0f) - 0.5f;
    }
    return p;
}

static void s_inputs(void) {
    s_bx = s_rand((size_t)S_BM * S_BK, 1);
    s_bw = s_rand((size_t)S_BN * S_BK, 2);
    s_y0 = s_rand((size_t)S_SM * S_BN, 3);
    s_q = s_rand(S_ATT, 4);
    s_k = s_rand(S_ATT, 5);
    s_v = s_rand(S_ATT, 6);
    s_img = s_rand((size_t)S_PB * S_PC * S_PS * S_PS, 7);
    s_pw = s_rand((size_t)S_PD * S_PC * S_PP * S_PP, 8);
    s_pb = s_rand(S_PD, 9);
    s_cls = s_rand(S_PD, 10);
    s_pos = s_rand((size_t)(1 + S_PNP) * S_PD, 11);
    s_lw = s_rand((size_t)(S_NW - 1) * S_LSTEP + (size_t)S_LN * S_LKBIG, 12);
    s_lx = s_rand((size_t)S_LMAX * S_LKBIG, 13);
}

static void s_free_inputs(void) {
    float **all[] = {&s_bx, &s_bw, &s_y0, &s_q, &s_k, &s_v, &s_img, &s_pw, &s_pb, &s_cls, &s_pos, &s_lw, &s_lx};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
}

/* ---- outputs: one set per thread and one for the reference ---- */

enum { S_MM_IO, S_MM_OI, S_MM_SMALL, S_ATT_FULL, S_ATT_PREFILL, S_ATT_DECODE, S_PATCH_OUT, S_BF16, S_INT8, S_NOUT };
static const char *const s_out_name[S_NOUT] = {"gemm 394x768x768 in_out", "gemm 394x768x768 out_in",
                                               "gemm 3x768x768 accumulate", "attention non-causal",
                                               "attention causal prefill", "attention decode steps",
                                               "patch embedding", "bf16 matmuls", "int8 matmuls"};
static const size_t s_out_len[S_NOUT] = {(size_t)S_BM * S_BN, (size_t)S_BM * S_BN, (size_t)S_SM * S_BN, S_ATT, S_ATT,
                                         S_ATT, S_PATCH, (size_t)S_LROWS * S_LN,
                                         (size_t)S_LROWS * S_LN};

typedef struct {
    float *o[S_NOUT];
} s_outs_t;

static int s_outs_new(s_outs_t *out) {
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < S_NOUT; i++) {
        out->o[i] = malloc(s_out_len[i] * sizeof(float));
        if (!out->o[i]) return -1;
    }
    return 0;
}

static void s_outs_free(s_outs_t *out) {
    for (int i = 0; i < S_NOUT; i++) {
        free(out->o[i]);
        out->o[i] = NULL;
    }
}

/* Fills every output with a byte pattern so that a call that writes
 * nothing cannot pass on a previous repetition's result. */
static void s_outs_poison(s_outs_t *out) {
    for (int i = 0; i < S_NOUT; i++) memset(out->o[i], 0xA5, s_out_len[i] * sizeof(float));
}

/* ---- the work ---- */

enum { S_DO_F32 = 1, S_DO_LOWP = 2 };

typedef struct {
    int what;                 /* S_DO_* */
    nr_backend_t *bf16, *i8;  /* the backends under test */
    int lowp_reverse;         /* walk the BF16/INT8 weights from the last one */
} s_job_t;

/* Weight i: s_lm(i) rows, s_lk(i) inputs, output from row s_lrow(i). */
static const int s_lm8[8] = {1, 9, 2, 33, 9, 2, 33, S_LMAX};
static int s_lm(int i) { return s_lm8[i % 8]; }
static int s_lk(int i) { return i % 8 == 0 || i % 8 == 7 ? S_LKBIG : S_LK; }
static size_t s_lrow(int i) {
    size_t r = (size_t)(i / 8) * S_LROWS8;
    for (int k = 0; k < i % 8; k++) r += (size_t)s_lm8[k];
    return r;
}

/* Runs one kernel group into out; 0 or a kernel's error code. */
static int s_step(const s_job_t *j, int step, s_outs_t *out) {
    nr_attn_args_t a = {.batch = S_AB, .n_head = S_AH, .head_dim = S_AD, .n_q = S_AN, .n_kv = S_AN,
                        .scale = 0.17677669f, .q = s_q, .k = s_k, .v = s_v, .q_bstride = (size_t)S_AN * S_AW,
                        .q_rstride = S_AW, .kv_bstride = (size_t)S_AN * S_AW, .kv_rstride = S_AW,
                        .o_bstride = (size_t)S_AN * S_AW, .o_rstride = S_AW};
    int rc = 0;
    switch (step) {
    case 0:
        nr_cpu_matmul(out->o[S_MM_IO], S_BN, s_bx, S_BK, s_bw, NR_W_IN_OUT, S_BM, S_BN, S_BK, 0);
        break;
    case 1:
        nr_cpu_matmul(out->o[S_MM_OI], S_BN, s_bx, S_BK, s_bw, NR_W_OUT_IN, S_BM, S_BN, S_BK, 0);
        break;
    case 2:
        memcpy(out->o[S_MM_SMALL], s_y0, s_out_len[S_MM_SMALL] * sizeof(float));
        nr_cpu_matmul(out->o[S_MM_SMALL], S_BN, s_bx, S_BK, s_bw, NR_W_OUT_IN, S_SM, S_BN, S_BK, 1);
        break;
    case 3:
        a.out = out->o[S_ATT_FULL];
        rc = nr_cpu_attention(&a);
        break;
    case 4: { /* causal prefill of the first 20 rows, then one row per decode step */
        nr_attn_args_t p = a;
        p.causal = 1;
        p.n_q = 20;
        p.out = out->o[S_ATT_PREFILL];
        rc = nr_cpu_attention(&p);
        for (int n = 1; n <= S_AN && rc == 0; n++) {
            nr_attn_args_t d = a;
            d.causal = 1;
            d.n_q = 1;
            d.n_kv = n;
            d.q_pos0 = n - 1;
            d.q = s_q + (size_t)(n - 1) * S_AW;
            d.out = out->o[S_ATT_DECODE] + (size_t)(n - 1) * S_AW;
            rc = nr_cpu_attention(&d);
        }
        break;
    }
    case 5: {
        nr_patch_args_t p = {S_PB, S_PC, S_PS, S_PS, S_PP, S_PD, s_img, s_pw, s_pb, s_cls, s_pos, out->o[S_PATCH_OUT]};
        rc = nr_cpu_patch_embed(&p);
        break;
    }
    case 6: /* every weight once per backend; the first pass converts them */
        for (int n = 0; n < S_NW && rc == 0; n++) {
            const int i = j->lowp_reverse ? S_NW - 1 - n : n, M = s_lm(i), K = s_lk(i);
            const float *w = s_lw + (size_t)i * S_LSTEP;
            float *yb = out->o[S_BF16] + s_lrow(i) * S_LN, *yq = out->o[S_INT8] + s_lrow(i) * S_LN;
            rc = j->bf16->ops->matmul(j->bf16->ctx, yb, S_LN, s_lx, S_LKBIG, w, i % 2 ? NR_W_OUT_IN : NR_W_IN_OUT,
                                      M, S_LN, K, 0);
            if (rc == 0)
                rc = j->i8->ops->matmul(j->i8->ctx, yq, S_LN, s_lx, S_LKBIG, w, i % 2 ? NR_W_IN_OUT : NR_W_OUT_IN,
                                        M, S_LN, K, 0);
        }
        break;
    }
    return rc;
}

/* Runs the job's kernel groups in turn, starting at group `first` (so
 * that threads run different kernels at the same moment); the BF16/INT8
 * group comes first when first is 0 (so that a thread's first call
 * converts weights). */
static int s_run_all(const s_job_t *j, int first, s_outs_t *out) {
    int groups[7], n = 0, rc = 0;
    if (j->what & S_DO_LOWP) groups[n++] = 6;
    for (int k = 0; k < 6 && (j->what & S_DO_F32); k++) groups[n++] = k;
    for (int k = 0; k < n && rc == 0; k++) rc = s_step(j, groups[(first + k) % n], out);
    return rc;
}

/* ---- threads ---- */

typedef struct {
    int id;
    const s_job_t *job;
    const s_outs_t *ref;
    pthread_barrier_t *start;
    int bad;          /* outputs that differed from the reference */
    int err;          /* first kernel error (0: none) */
    char first[128];  /* the first difference */
} s_thread_t;

static void *s_thread(void *p) {
    s_thread_t *t = p;
    s_outs_t out;
    if (s_outs_new(&out)) {
        t->err = -1;
        snprintf(t->first, sizeof(t->first), "thread %d: out of memory", t->id);
        s_outs_free(&out);
        pthread_barrier_wait(t->start);
        return NULL;
    }
    pthread_barrier_wait(t->start);
    for (int rep = 0; rep < S_REPS; rep++) {
        s_outs_poison(&out);
        int rc = s_run_all(t->job, rep == 0 ? 0 : t->id + rep, &out);
        if (rc && !t->err) {
            t->err = rc;
            snprintf(t->first, sizeof(t->first), "thread %d rep %d: kernel error %d", t->id, rep, rc);
        }
        for (int i = 0; i < S_NOUT; i++) {
            const int f32 = i < S_BF16;
            if (!(t->job->what & (f32 ? S_DO_F32 : S_DO_LOWP))) continue;
            if (memcmp(out.o[i], t->ref->o[i], s_out_len[i] * sizeof(float)) == 0) continue;
            if (!t->bad++ && !t->err)
                snprintf(t->first, sizeof(t->first), "thread %d rep %d: %s differs", t->id, rep, s_out_name[i]);
        }
    }
    s_outs_free(&out);
    nr_cpu_scratch_free();
    return NULL;
}

/* The reference on this thread with its own backends (so the backends under
 * test start with no converted weight), then S_THREADS threads at once.
 * Criterion runs each test in its own process, and the first backend made
 * there starts the kernels' pool with 2 threads, whatever the core count. */
static void s_check(int what) {
    char why[256];
    if (nr_cpu_path_init(why, sizeof why)) cr_skip_test("%s", why); /* NR_CPU_PATH names a path this CPU lacks */
    cr_log_info("CPU kernel path %s", nr_cpu_path_name(nr_cpu_path()));
    s_inputs();
    nr_backend_t *bf_ref = nr_cpu_backend_new_precision(2, NR_CPU_BF16);
    nr_backend_t *i8_ref = nr_cpu_backend_new_precision(2, NR_CPU_INT8);
    nr_backend_t *bf = nr_cpu_backend_new_precision(2, NR_CPU_BF16);
    nr_backend_t *i8 = nr_cpu_backend_new_precision(2, NR_CPU_INT8);
    cr_assert(bf_ref && i8_ref && bf && i8);

    s_outs_t ref;
    cr_assert_eq(s_outs_new(&ref), 0);
    s_outs_poison(&ref);
    s_job_t ref_job = {what, bf_ref, i8_ref, 0};
    cr_assert_eq(s_run_all(&ref_job, 0, &ref), 0, "single-thread reference failed");

    /* Even threads walk the BF16/INT8 weights forwards, odd ones backwards:
     * two threads race to convert the same weight while the other two
     * convert others and grow the table under them. */
    s_job_t jobs[2] = {{what, bf, i8, 0}, {what, bf, i8, 1}};
    pthread_barrier_t start;
    cr_assert_eq(pthread_barrier_init(&start, NULL, S_THREADS), 0);
    s_thread_t th[S_THREADS];
    pthread_t tid[S_THREADS];
    for (int i = 0; i < S_THREADS; i++) {
        th[i] = (s_thread_t){.id = i, .job = &jobs[i % 2], .ref = &ref, .start = &start};
        cr_assert_eq(pthread_create(&tid[i], NULL, s_thread, &th[i]), 0);
    }
    int bad = 0, err = 0;
    const char *first = NULL;
    for (int i = 0; i < S_THREADS; i++) {
        pthread_join(tid[i], NULL);
        if ((th[i].bad || th[i].err) && !first) first = th[i].first;
        bad += th[i].bad;
        err += th[i].err != 0;
    }
    pthread_barrier_destroy(&start);
    cr_log_info("%d threads x %d repetitions: %d outputs differ, %d threads saw a kernel error", S_THREADS, S_REPS,
                bad, err);
    cr_expect_eq(err, 0, "%s", first ? first : "");
    cr_expect_eq(bad, 0, "%d outputs differ from the single-thread reference; first: %s", bad, first ? first : "");

    s_outs_free(&ref);
    nr_backend_destroy(&bf_ref);
    nr_backend_destroy(&i8_ref);
    nr_backend_destroy(&bf);
    nr_backend_destroy(&i8);
    nr_cpu_scratch_free();
    s_free_inputs();
}

/* No Criterion timeout: ctest's guards a hang, and under CPU emulation
 * (tests/cross/run.sh, --timeout) these take an hour, not seconds. */
Test(kernels_mt, f32_kernels_from_4_threads_match_one_thread) { s_check(S_DO_F32); }

Test(kernels_mt, bf16_int8_first_use_conversion_from_4_threads_matches_one_thread) {
    s_check(S_DO_LOWP);
}

Test(kernels_mt, all_kernels_at_once_from_4_threads_match_one_thread) {
    s_check(S_DO_F32 | S_DO_LOWP);
}

/* ---- the pool itself ----
 * Any thread takes any part of a job, so a worker that is asleep or late
 * (its core busy with another process) leaves its part to the caller
 * instead of holding the job up. */
#define S_PROBE_PARTS 64

typedef struct {
    pthread_t caller;
    atomic_int ran[S_PROBE_PARTS]; /* times each part ran */
    atomic_int nparts;             /* as the parts were told */
    atomic_int by_caller;          /* parts the caller ran */
} s_probe_t;

static void s_probe_part(void *arg, int part, int nparts) {
    s_probe_t *p = arg;
    atomic_store(&p->nparts, nparts);
    if (part >= 0 && part < S_PROBE_PARTS) atomic_fetch_add(&p->ran[part], 1);
    if (pthread_equal(pthread_self(), p->caller)) atomic_fetch_add(&p->by_caller, 1);
}

static void s_probe_reset(s_probe_t *p) {
    memset(p, 0, sizeof(*p));
    p->caller = pthread_self();
}

/* Each of 4 threads runs 3,000 jobs at once; every job runs each of its
 * parts exactly once (a caller that finds the pool busy runs one part). */
static void *s_probe_runner(void *arg) {
    int *bad = arg;
    s_probe_t *p = malloc(sizeof(*p));
    for (int i = 0; p && i < 3000; i++) {
        s_probe_reset(p);
        nr_cpu_run(s_probe_part, p);
        const int np = atomic_load(&p->nparts);
        if (np != 1 && np != nr_cpu_pool_size()) ++*bad;
        for (int k = 0; k < S_PROBE_PARTS; k++)
            if (atomic_load(&p->ran[k]) != (k < np ? 1 : 0)) ++*bad;
    }
    free(p);
    return NULL;
}

Test(pool, every_part_once_from_4_callers) {
    nr_cpu_pool_init(3);
    cr_assert_eq(nr_cpu_pool_size(), 3);
    pthread_t th[S_THREADS];
    int bad[S_THREADS] = {0};
    for (int t = 0; t < S_THREADS; t++) cr_assert_eq(pthread_create(&th[t], NULL, s_probe_runner, &bad[t]), 0);
    for (int t = 0; t < S_THREADS; t++) {
        pthread_join(th[t], NULL);
        cr_expect_eq(bad[t], 0, "caller %d: %d jobs ran a part twice, missed one or saw another part count", t,
                     bad[t]);
    }
}

/* Jobs 5 ms apart, so the worker has stopped spinning and sleeps when
 * each comes: its part is taken by the caller before it wakes (with a
 * fixed part per thread the caller never ran more than part 0). */
Test(pool, caller_runs_the_part_of_a_worker_that_is_late) {
    nr_cpu_pool_init(2);
    s_probe_t *p = malloc(sizeof(*p));
    cr_assert(p);
    int caller_alone = 0;
    for (int i = 0; i < 50; i++) {
        nanosleep(&(struct timespec){0, 5000000}, NULL);
        s_probe_reset(p);
        nr_cpu_run(s_probe_part, p);
        cr_assert_eq(atomic_load(&p->nparts), 2);
        cr_assert_eq(atomic_load(&p->ran[0]) + atomic_load(&p->ran[1]), 2);
        caller_alone += atomic_load(&p->by_caller) == 2;
    }
    cr_log_info("the caller ran both parts of %d of 50 jobs", caller_alone);
    cr_expect_gt(caller_alone, 0, "the caller never took the part of a sleeping worker");
    free(p);
}
