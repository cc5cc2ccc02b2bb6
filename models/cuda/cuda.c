/* The CUDA backend: the nr_backend_ops_t table over device memory on one
 * non-blocking stream, cuBLAS for matmul (and the patch-embedding gemm),
 * the project's kernels (one .cu/.cuh pair per op family) for the rest.
 * Attention: the fused kernel (attention.cu) for decode steps, causal
 * prefill and cross-attention with kv_index; long non-causal rows (the
 * encoder, n_q >= 16) go through two cuBLAS strided-batched gemms per head
 * around the softmax kernel instead, as the CPU backend does with sgemm.
 *
 * Every op takes the backend's lock for the time it enqueues work (the
 * cuBLAS handle and the device scratch buffers are shared, and enqueue
 * order is execution order on the one stream), makes the device current on
 * the calling thread, and turns every CUDA / cuBLAS status into 0 or
 * NR_EDEVICE with a message (kept in the backend and logged). Host copies
 * (upload, download) wait for the stream; the other ops only enqueue, and
 * synchronize reports errors of kernels that ran since. Nothing aborts. */
#include "models/cuda/backend_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "models/cuda/add.cuh"
#include "models/cuda/attention.cuh"
#include "models/cuda/convert.cuh"
#include "models/cuda/embed.cuh"
#include "models/cuda/gelu.cuh"
#include "models/cuda/layernorm.cuh"
#include "models/cuda/mul.cuh"
#include "models/cuda/patch_embed.cuh"
#include "models/cuda/rmsnorm.cuh"
#include "models/cuda/rotary.cuh"
#include "models/cuda/softmax.cuh"

typedef struct {
    int device;
    char name[32]; /* "cuda:N" */
    cudaStream_t stream;
    cublasHandle_t blas;
    pthread_mutex_t lock;
    int pools;        /* stream-ordered allocator (cudaMallocAsync) usable */
    size_t max_smem;  /* per-block dynamic shared memory, opt-in limit */
    float *fscratch;  /* device floats (im2col columns) */
    size_t fscratch_n;
    int *iscratch;    /* device ints (token ids, positions, kv_index) */
    size_t iscratch_n;
    float *ascratch;  /* device floats (attention scores, gemm path) */
    size_t ascratch_n;
    int attn_gemm_min_q; /* non-causal attention with this many query rows or more: gemm path */
    nr_cuda_precision_t precision;
    cublasComputeType_t compute; /* F32 gemms: 32F, or 32F_FAST_TF32 */
    struct s_wcache {
        const float *w; /* the F32 weight buffer (key) */
        void *h;        /* its F16/BF16 copy */
        size_t n;
    } *wc;              /* reduced-precision weight copies (BF16 / F16) */
    size_t wc_n, wc_cap;
    void *xh;           /* activations converted for the reduced-precision matmul */
    size_t xh_n;
    nr_cuda_tokens_t tokens; /* embed's inline ids/positions (lock held) */
    char err[512];
} s_cuda_t;

static const nr_backend_ops_t s_ops;

/* ---- errors ---- */

static int s_fail(s_cuda_t *c, const char *what, cudaError_t e) {
    snprintf(c->err, sizeof c->err, "%s: %s: %s (%s)", c->name, what, cudaGetErrorString(e), cudaGetErrorName(e));
    (void)cudaGetLastError(); /* clear a non-sticky error so the next op starts clean */
    nr_log(NR_LOG_ERROR, "models: %s", c->err);
    return NR_EDEVICE;
}

static int s_fail_blas(s_cuda_t *c, const char *what, cublasStatus_t st) {
    snprintf(c->err, sizeof c->err, "%s: %s: %s (%s)", c->name, what, cublasGetStatusString(st),
             cublasGetStatusName(st));
    nr_log(NR_LOG_ERROR, "models: %s", c->err);
    return NR_EDEVICE;
}

static int s_bad(s_cuda_t *c, const char *what) {
    snprintf(c->err, sizeof c->err, "%s: %s", c->name, what);
    nr_log(NR_LOG_ERROR, "models: %s", c->err);
    return NR_EINVAL;
}

#define S_CK(c, what, call)                                                                       \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            rc = s_fail((c), (what), e_);                                                         \
            goto out;                                                                             \
        }                                                                                         \
    } while (0)

#define S_CKB(c, what, call)                                                                      \
    do {                                                                                          \
        cublasStatus_t s_ = (call);                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                        \
            rc = s_fail_blas((c), (what), s_);                                                    \
            goto out;                                                                             \
        }                                                                                         \
    } while (0)

/* Takes the lock and makes the device current on this thread. */
static int s_enter(s_cuda_t *c) {
    pthread_mutex_lock(&c->lock);
    cudaError_t e = cudaSetDevice(c->device);
    if (e != cudaSuccess) {
        int rc = s_fail(c, "cudaSetDevice", e);
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    return 0;
}

static void s_leave(s_cuda_t *c) { pthread_mutex_unlock(&c->lock); }

/* ---- memory ---- */

static void *s_dev_alloc(s_cuda_t *c, size_t bytes, cudaError_t *e) {
    void *p = NULL;
    if (bytes == 0) bytes = 256;
    *e = c->pools ? cudaMallocAsync(&p, bytes, c->stream) : cudaMalloc(&p, bytes);
    return *e == cudaSuccess ? p : NULL;
}

static cudaError_t s_dev_free(s_cuda_t *c, void *p) {
    if (!p) return cudaSuccess;
    return c->pools ? cudaFreeAsync(p, c->stream) : cudaFree(p);
}

static void *s_alloc(void *ctx, size_t bytes) {
    s_cuda_t *c = ctx;
    if (s_enter(c)) return NULL;
    cudaError_t e;
    void *p = s_dev_alloc(c, bytes, &e);
    if (!p) {
        char what[96];
        snprintf(what, sizeof what, "allocating %zu bytes", bytes);
        s_fail(c, what, e);
    }
    s_leave(c);
    return p;
}

static void s_free(void *ctx, void *p) {
    s_cuda_t *c = ctx;
    if (!p || s_enter(c)) return;
    for (size_t i = 0; i < c->wc_n; i++)
        if (c->wc[i].w == p) { /* the buffer's reduced-precision copy goes with it */
            (void)s_dev_free(c, c->wc[i].h);
            c->wc[i] = c->wc[--c->wc_n];
            break;
        }
    cudaError_t e = s_dev_free(c, p);
    if (e != cudaSuccess) s_fail(c, "free", e);
    s_leave(c);
}

/* Grows a scratch buffer (stream-ordered: work already enqueued keeps the
 * old one until it is done). Called with the lock held. */
static int s_scratch(s_cuda_t *c, void **buf, size_t *have, size_t need, size_t elem) {
    if (*have >= need) return 0;
    cudaError_t e = s_dev_free(c, *buf);
    *buf = NULL;
    *have = 0;
    if (e != cudaSuccess) return s_fail(c, "freeing scratch", e);
    void *p = s_dev_alloc(c, need * elem, &e);
    if (!p) return s_fail(c, "allocating scratch", e);
    *buf = p;
    *have = need;
    return 0;
}

/* Waits for the work enqueued so far without holding the lock (other
 * threads keep enqueuing meanwhile): an event recorded under the lock, the
 * wait after it. Called with the lock held; returns with it released. */
static int s_wait_unlock(s_cuda_t *c, const char *what) {
    cudaEvent_t ev = NULL;
    cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventRecord(ev, c->stream);
    s_leave(c);
    if (e == cudaSuccess) e = cudaEventSynchronize(ev);
    if (ev) (void)cudaEventDestroy(ev);
    if (e == cudaSuccess) return 0;
    pthread_mutex_lock(&c->lock);
    int rc = s_fail(c, what, e);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int s_memcpy(void *ctx, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, int wait,
                    const char *what) {
    s_cuda_t *c = ctx;
    if (!bytes) return 0;
    if (!dst || !src) return s_bad(c, "copy: NULL pointer");
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, what, cudaMemcpyAsync(dst, src, bytes, kind, c->stream));
    if (wait) return s_wait_unlock(c, what);
out:
    s_leave(c);
    return rc;
}

/* Upload waits for the copy, so the caller may free or reuse its host
 * buffer at once (pinned or not). */
static int s_upload(void *ctx, void *dst, const void *src, size_t bytes) {
    return s_memcpy(ctx, dst, src, bytes, cudaMemcpyHostToDevice, 1, "upload (host to device)");
}
static int s_download(void *ctx, void *dst, const void *src, size_t bytes) {
    return s_memcpy(ctx, dst, src, bytes, cudaMemcpyDeviceToHost, 1, "download (device to host)");
}
static int s_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    return s_memcpy(ctx, dst, src, bytes, cudaMemcpyDeviceToDevice, 0, "copy (device to device)");
}

static int s_sync(void *ctx) {
    s_cuda_t *c = ctx;
    int rc = s_enter(c);
    if (rc) return rc;
    return s_wait_unlock(c, "synchronize (an earlier kernel or copy failed)");
}

/* ---- ops ---- */

static int s_supports(void *ctx, nr_op_t op) { return op >= 0 && op < NR_OP_COUNT; }

/* Row-major y[M,N] = x[M,K] W (+ y) as column-major cuBLAS: y^T = W^T x^T,
 * with A = W (N x K seen as OUT_IN, transposed; or IN_OUT as is), B = x. */
static int s_gemm(s_cuda_t *c, float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout,
                  int M, int N, int K, float beta) {
    const float alpha = 1.0f;
    const cublasOperation_t ta = layout == NR_W_OUT_IN ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int lda = layout == NR_W_OUT_IN ? K : N;
    cublasStatus_t st = cublasGemmEx(c->blas, ta, CUBLAS_OP_N, N, M, K, &alpha, w, CUDA_R_32F, lda, x, CUDA_R_32F,
                                     (int)ldx, &beta, y, CUDA_R_32F, (int)ldy, c->compute, CUBLAS_GEMM_DEFAULT);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : s_fail_blas(c, "matmul (cublasGemmEx)", st);
}

/* The reduced-precision copy of weight w (N*K floats), made on first use.
 * Called with the lock held; NULL on error (message set). */
static void *s_weight_half(s_cuda_t *c, const float *w, size_t n) {
    const int bf16 = c->precision == NR_CUDA_BF16;
    for (size_t i = 0; i < c->wc_n; i++)
        if (c->wc[i].w == w && c->wc[i].n == n) return c->wc[i].h;
    if (c->wc_n == c->wc_cap) {
        size_t nc = c->wc_cap ? 2 * c->wc_cap : 256;
        struct s_wcache *nw = realloc(c->wc, nc * sizeof(*nw));
        if (!nw) {
            snprintf(c->err, sizeof c->err, "%s: matmul: out of host memory", c->name);
            return NULL;
        }
        c->wc = nw;
        c->wc_cap = nc;
    }
    cudaError_t e;
    void *h = s_dev_alloc(c, n * 2, &e);
    if (!h) {
        s_fail(c, "matmul: allocating a reduced-precision weight copy", e);
        return NULL;
    }
    e = nr_cuda_to_half(h, w, 1, n, n, bf16, c->stream);
    if (e != cudaSuccess) {
        s_fail(c, "matmul: weight conversion kernel", e);
        (void)s_dev_free(c, h);
        return NULL;
    }
    c->wc[c->wc_n++] = (struct s_wcache){.w = w, .h = h, .n = n};
    return h;
}

/* y = x W with W and x in F16/BF16, F32 accumulation and output. */
static int s_gemm_half(s_cuda_t *c, float *y, size_t ldy, const float *x, size_t ldx, const float *w,
                       nr_wlayout_t layout, int M, int N, int K, float beta) {
    const int bf16 = c->precision == NR_CUDA_BF16;
    const cudaDataType_t ht = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    void *wh = s_weight_half(c, w, (size_t)N * K);
    if (!wh) return NR_EDEVICE;
    int rc = s_scratch(c, &c->xh, &c->xh_n, (size_t)M * K, 2);
    if (rc) return rc;
    cudaError_t e = nr_cuda_to_half(c->xh, x, (size_t)M, (size_t)K, ldx, bf16, c->stream);
    if (e != cudaSuccess) return s_fail(c, "matmul: activation conversion kernel", e);
    const float alpha = 1.0f;
    const cublasOperation_t ta = layout == NR_W_OUT_IN ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int lda = layout == NR_W_OUT_IN ? K : N;
    cublasStatus_t st = cublasGemmEx(c->blas, ta, CUBLAS_OP_N, N, M, K, &alpha, wh, ht, lda, c->xh, ht, K, &beta, y,
                                     CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : s_fail_blas(c, "matmul (cublasGemmEx, F16/BF16)", st);
}

static int s_matmul(void *ctx, float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout,
                    int M, int N, int K, int accumulate) {
    s_cuda_t *c = ctx;
    if (M < 0 || N < 0 || K < 0 || (layout != NR_W_OUT_IN && layout != NR_W_IN_OUT))
        return s_bad(c, "matmul: bad shape or layout");
    if (M == 0 || N == 0 || K == 0) return 0; /* as the CPU backend: nothing to add */
    if (ldy < (size_t)N || ldx < (size_t)(K > 0 ? K : 1) || ldy > INT_MAX || ldx > INT_MAX)
        return s_bad(c, "matmul: bad row strides");
    if (!y || !x || !w) return s_bad(c, "matmul: NULL pointer");
    int rc = s_enter(c);
    if (rc) return rc;
    if (c->precision == NR_CUDA_BF16 || c->precision == NR_CUDA_F16)
        rc = s_gemm_half(c, y, ldy, x, ldx, w, layout, M, N, K, accumulate ? 1.0f : 0.0f);
    else
        rc = s_gemm(c, y, ldy, x, ldx, w, layout, M, N, K, accumulate ? 1.0f : 0.0f);
    s_leave(c);
    return rc;
}

static int s_add_bias(void *ctx, float *y, const float *b, int M, int N) {
    s_cuda_t *c = ctx;
    if (M < 0 || N < 0) return s_bad(c, "add_bias: bad shape");
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, "add_bias kernel", nr_cuda_add_bias(y, b, M, N, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_add(void *ctx, float *y, const float *x, size_t n) {
    s_cuda_t *c = ctx;
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, "add kernel", nr_cuda_add(y, x, n, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_layernorm(void *ctx, float *y, const float *x, const float *g, const float *b, int M, int N, float eps) {
    s_cuda_t *c = ctx;
    if (M < 0 || N < 0) return s_bad(c, "layernorm: bad shape");
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, "layernorm kernel", nr_cuda_layernorm(y, x, g, b, M, N, eps, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_gelu(void *ctx, float *x, size_t n, int tanh_form) {
    s_cuda_t *c = ctx;
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, "gelu kernel", nr_cuda_gelu(x, n, tanh_form, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_softmax(void *ctx, float *x, int rows, int cols) {
    s_cuda_t *c = ctx;
    if (rows < 0 || cols < 0) return s_bad(c, "softmax: bad shape");
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, "softmax kernel", nr_cuda_softmax(x, rows, cols, c->stream));
out:
    s_leave(c);
    return rc;
}

/* Attention as two strided-batched gemms per head around the softmax
 * kernel (the encoder's case: long non-causal rows, no kv_index): scores
 * for all images of one head at once into scratch [batch, n_q, n_kv], then
 * out = P V. Row-major as column-major: S^T = K Q^T (A = K, op T), O^T =
 * V^T P^T (A = V, B = P, both op N). Called with the lock held. */
/* Query heads per key/value head. */
static int s_group(const nr_attn_args_t *a) { return a->n_kv_head > 0 ? a->n_head / a->n_kv_head : 1; }

static int s_attention_gemm(s_cuda_t *c, const nr_attn_args_t *a) {
    int rc;
    const size_t per = (size_t)a->n_q * a->n_kv;
    if ((rc = s_scratch(c, (void **)&c->ascratch, &c->ascratch_n, per * a->batch, sizeof(float)))) return rc;
    const float one = 1.0f, zero = 0.0f;
    for (int h = 0; h < a->n_head; h++) {
        const size_t ho = (size_t)h * a->head_dim, kvo = (size_t)(h / s_group(a)) * a->head_dim;
        S_CKB(c, "attention: scores (cublasGemmStridedBatchedEx)",
              cublasGemmStridedBatchedEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, a->n_kv, a->n_q, a->head_dim, &a->scale,
                                         a->k + kvo, CUDA_R_32F, (int)a->kv_rstride, (long long)a->kv_bstride,
                                         a->q + ho, CUDA_R_32F, (int)a->q_rstride, (long long)a->q_bstride, &zero,
                                         c->ascratch, CUDA_R_32F, a->n_kv, (long long)per, a->batch,
                                         c->compute, CUBLAS_GEMM_DEFAULT));
        S_CK(c, "attention: softmax kernel", nr_cuda_softmax(c->ascratch, a->batch * a->n_q, a->n_kv, c->stream));
        S_CKB(c, "attention: weighted sum (cublasGemmStridedBatchedEx)",
              cublasGemmStridedBatchedEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, a->head_dim, a->n_q, a->n_kv, &one,
                                         a->v + kvo, CUDA_R_32F, (int)a->kv_rstride, (long long)a->kv_bstride,
                                         c->ascratch, CUDA_R_32F, a->n_kv, (long long)per, &zero, a->out + ho,
                                         CUDA_R_32F, (int)a->o_rstride, (long long)a->o_bstride, a->batch,
                                         c->compute, CUBLAS_GEMM_DEFAULT));
    }
out:
    return rc;
}

static int s_attention(void *ctx, const nr_attn_args_t *a) {
    s_cuda_t *c = ctx;
    if (!a || a->batch <= 0 || a->n_head <= 0 || a->head_dim <= 0 || a->n_q <= 0 || a->n_kv <= 0 || a->q_pos0 < 0)
        return s_bad(c, "attention: bad shape");
    if (a->kv_index)
        for (int b = 0; b < a->batch; b++)
            if (a->kv_index[b] < 0) return s_bad(c, "attention: negative kv_index");
    if (a->q_rstride > INT_MAX || a->kv_rstride > INT_MAX || a->o_rstride > INT_MAX)
        return s_bad(c, "attention: row strides too large");
    if (a->n_kv_head < 0 || (a->n_kv_head > 0 && a->n_head % a->n_kv_head))
        return s_bad(c, "attention: n_kv_head does not divide n_head");
    if (!a->causal && !a->kv_index && a->n_q >= c->attn_gemm_min_q &&
        (size_t)a->batch * a->n_q * a->n_kv <= ((size_t)1 << 28)) {
        int rc = s_enter(c);
        if (rc) return rc;
        rc = s_attention_gemm(c, a);
        s_leave(c);
        return rc;
    }
    if (nr_cuda_attention_smem(a->head_dim, a->n_kv) > c->max_smem) {
        snprintf(c->err, sizeof c->err, "%s: attention: %d keys x head_dim %d need more shared memory than %zu bytes",
                 c->name, a->n_kv, a->head_dim, c->max_smem);
        nr_log(NR_LOG_ERROR, "models: %s", c->err);
        return NR_EUNSUPPORTED;
    }
    nr_cuda_attn_t k = {.batch = a->batch,
                        .n_head = a->n_head,
                        .head_dim = a->head_dim,
                        .n_q = a->n_q,
                        .n_kv = a->n_kv,
                        .causal = a->causal,
                        .q_pos0 = a->q_pos0,
                        .group = s_group(a),
                        .scale = a->scale,
                        .q = a->q,
                        .k = a->k,
                        .v = a->v,
                        .out = a->out,
                        .q_bstride = a->q_bstride,
                        .q_rstride = a->q_rstride,
                        .kv_bstride = a->kv_bstride,
                        .kv_rstride = a->kv_rstride,
                        .o_bstride = a->o_bstride,
                        .o_rstride = a->o_rstride,
                        .kv_index = NULL};
    int rc = s_enter(c);
    if (rc) return rc;
    if (a->kv_index && a->batch <= NR_CUDA_INLINE_KV) {
        k.use_inline = 1;
        memcpy(k.kv_inline, a->kv_index, (size_t)a->batch * sizeof(int));
    } else if (a->kv_index) {
        if ((rc = s_scratch(c, (void **)&c->iscratch, &c->iscratch_n, (size_t)a->batch, sizeof(int)))) goto out;
        /* Pageable source: returns once the ids are staged, so the host array
         * may change at once; the kernel after it sees them (stream order). */
        S_CK(c, "attention: uploading kv_index",
             cudaMemcpyAsync(c->iscratch, a->kv_index, (size_t)a->batch * sizeof(int), cudaMemcpyHostToDevice,
                             c->stream));
        k.kv_index = c->iscratch;
    }
    S_CK(c, "attention kernel", nr_cuda_attention(&k, c->max_smem, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_embed(void *ctx, float *out, const float *wte, const float *wpe, const int *ids, const int *pos, int n,
                   int dim, int vocab, int n_positions) {
    s_cuda_t *c = ctx;
    if (n < 0 || dim < 0 || !ids || (wpe && !pos)) return s_bad(c, "embed: bad arguments");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab || (wpe && (pos[i] < 0 || pos[i] >= n_positions))) return NR_EINVAL;
    if (n == 0) return 0;
    int rc = s_enter(c);
    if (rc) return rc;
    if (n <= NR_CUDA_INLINE_TOKENS) {
        /* Decode steps: ids and positions ride in the launch parameters. */
        memcpy(c->tokens.ids, ids, (size_t)n * sizeof(int));
        if (pos) memcpy(c->tokens.pos, pos, (size_t)n * sizeof(int));
        S_CK(c, "embed kernel", nr_cuda_embed_inline(out, wte, wpe, &c->tokens, n, dim, c->stream));
        goto out;
    }
    if ((rc = s_scratch(c, (void **)&c->iscratch, &c->iscratch_n, 2 * (size_t)n, sizeof(int)))) goto out;
    /* ids then positions; the caller's arrays are pageable host memory, so
     * the copies have read them when cudaMemcpyAsync returns. */
    S_CK(c, "embed: uploading ids",
         cudaMemcpyAsync(c->iscratch, ids, (size_t)n * sizeof(int), cudaMemcpyHostToDevice, c->stream));
    if (pos)
        S_CK(c, "embed: uploading positions",
             cudaMemcpyAsync(c->iscratch + n, pos, (size_t)n * sizeof(int), cudaMemcpyHostToDevice, c->stream));
    S_CK(c, "embed kernel", nr_cuda_embed(out, wte, wpe, c->iscratch, c->iscratch + n, n, dim, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_patch_embed(void *ctx, const nr_patch_args_t *a) {
    s_cuda_t *c = ctx;
    if (!a) return s_bad(c, "patch_embed: no arguments");
    const int C = a->channels, H = a->height, W = a->width, P = a->patch, D = a->dim;
    if (a->batch <= 0 || P <= 0 || C <= 0 || D <= 0 || H <= 0 || W <= 0 || H % P || W % P)
        return s_bad(c, "patch_embed: bad shape");
    const int np = (H / P) * (W / P), kk = C * P * P;
    int rc = s_enter(c);
    if (rc) return rc;
    if ((rc = s_scratch(c, (void **)&c->fscratch, &c->fscratch_n, (size_t)a->batch * np * kk, sizeof(float))))
        goto out;
    S_CK(c, "patch_embed: im2col kernel", nr_cuda_im2col(c->fscratch, a->pixels, a->batch, C, H, W, P, c->stream));
    {
        /* Per image: out rows 1..np (0..np-1 without a class row; ld D) =
         * col (np x kk) W^T, W [D, kk]. */
        const float alpha = 1.0f, beta = 0.0f;
        const int c0 = a->cls ? 1 : 0;
        S_CKB(c, "patch_embed: cublasGemmStridedBatchedEx",
              cublasGemmStridedBatchedEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, D, np, kk, &alpha, a->w, CUDA_R_32F, kk, 0,
                                         c->fscratch, CUDA_R_32F, kk, (long long)np * kk, &beta, a->out + (size_t)c0 * D,
                                         CUDA_R_32F, D, (long long)(np + c0) * D, a->batch, c->compute,
                                         CUBLAS_GEMM_DEFAULT));
    }
    S_CK(c, "patch_embed: finishing kernel",
         nr_cuda_patch_finish(a->out, a->b, a->cls, a->pos, a->batch, np, D, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_rmsnorm(void *ctx, float *y, const float *x, const float *g, int M, int N, float eps) {
    s_cuda_t *c = ctx;
    if (M < 0 || N <= 0) return s_bad(c, "rmsnorm: bad shape");
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, "rmsnorm kernel", nr_cuda_rmsnorm(y, x, g, M, N, eps, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_rotary(void *ctx, const nr_rotary_args_t *a) {
    s_cuda_t *c = ctx;
    if (!a || a->M < 0 || a->n_head <= 0 || a->head_dim <= 0 || a->head_dim % 2 || a->n_tok <= 0)
        return s_bad(c, "rotary: bad shape");
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, "rotary kernel",
         nr_cuda_rotary(a->x, a->ld, a->M, a->n_head, a->head_dim, a->n_tok, a->pos0, a->theta, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_mul(void *ctx, float *y, const float *x, size_t n) {
    s_cuda_t *c = ctx;
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, "mul kernel", nr_cuda_mul(y, x, n, c->stream));
out:
    s_leave(c);
    return rc;
}

static int s_scale(void *ctx, float *x, size_t n, float sc) {
    s_cuda_t *c = ctx;
    int rc = s_enter(c);
    if (rc) return rc;
    S_CK(c, "scale kernel", nr_cuda_scale(x, n, sc, c->stream));
out:
    s_leave(c);
    return rc;
}

/* ---- lifecycle ---- */

static void s_destroy(void *ctx) {
    s_cuda_t *c = ctx;
    if (!c) return;
    if (cudaSetDevice(c->device) == cudaSuccess) {
        if (c->stream) (void)cudaStreamSynchronize(c->stream);
        (void)s_dev_free(c, c->fscratch);
        (void)s_dev_free(c, c->iscratch);
        (void)s_dev_free(c, c->ascratch);
        (void)s_dev_free(c, c->xh);
        for (size_t i = 0; i < c->wc_n; i++) (void)s_dev_free(c, c->wc[i].h);
        if (c->blas) (void)cublasDestroy(c->blas);
        if (c->stream) {
            (void)cudaStreamSynchronize(c->stream);
            (void)cudaStreamDestroy(c->stream);
        }
    }
    (void)cudaGetLastError();
    pthread_mutex_destroy(&c->lock);
    free(c->wc);
    free(c);
}

static const nr_backend_ops_t s_ops = {
    .name = "cuda",
    .supports_op = s_supports,
    .destroy = s_destroy,
    .alloc = s_alloc,
    .free = s_free,
    .upload = s_upload,
    .download = s_download,
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
    .rmsnorm = s_rmsnorm,
    .rotary = s_rotary,
    .mul = s_mul,
    .scale = s_scale,
};

int nr_cuda_device_count(char *why, size_t whylen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (why && whylen) snprintf(why, whylen, "cudaGetDeviceCount: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
        return 0;
    }
    if (n <= 0 && why && whylen) snprintf(why, whylen, "cudaGetDeviceCount found no CUDA device");
    return n > 0 ? n : 0;
}

int nr_cuda_device_describe(int device_index, char *buf, size_t buflen) {
    struct cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, device_index);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (buf && buflen) snprintf(buf, buflen, "cuda:%d: %s", device_index, cudaGetErrorString(e));
        return NR_EDEVICE;
    }
    if (buf && buflen)
        snprintf(buf, buflen, "%s (sm_%d%d, %.0f GiB)", p.name, p.major, p.minor,
                 (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}

const char *nr_backend_cuda_last_error(const nr_backend_t *b) {
    if (!b || b->ops != &s_ops || !b->ctx) return "";
    return ((const s_cuda_t *)b->ctx)->err;
}

nr_cuda_params_t nr_cuda_default_params(void) {
    nr_cuda_params_t p = {.precision = NR_CUDA_F32};
    return p;
}

static const char *const s_prec_names[] = {"f32", "tf32", "bf16", "f16"};

int nr_cuda_precision_from_name(const char *name) {
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, s_prec_names[i]) == 0) return i;
    return -1;
}

const char *nr_cuda_precision_name(nr_cuda_precision_t p) {
    return (int)p >= 0 && (int)p < 4 ? s_prec_names[p] : "?";
}

nr_backend_t *nr_backend_cuda_new(int device_index, char *err, size_t errlen) {
    return nr_backend_cuda_new_params(device_index, NULL, err, errlen);
}

nr_backend_t *nr_backend_cuda_new_params(int device_index, const nr_cuda_params_t *params, char *err,
                                         size_t errlen) {
    const nr_cuda_params_t prm = params ? *params : nr_cuda_default_params();
    if ((int)prm.precision < 0 || (int)prm.precision > NR_CUDA_F16) {
        nr_seterr(err, errlen, NR_EINVAL, "cuda:%d: unknown precision %d", device_index, (int)prm.precision);
        return NULL;
    }
    char why[256] = "";
    int count = nr_cuda_device_count(why, sizeof why);
    if (count == 0) {
        nr_seterr(err, errlen, NR_EDEVICE, "cuda:%d: no CUDA device (%s)", device_index, why);
        return NULL;
    }
    if (device_index < 0 || device_index >= count) {
        nr_seterr(err, errlen, NR_EDEVICE, "cuda:%d: no such device (%d CUDA device%s: cuda:0..cuda:%d)",
                  device_index, count, count == 1 ? "" : "s", count - 1);
        return NULL;
    }
    nr_backend_t *b = calloc(1, sizeof(*b));
    s_cuda_t *c = calloc(1, sizeof(*c));
    if (!b || !c) {
        free(b);
        free(c);
        nr_seterr(err, errlen, NR_ENOMEM, "cuda:%d: out of memory", device_index);
        return NULL;
    }
    c->device = device_index;
    c->attn_gemm_min_q = 16; /* as the CPU backend's sgemm path */
    c->precision = prm.precision;
    c->compute = prm.precision == NR_CUDA_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    snprintf(c->name, sizeof c->name, "cuda:%d%s%s", device_index, prm.precision ? ":" : "",
             prm.precision ? nr_cuda_precision_name(prm.precision) : "");
    pthread_mutex_init(&c->lock, NULL);
    int rc = 0, v = 0;
    S_CK(c, "cudaSetDevice", cudaSetDevice(device_index));
    S_CK(c, "cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    S_CKB(c, "cublasCreate", cublasCreate(&c->blas));
    S_CKB(c, "cublasSetStream", cublasSetStream(c->blas, c->stream));
    /* Plain F32 gemm unless asked: no TF32 (tolerances are those of F32). */
    S_CKB(c, "cublasSetMathMode", cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    S_CK(c, "cudaDeviceGetAttribute (shared memory)",
         cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index));
    c->max_smem = v > 0 ? (size_t)v : 48 * 1024;
    v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMemoryPoolsSupported, device_index) != cudaSuccess) v = 0;
    (void)cudaGetLastError();
    if (v) {
        /* Keep freed blocks in the pool (per-call activations come and go). */
        cudaMemPool_t pool;
        uint64_t keep = UINT64_MAX;
        if (cudaDeviceGetDefaultMemPool(&pool, device_index) == cudaSuccess &&
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) == cudaSuccess)
            c->pools = 1;
        (void)cudaGetLastError();
    }
    b->ops = &s_ops;
    b->ctx = c;
    b->host_memory = 0;
    char desc[256] = "";
    nr_cuda_device_describe(device_index, desc, sizeof desc);
    nr_log(NR_LOG_INFO, "models: %s: %s, matmul %s, stream-ordered allocator %s", c->name, desc,
           nr_cuda_precision_name(c->precision), c->pools ? "on" : "off");
    return b;
out:
    nr_seterr(err, errlen, rc, "%s", c->err);
    s_destroy(c);
    free(b);
    return NULL;
}
