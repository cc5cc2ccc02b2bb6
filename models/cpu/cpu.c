/* The CPU backend: the nr_backend_ops_t table over host memory, the
 * kernels in kernels.c (matmul: own streaming kernel and AVX-512 GEMM,
 * OpenBLAS sgemm where those do not apply) and, for the BF16 and INT8
 * precisions, the reduced-precision matmuls in lowp.c, on the instruction
 * set chosen at run time (dispatch.h); a precision that would be slower
 * than F32 on that path runs as F32 (s_lowp_rows), and says so.
 *
 * Threads: OpenBLAS (pthread build) is given num_threads threads, and the
 * first backend made starts the kernels' pool with as many (the pool is
 * process-wide and started once; no OpenMP). A caller's pool jobs and its
 * sgemm calls never overlap.
 *
 * Concurrent callers are allowed: several threads may call one backend's
 * ops at once (the kernels keep per-thread scratch, see kernels.h), except
 * destroy, which must come after the last call. Converted BF16/INT8
 * weights live in a table keyed by the F32 weight pointer: lookups take no
 * lock; the first use of a weight converts it under the backend's mutex
 * (packing runs on the kernels' pool), so racing callers convert it once;
 * a full table is replaced by a larger copy and the old ones are kept
 * until destroy. tests/test_kernels_mt.c
 * checks that 4 callers, converting weights at first use, get the
 * single-thread results bit for bit. */
#include "models/cpu/cpu.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "models/cpu/dispatch.h"
#if defined(__x86_64__)
#include "models/cpu/amx.h"
#endif
#include "models/cpu/kernels.h"
#include "models/cpu/lowp.h"
#include "models/tensor.h"

void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);

/* OpenBLAS 0.3.21 does not know AMD Zen 4/5 and falls back to its AVX2
 * (Haswell/Zen) kernels; on a CPU with AVX-512 the SkylakeX kernels are
 * about 1.6x faster for the encoder. The kernel set is chosen when the
 * library loads, so all we can do is say so once. */
static void s_check_blas_core(void) {
    static int said;
    if (said) return;
    said = 1;
    const char *core = openblas_get_corename();
    if (!core || getenv("OPENBLAS_CORETYPE")) return;
    if (nr_cpu_path_supported(NR_CPU_PATH_AVX512) &&
        (strcasecmp(core, "Haswell") == 0 || strcasecmp(core, "Zen") == 0))
        nr_log(NR_LOG_WARN,
               "models: OpenBLAS uses its %s kernels on this AVX-512 CPU; set OPENBLAS_CORETYPE=SkylakeX in the "
               "environment for faster matmuls (see models/MODELS.md)",
               core);
    else
        nr_log(NR_LOG_DEBUG, "models: OpenBLAS kernels: %s", core);
}

/* A converted copy of one matmul weight, keyed by its F32 pointer and shape;
 * or an adopted BF16 weight (adopt_bf16), keyed by the model's key: packed
 * or not, src its BF16 values when matmuls still read them. */
typedef struct {
    const float *w;
    int layout, N, K;
    int packed;          /* bf or i8 below holds the precision's copy */
    const uint16_t *src; /* adopted: (N, K) BF16 read by the F32 matmuls, else NULL */
    nr_cpu_bf16w_t bf;
    nr_cpu_i8w_t i8;
} s_conv_t;

/* The converted weights: an open-addressing table keyed by the weight
 * pointer, read without a lock. Writers (under s_cpu_t.mu) only fill empty
 * slots of a published table, each entry complete before its pointer is
 * stored (release; readers load with acquire). A table more than half full
 * is replaced by a copy twice its size; the old one stays allocated (a
 * reader may still be walking it) until the backend is destroyed. */
typedef struct s_tab {
    size_t mask;                 /* slots - 1, slots a power of two */
    struct s_tab *older;         /* the table this one replaced */
    _Atomic(s_conv_t *) slot[];
} s_tab_t;

typedef struct {
    int num_threads;
    nr_cpu_precision_t precision;
    pthread_mutex_t mu; /* serialises conversions and table writes */
    _Atomic(s_tab_t *) tab;
    size_t n_conv;      /* entries in tab (under mu) */
} s_cpu_t;

/* Rows up to which the INT8 precision uses INT8 weights. */
#define S_INT8_MAX_ROWS 64
/* Rows up to which the BF16 precision uses BF16 weights on the avx512bf16
 * path (no AMX): above, vdpbf16ps (one per cycle on Intel, half the F32
 * FMA rate in products) loses to the F32 GEMM; see s_lowp_rows. */
#define S_BF16_VDP_MAX_ROWS 48
/* Rows up to which INT8 weights pay on the avx2 path (measured at 1 and 4). */
#define S_INT8_AVX2_MAX_ROWS 4
#define S_TAB_MIN 256

/* Rows up to which the backend's precision uses its converted weights on
 * the kernel path p (0: F32 for every matmul), chosen from measurements on
 * each path (bench/README.md): BF16 pays with AMX tiles at any size and
 * with vdpbf16ps for the memory-bound decode steps; INT8 pays for decode
 * steps with AVX-512, and with AVX2 for a few rows. Elsewhere the C
 * kernels are not faster than F32, so the precision runs as F32. */
static int s_lowp_rows(nr_cpu_precision_t prec, nr_cpu_path_t p) {
    if (prec == NR_CPU_BF16)
        return p == NR_CPU_PATH_AMX ? INT_MAX : p == NR_CPU_PATH_AVX512BF16 ? S_BF16_VDP_MAX_ROWS : 0;
    if (prec == NR_CPU_INT8)
        return p >= NR_CPU_PATH_AVX512 ? S_INT8_MAX_ROWS : p == NR_CPU_PATH_AVX2 ? S_INT8_AVX2_MAX_ROWS : 0;
    return 0;
}

static int s_supports(void *ctx, nr_op_t op) { return op >= 0 && op < NR_OP_COUNT; }
static void s_destroy(void *ctx) {
    s_cpu_t *c = ctx;
    s_tab_t *t = atomic_load_explicit(&c->tab, memory_order_acquire);
    for (size_t i = 0; t && i <= t->mask; i++) { /* the newest table holds every entry */
        s_conv_t *e = atomic_load_explicit(&t->slot[i], memory_order_relaxed);
        if (!e) continue;
        nr_cpu_bf16w_free(&e->bf);
        nr_cpu_i8w_free(&e->i8);
        free(e);
    }
    while (t) {
        s_tab_t *older = t->older;
        free(t);
        t = older;
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static size_t s_hash(const float *w) {
    uint64_t h = (uint64_t)(uintptr_t)w * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 32));
}

/* The entry for (w, layout, N, K) in t, or NULL; lock-free. A table is
 * never full, so the probe ends at an empty slot. */
static const s_conv_t *s_find(const s_tab_t *t, const float *w, nr_wlayout_t layout, int N, int K) {
    if (!t) return NULL;
    for (size_t i = s_hash(w) & t->mask;; i = (i + 1) & t->mask) {
        const s_conv_t *e = atomic_load_explicit(&t->slot[i], memory_order_acquire);
        if (!e) return NULL;
        if (e->w == w && e->layout == (int)layout && e->N == N && e->K == K) return e;
    }
}

static void s_put(s_tab_t *t, s_conv_t *e) {
    size_t i = s_hash(e->w) & t->mask;
    while (atomic_load_explicit(&t->slot[i], memory_order_relaxed)) i = (i + 1) & t->mask;
    atomic_store_explicit(&t->slot[i], e, memory_order_release);
}

/* Adds e under c->mu, first growing the table when it would be more than
 * half full. NR_ENOMEM (e not added) when the larger table cannot be made. */
static int s_insert(s_cpu_t *c, s_conv_t *e) {
    s_tab_t *t = atomic_load_explicit(&c->tab, memory_order_relaxed);
    if (!t || 2 * (c->n_conv + 1) > t->mask + 1) {
        const size_t n = t ? 2 * (t->mask + 1) : S_TAB_MIN;
        s_tab_t *nt = malloc(sizeof(*nt) + n * sizeof(nt->slot[0]));
        if (!nt) return NR_ENOMEM;
        nt->mask = n - 1;
        nt->older = t;
        for (size_t i = 0; i < n; i++) atomic_init(&nt->slot[i], NULL);
        for (size_t i = 0; t && i <= t->mask; i++) {
            s_conv_t *old = atomic_load_explicit(&t->slot[i], memory_order_relaxed);
            if (old) s_put(nt, old);
        }
        atomic_store_explicit(&c->tab, nt, memory_order_release);
        t = nt;
    }
    s_put(t, e);
    c->n_conv++;
    return 0;
}

/* The converted copy of w for the backend's precision, made on first use.
 * Lookups take no lock; a miss takes the lock and looks again before
 * converting, so concurrent callers convert a weight once. NULL when out
 * of memory. Weights are read-only after load, so a pointer names one
 * weight for the backend's lifetime. */
static const s_conv_t *s_converted_from(s_cpu_t *c, const float *w, const float *src, nr_wlayout_t layout, int N,
                                        int K);
static const s_conv_t *s_converted(s_cpu_t *c, const float *w, nr_wlayout_t layout, int N, int K) {
    return s_converted_from(c, w, w, layout, N, K);
}

/* The same, the values read from src (F32) and the entry keyed by w. */
static const s_conv_t *s_converted_from(s_cpu_t *c, const float *w, const float *src, nr_wlayout_t layout, int N,
                                        int K) {
    const s_conv_t *found = s_find(atomic_load_explicit(&c->tab, memory_order_acquire), w, layout, N, K);
    if (found) return found;
    pthread_mutex_lock(&c->mu);
    found = s_find(atomic_load_explicit(&c->tab, memory_order_relaxed), w, layout, N, K);
    if (!found) {
        s_conv_t *e = calloc(1, sizeof(*e));
        int rc = NR_ENOMEM;
        if (e) {
            e->w = w;
            e->layout = (int)layout;
            e->N = N;
            e->K = K;
            e->packed = 1;
            rc = c->precision == NR_CPU_BF16 ? nr_cpu_bf16w_make(&e->bf, src, layout, N, K)
                                             : nr_cpu_i8w_make(&e->i8, src, layout, N, K);
        }
        if (rc == 0) rc = s_insert(c, e);
        if (rc == 0) {
            found = e;
        } else if (e) {
            nr_cpu_bf16w_free(&e->bf);
            nr_cpu_i8w_free(&e->i8);
            free(e);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}
static void *s_alloc(void *ctx, size_t bytes) { return nr_aligned_alloc(bytes ? bytes : 64); }
static void s_free(void *ctx, void *p) { free(p); }
static int s_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
    return 0;
}
static int s_sync(void *ctx) { return 0; }

/* Columns of a mapped BF16 weight widened per block: about 8 MB of F32, so
 * a block stays in cache for the F32 kernel and the activations are packed
 * a few times per matmul at most. */
#define S_WIDEN_BYTES (8u << 20)

typedef struct {
    float *dst;
    const uint16_t *src;
    size_t n;
} s_widen_t;

/* BF16 -> F32, exact; inline so that the loops vectorize. */
static void s_widen(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint32_t b = (uint32_t)src[i] << 16;
        memcpy(dst + i, &b, sizeof b);
    }
}

static void s_widen_part(void *arg, int part, int nparts) {
    const s_widen_t *a = arg;
    const size_t lo = a->n * (size_t)part / (size_t)nparts, hi = a->n * (size_t)(part + 1) / (size_t)nparts;
    s_widen(a->dst + lo, a->src + lo, hi - lo);
}

/* Decode-sized matmuls (the streaming kernel's rows): one pool job whose
 * parts each widen and multiply their own rows of W, block by block in
 * their own thread's scratch (a kernel called inside a pool part runs on
 * that thread): one dispatch per matmul instead of two per block. */
typedef struct {
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    const uint16_t *w;
    int M, N, K, nb, accumulate;
    _Atomic int rc;
} s_widen_mm_t;

static void s_widen_mm_part(void *arg, int part, int nparts) {
    s_widen_mm_t *a = arg;
    const int lo = (int)((long)a->N * part / nparts) / 16 * 16;
    const int hi = part == nparts - 1 ? a->N : (int)((long)a->N * (part + 1) / nparts) / 16 * 16;
    if (lo >= hi) return;
    float *blk = nr_cpu_scratch(NR_CPU_SCRATCH_WIDEN, (size_t)a->nb * a->K * sizeof(float));
    if (!blk) {
        atomic_store(&a->rc, NR_ENOMEM);
        return;
    }
    for (int n0 = lo; n0 < hi; n0 += a->nb) {
        const int n = hi - n0 < a->nb ? hi - n0 : a->nb;
        s_widen(blk, a->w + (size_t)n0 * a->K, (size_t)n * a->K);
        nr_cpu_matmul(a->y + n0, a->ldy, a->x, a->ldx, blk, NR_W_OUT_IN, a->M, n, a->K, a->accumulate);
    }
}

/* y = x W^T for an adopted BF16 weight (N, K) read in place: decode steps
 * by the streaming kernel, widening in registers where the path has it;
 * otherwise each block of rows of W widened to F32 (exact), then the F32
 * kernels. Either way the F32 matmul of the same values, bit for bit,
 * without an F32 copy of the weight. */
static int s_matmul_widen(float *y, size_t ldy, const float *x, size_t ldx, const uint16_t *w, int M, int N, int K,
                          int accumulate) {
    if (nr_cpu_matmul_bf16w(y, ldy, x, ldx, w, M, N, K, accumulate)) return 0;
    int nb = (int)(S_WIDEN_BYTES / sizeof(float) / (size_t)K) / 16 * 16;
    if (nb < 16) nb = 16;
    if (M <= nr_cpu_skinny_max) { /* blocks of a quarter: each part's stay in its cache */
        s_widen_mm_t a = {.y = y, .ldy = ldy, .x = x, .ldx = ldx, .w = w, .M = M, .N = N, .K = K,
                          .nb = nb / 4 < 16 ? 16 : nb / 4, .accumulate = accumulate};
        atomic_init(&a.rc, 0);
        nr_cpu_run(s_widen_mm_part, &a);
        return atomic_load(&a.rc);
    }
    if (nb > N) nb = N;
    float *blk = nr_cpu_scratch(NR_CPU_SCRATCH_WIDEN, (size_t)nb * K * sizeof(float));
    if (!blk) return NR_ENOMEM;
    for (int n0 = 0; n0 < N; n0 += nb) {
        const int n = N - n0 < nb ? N - n0 : nb;
        s_widen_t a = {.dst = blk, .src = w + (size_t)n0 * K, .n = (size_t)n * K};
        nr_cpu_run(s_widen_part, &a);
        nr_cpu_matmul(y + n0, ldy, x, ldx, blk, NR_W_OUT_IN, M, n, K, accumulate);
    }
    return 0;
}

static int s_matmul(void *ctx, float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout,
                    int M, int N, int K, int accumulate) {
    if (M < 0 || N < 0 || K < 0) return NR_EINVAL;
    s_cpu_t *c = ctx;
    if (M == 0 || N == 0 || K == 0) return 0;
    const s_conv_t *e;
    if (M <= s_lowp_rows(c->precision, nr_cpu_path())) {
        e = s_converted(c, w, layout, N, K);
        if (!e) return NR_ENOMEM;
        if (e->packed && c->precision == NR_CPU_BF16) return nr_cpu_matmul_bf16(y, ldy, x, ldx, &e->bf, M, accumulate);
        if (e->packed) return nr_cpu_matmul_i8(y, ldy, x, ldx, &e->i8, M, accumulate);
    } else {
        e = s_find(atomic_load_explicit(&c->tab, memory_order_acquire), w, layout, N, K);
    }
    if (e && e->src) return s_matmul_widen(y, ldy, x, ldx, e->src, M, N, K, accumulate);
    nr_cpu_matmul(y, ldy, x, ldx, w, layout, M, N, K, accumulate);
    return 0;
}
/* A linear layer: on the amx path cpu:bf16 applies bias and GELU to each
 * block as it leaves the tiles (and saves the passes over y and their pool
 * jobs); elsewhere matmul, bias and GELU in turn, as the model would. */
static int s_linear(void *ctx, float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout,
                    const float *b, int M, int N, int K, int act, int accumulate) {
    if (M < 0 || N < 0 || K < 0 || (act >= 0 && accumulate)) return NR_EINVAL;
    s_cpu_t *c = ctx;
    if (M == 0 || N == 0) return 0;
#if defined(__x86_64__)
    if (c->precision == NR_CPU_BF16 && nr_cpu_path() == NR_CPU_PATH_AMX && M >= NR_CPU_AMX_MIN_ROWS && K > 0) {
        const s_conv_t *e = s_converted(c, w, layout, N, K);
        if (!e) return NR_ENOMEM;
        if (e->packed) return nr_cpu_amx_linear_bf16(y, ldy, x, ldx, &e->bf, M, b, act, accumulate);
    }
#endif
    int rc = s_matmul(ctx, y, ldy, x, ldx, w, layout, M, N, K, accumulate);
    const int rows = ldy == (size_t)N ? M : 1; /* y in one piece, or row by row */
    for (int m = 0; rc == 0 && (b || act >= 0) && m < M; m += rows) {
        float *yr = y + (size_t)m * ldy;
        if (b) nr_cpu_add_bias(yr, b, rows, N);
        if (act >= 0) nr_cpu_gelu(yr, (size_t)rows * N, act);
    }
    return rc;
}
static int s_prepare(void *ctx, const float *w, nr_wlayout_t layout, int N, int K, int rows) {
    s_cpu_t *c = ctx;
    if (N <= 0 || K <= 0) return NR_EINVAL;
    if (rows <= s_lowp_rows(c->precision, nr_cpu_path()))
        return s_converted(c, w, layout, N, K) ? 0 : NR_ENOMEM; /* an adopted key is found as it is */
    return 0;
}
/* Every precision keeps a BF16 weight where it is: packed once (from the
 * BF16 values, on the pool) when the precision multiplies `rows` rows by
 * its own copy on this path, and read in place (s_matmul_widen) by every
 * matmul the packed copy does not serve (all of them for cpu:f32 and on
 * the paths where the precision runs as F32). */
static int s_adopt_bf16(void *ctx, const float *key, const void *w, nr_wlayout_t layout, int N, int K, int rows) {
    s_cpu_t *c = ctx;
    if (layout != NR_W_OUT_IN || ((uintptr_t)w & 1)) return NR_EUNSUPPORTED; /* an odd offset: F32 copy */
    if (!key || !w || N <= 0 || K <= 0) return NR_EINVAL;
    const int lowp = s_lowp_rows(c->precision, nr_cpu_path());
    const int pack = rows <= lowp, all = pack && lowp == INT_MAX;
    const uint16_t *src = w;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    const s_conv_t *found = s_find(atomic_load_explicit(&c->tab, memory_order_relaxed), key, layout, N, K);
    s_conv_t *e = found ? NULL : calloc(1, sizeof(*e));
    if (found) { /* adopted before: only the same bytes may be read under this key */
        rc = !found->src ? 0 : found->src == src ? 1 : NR_EUNSUPPORTED;
    } else if (!e) {
        rc = NR_ENOMEM;
    } else {
        *e = (s_conv_t){.w = key, .layout = (int)layout, .N = N, .K = K, .packed = pack, .src = all ? NULL : src};
        if (pack)
            rc = c->precision == NR_CPU_BF16 ? nr_cpu_bf16w_make_bf16(&e->bf, src, N, K)
                                             : nr_cpu_i8w_make_bf16(&e->i8, src, N, K);
        if (rc == 0) rc = s_insert(c, e);
        if (rc == 0) {
            e = NULL;
            rc = all ? 0 : 1;
        }
    }
    if (e) {
        nr_cpu_bf16w_free(&e->bf);
        nr_cpu_i8w_free(&e->i8);
        free(e);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}
static int s_add_bias(void *ctx, float *y, const float *b, int M, int N) {
    nr_cpu_add_bias(y, b, M, N);
    return 0;
}
static int s_add(void *ctx, float *y, const float *x, size_t n) {
    nr_cpu_add(y, x, n);
    return 0;
}
static int s_layernorm(void *ctx, float *y, const float *x, const float *g, const float *b, int M, int N, float eps) {
    nr_cpu_layernorm(y, x, g, b, M, N, eps);
    return 0;
}
static int s_gelu(void *ctx, float *x, size_t n, int tanh_form) {
    nr_cpu_gelu(x, n, tanh_form);
    return 0;
}
static int s_softmax(void *ctx, float *x, int rows, int cols) {
    nr_cpu_softmax(x, rows, cols);
    return 0;
}
static int s_attention(void *ctx, const nr_attn_args_t *a) {
#if defined(__x86_64__)
    /* cpu:bf16 on AMX: the encoders' attention on tiles (BF16 operands) */
    const s_cpu_t *c = ctx;
    if (c->precision == NR_CPU_BF16 && nr_cpu_path() == NR_CPU_PATH_AMX && !a->causal && a->n_q >= 16 &&
        a->head_dim <= 128)
        return nr_cpu_amx_attention(a);
#endif
    return nr_cpu_attention(a);
}
static int s_embed(void *ctx, float *out, const float *wte, const float *wpe, const int *ids, const int *pos, int n,
                   int dim, int vocab, int n_positions) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab || (wpe && (pos[i] < 0 || pos[i] >= n_positions))) return NR_EINVAL;
    for (int i = 0; i < n; i++) {
        const float *t = wte + (size_t)ids[i] * dim;
        float *o = out + (size_t)i * dim;
        if (!wpe) {
            memcpy(o, t, (size_t)dim * sizeof(float));
            continue;
        }
        const float *p = wpe + (size_t)pos[i] * dim;
        for (int d = 0; d < dim; d++) o[d] = t[d] + p[d];
    }
    return 0;
}
static int s_patch_embed(void *ctx, const nr_patch_args_t *a) {
#if defined(__x86_64__)
    s_cpu_t *c = ctx;
    const int K = a->channels * a->patch * a->patch;
    if (c->precision == NR_CPU_BF16 && nr_cpu_path() == NR_CPU_PATH_AMX && a->dim > 0 && K > 0) {
        const s_conv_t *e = s_converted(c, a->w, NR_W_OUT_IN, a->dim, K);
        if (!e) return NR_ENOMEM;
        return nr_cpu_amx_patch_embed(a, &e->bf);
    }
#endif
    return nr_cpu_patch_embed(a);
}
static int s_rmsnorm(void *ctx, float *y, const float *x, const float *g, int M, int N, float eps) {
    if (M < 0 || N <= 0) return NR_EINVAL;
    nr_cpu_rmsnorm(y, x, g, M, N, eps);
    return 0;
}
static int s_rotary(void *ctx, const nr_rotary_args_t *a) { return nr_cpu_rotary(a); }
static int s_mul(void *ctx, float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] *= x[i];
    return 0;
}
static int s_scale(void *ctx, float *x, size_t n, float sc) {
    for (size_t i = 0; i < n; i++) x[i] *= sc;
    return 0;
}

static const nr_backend_ops_t s_ops = {
    .name = "cpu",
    .supports_op = s_supports,
    .destroy = s_destroy,
    .alloc = s_alloc,
    .free = s_free,
    .upload = s_copy,
    .download = s_copy,
    .copy = s_copy,
    .synchronize = s_sync,
    .matmul = s_matmul,
    .prepare_matmul = s_prepare,
    .linear = s_linear,
    .adopt_bf16 = s_adopt_bf16,
    .add_bias = s_add_bias,
    .add = s_add,
    .layernorm = s_layernorm,
    .gelu = s_gelu,
    .softmax = s_softmax,
    .attention = s_attention,
    .embed = s_embed,
    .patch_embed = s_patch_embed,
    .rmsnorm = s_rmsnorm,
    .rotary = s_rotary,
    .mul = s_mul,
    .scale = s_scale,
};

int nr_cpu_precision_from_name(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "f32") == 0) return NR_CPU_F32;
    if (strcmp(name, "bf16") == 0) return NR_CPU_BF16;
    if (strcmp(name, "int8") == 0) return NR_CPU_INT8;
    return -1;
}

const char *nr_cpu_precision_name(nr_cpu_precision_t p) {
    return p == NR_CPU_BF16 ? "bf16" : p == NR_CPU_INT8 ? "int8" : "f32";
}

nr_backend_t *nr_cpu_backend_new_precision(int num_threads, nr_cpu_precision_t precision) {
    if (precision != NR_CPU_F32 && precision != NR_CPU_BF16 && precision != NR_CPU_INT8) return NULL;
    if (nr_cpu_path_init(NULL, 0)) return NULL; /* NR_CPU_PATH names a path this CPU lacks */
    nr_backend_t *b = calloc(1, sizeof(*b));
    s_cpu_t *c = calloc(1, sizeof(*c));
    if (!b || !c) {
        free(b);
        free(c);
        return NULL;
    }
    if (num_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        num_threads = n > 0 ? (int)n : 1;
    }
    c->num_threads = num_threads;
    c->precision = precision;
    pthread_mutex_init(&c->mu, NULL);
    atomic_init(&c->tab, NULL);
    const nr_cpu_path_t path = nr_cpu_path();
    const int rows = s_lowp_rows(precision, path);
    if (precision != NR_CPU_F32 && rows == 0)
        nr_log(NR_LOG_INFO, "models: cpu:%s runs as f32 on the %s kernel path (%s would be slower than f32 here)",
               nr_cpu_precision_name(precision), nr_cpu_path_name(path),
               precision == NR_CPU_BF16 ? "no AMX or AVX-512 BF16: C BF16 kernels" : "no AVX2: plain C INT8");
    else if (precision == NR_CPU_BF16)
        nr_log(NR_LOG_INFO, "models: cpu:bf16 on the %s kernel path: %s", nr_cpu_path_name(path),
               path == NR_CPU_PATH_AMX ? "AMX tiles (vdpbf16ps below 16 rows)"
                                       : "vdpbf16ps up to 48 rows, f32 above (faster here than vdpbf16ps)");
    openblas_set_num_threads(num_threads);
    nr_cpu_pool_init(num_threads);
    s_check_blas_core();
    b->ops = &s_ops;
    b->ctx = c;
    b->host_memory = 1;
    return b;
}
