/* The CPU backend: the nr_backend_ops_t table over host memory, OpenBLAS
 * for matmul and the kernels in kernels.c for the rest.
 *
 * Threads: OpenBLAS (pthread build) is given num_threads threads; the own
 * kernels are single-threaded and run between BLAS calls, and attention
 * over long sequences is itself two sgemms per head, so nothing else spins
 * up threads that would compete with OpenBLAS's (no OpenMP). */
#include "models/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "models/cpu/kernels.h"
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
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        (strcasecmp(core, "Haswell") == 0 || strcasecmp(core, "Zen") == 0))
        nr_log(NR_LOG_WARN,
               "models: OpenBLAS uses its %s kernels on this AVX-512 CPU; set OPENBLAS_CORETYPE=SkylakeX in the "
               "environment for faster matmuls (see models/MODELS.md)",
               core);
    else
        nr_log(NR_LOG_DEBUG, "models: OpenBLAS kernels: %s", core);
}

typedef struct {
    int num_threads;
} s_cpu_t;

static int s_supports(void *ctx, nr_op_t op) { return op >= 0 && op < NR_OP_COUNT; }
static void s_destroy(void *ctx) { free(ctx); }
static void *s_alloc(void *ctx, size_t bytes) { return nr_aligned_alloc(bytes ? bytes : 64); }
static void s_free(void *ctx, void *p) { free(p); }
static int s_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
    return 0;
}
static int s_sync(void *ctx) { return 0; }

static int s_matmul(void *ctx, float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout,
                    int M, int N, int K, int accumulate) {
    if (M < 0 || N < 0 || K < 0) return NR_EINVAL;
    nr_cpu_matmul(y, ldy, x, ldx, w, layout, M, N, K, accumulate);
    return 0;
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
static int s_attention(void *ctx, const nr_attn_args_t *a) { return nr_cpu_attention(a); }
static int s_embed(void *ctx, float *out, const float *wte, const float *wpe, const int *ids, const int *pos, int n,
                   int dim, int vocab, int n_positions) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab || pos[i] < 0 || pos[i] >= n_positions) return NR_EINVAL;
    for (int i = 0; i < n; i++) {
        const float *t = wte + (size_t)ids[i] * dim, *p = wpe + (size_t)pos[i] * dim;
        float *o = out + (size_t)i * dim;
        for (int d = 0; d < dim; d++) o[d] = t[d] + p[d];
    }
    return 0;
}
static int s_patch_embed(void *ctx, const nr_patch_args_t *a) { return nr_cpu_patch_embed(a); }

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
    .add_bias = s_add_bias,
    .add = s_add,
    .layernorm = s_layernorm,
    .gelu = s_gelu,
    .softmax = s_softmax,
    .attention = s_attention,
    .embed = s_embed,
    .patch_embed = s_patch_embed,
};

nr_backend_t *nr_cpu_backend_new(int num_threads) {
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
    openblas_set_num_threads(num_threads);
    nr_cpu_pool_init(num_threads);
    s_check_blas_core();
    b->ops = &s_ops;
    b->ctx = c;
    b->host_memory = 1;
    return b;
}
