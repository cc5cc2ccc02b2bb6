/* The compute backend interface: a table of function pointers plus a
 * context pointer (as ggml's backends). Model code (vit.c, gpt2.c,
 * generate.c) calls only these; the CPU backend lives in models/cpu/, the
 * CUDA backend in models/cuda/. All float pointers passed to ops are in the
 * backend's memory (ops->alloc, then upload; or nr_backend_upload_new);
 * sizes are in elements; matrices are row-major. Every op returns 0 or a
 * negative NR_E* code. */
#ifndef NR_MODELS_BACKEND_H
#define NR_MODELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    NR_OP_MATMUL = 0,   /* y = x W (+ y) */
    NR_OP_ADD_BIAS,     /* y[m,:] += b */
    NR_OP_ADD,          /* y += x (residual) */
    NR_OP_LAYERNORM,    /* y = (x - mean) / sqrt(var + eps) * g + b, per row */
    NR_OP_GELU,         /* exact: 0.5 x (1 + erf(x / sqrt 2)); form 2: quick_gelu x * sigmoid(1.702 x) */
    NR_OP_GELU_TANH,    /* gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    NR_OP_SOFTMAX,      /* per row, in place */
    NR_OP_ATTENTION,    /* multi-head scaled dot-product attention */
    NR_OP_EMBED,        /* token + position embeddings */
    NR_OP_PATCH_EMBED,  /* ViT embeddings: conv 16x16/16 (im2col + gemm), CLS, positions */
    NR_OP_COPY,         /* device-to-device copy */
    NR_OP_RMSNORM,      /* Gemma: y = x / sqrt(mean(x^2) + eps) * (1 + g), per row */
    NR_OP_ROTARY,       /* rotary position embeddings, rotate-half layout (Gemma, Llama) */
    NR_OP_MUL,          /* y *= x elementwise (GeGLU) */
    NR_OP_SCALE,        /* x *= s */
    NR_OP_COUNT
} nr_op_t;

/* Weight layouts for matmul. x is [M, K], y is [M, N]. */
typedef enum {
    NR_W_OUT_IN = 0, /* W stored [N, K] (torch Linear, lm_head): y = x W^T */
    NR_W_IN_OUT = 1  /* W stored [K, N] (GPT-2 Conv1D):          y = x W   */
} nr_wlayout_t;

/* Attention over `batch` independent sequences with `n_head` heads of size
 * `head_dim`. For batch entry b, head h, query row i:
 *   q = q + b*q_bstride + i*q_rstride + h*head_dim      (head_dim floats)
 *   key/value row j (j < n_kv) at k/v + kb*kv_bstride + j*kv_rstride + g*head_dim,
 *   where kb = kv_index ? kv_index[b] : b   (lets beams share encoder K/V)
 *   and g = h / (n_head / n_kv_head), the key/value head of a group of query
 *   heads (grouped-query attention; n_kv_head 0 means n_head, one each)
 *   out row at out + b*o_bstride + i*o_rstride + h*head_dim.
 * causal: query i (absolute position q_pos0 + i) sees keys j <= q_pos0 + i.
 * scale multiplies q.k (1/sqrt(head_dim) for ViT and GPT-2).
 * kv_index is a host array of `batch` ints (the backend copies it if needed). */
typedef struct {
    int batch, n_head, head_dim;
    int n_kv_head; /* 0: n_head; else divides n_head */
    int n_q, n_kv;
    int causal, q_pos0;
    float scale;
    const float *q;
    const float *k;
    const float *v;
    float *out;
    size_t q_bstride, q_rstride;
    size_t kv_bstride, kv_rstride;
    size_t o_bstride, o_rstride;
    const int *kv_index;
} nr_attn_args_t;

/* ViT embeddings for `batch` images: pixels [batch, C, H, W] (CHW floats),
 * w [D, C, P, P], b [D], cls [D], pos [(1 + (H/P)*(W/P)), D]. Writes
 * out [batch, 1 + (H/P)*(W/P), D]: row 0 = cls + pos[0], row 1 + (py*(W/P)+px)
 * = conv patch (py, px) + b + pos[row] (row-major patch order).
 * cls NULL (SigLIP): no class row; out [batch, (H/P)*(W/P), D], pos one row
 * per patch. */
typedef struct {
    int batch, channels, height, width, patch, dim;
    const float *pixels;
    const float *w;
    const float *b;
    const float *cls;
    const float *pos;
    float *out;
} nr_patch_args_t;

/* Rotary position embeddings (transformers' apply_rotary_pos_emb, rotate-half
 * layout) in place on x [M rows, ld floats apart], each row n_head heads of
 * head_dim (even) floats at h*head_dim: row i has position
 * pos0 + i % n_tok; with f_k = 1 / theta^(2k / head_dim) and a = pos * f_k
 * (float), for k < head_dim/2: (x_k, x_{k+hd/2}) <- (x_k cos a - x_{k+hd/2} sin a,
 * x_{k+hd/2} cos a + x_k sin a). */
typedef struct {
    float *x;
    size_t ld;
    int M, n_head, head_dim, n_tok, pos0;
    float theta;
} nr_rotary_args_t;

typedef struct nr_backend_ops {
    const char *name;
    /* 1 when the op is implemented. The models run every op on the one
     * backend they are given and have no per-op CPU fallback, so
     * nr_backend_new hands out only a backend that implements them all. */
    int (*supports_op)(void *ctx, nr_op_t op);
    void (*destroy)(void *ctx);

    /* Memory: device buffers (host memory for the CPU backend). */
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *ptr);
    int (*upload)(void *ctx, void *dst, const void *src, size_t bytes);   /* host -> backend */
    int (*download)(void *ctx, void *dst, const void *src, size_t bytes); /* backend -> host */
    int (*copy)(void *ctx, void *dst, const void *src, size_t bytes);     /* backend -> backend */
    int (*synchronize)(void *ctx);

    /* y[M,N] = x[M,K] W (+ y when accumulate); x rows are ldx floats apart,
     * y rows ldy floats apart. */
    int (*matmul)(void *ctx, float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout,
                  int M, int N, int K, int accumulate);
    /* Optional (NULL: nothing to prepare). Called at load once per matmul
     * weight with the number of rows it will be multiplied by (1 for decode
     * steps; the sequence length for the encoder and cross-attention K/V),
     * so a backend with a reduced weight precision converts it before the
     * first request. 0 or NR_ENOMEM. */
    int (*prepare_matmul)(void *ctx, const float *w, nr_wlayout_t layout, int N, int K, int rows);
    /* Optional (NULL: not offered). A BF16 matmul weight w (N x K bf16
     * values, NR_W_OUT_IN, host memory: the checkpoint's mapping) that the
     * backend multiplies with no F32 copy, keyed by `key`: later matmuls
     * and prepare_matmul pass key as their w and never read it as F32. The
     * backend packs its reduced-precision copy now when it will multiply
     * `rows` rows by one (as prepare_matmul), and reads w itself, widened
     * to F32 block by block, for every other matmul. Returns 0 (the packed
     * copy serves every row count: w is not read again), 1 (later matmuls
     * read w: keep it for the backend's life), NR_EUNSUPPORTED (load an F32
     * copy instead), NR_EINVAL, NR_ENOMEM. */
    int (*adopt_bf16)(void *ctx, const float *key, const void *w, nr_wlayout_t layout, int N, int K, int rows);
    /* Optional (NULL: not offered; nr_backend_linear runs matmul, add_bias
     * and gelu instead). A linear layer in one call, so a backend can
     * apply bias and activation as the product leaves its kernel:
     * y = act(x W + b) (+ y when accumulate); b NULL for none, act -1 for
     * none or a gelu form; act and accumulate not both. The same result up
     * to the backend's rounding. */
    int (*linear)(void *ctx, float *y, size_t ldy, const float *x, size_t ldx, const float *w, nr_wlayout_t layout,
                  const float *b, int M, int N, int K, int act, int accumulate);
    int (*add_bias)(void *ctx, float *y, const float *b, int M, int N);
    int (*add)(void *ctx, float *y, const float *x, size_t n);
    int (*layernorm)(void *ctx, float *y, const float *x, const float *g, const float *b, int M, int N, float eps);
    /* In place; form 0 exact (erf), 1 tanh (gelu_new), 2 quick_gelu
     * x * sigmoid(1.702 x) (CLIP, GIT's vision tower): nr_act_t's values. */
    int (*gelu)(void *ctx, float *x, size_t n, int form);
    int (*softmax)(void *ctx, float *x, int rows, int cols);
    int (*attention)(void *ctx, const nr_attn_args_t *a);
    /* out[i,:] = wte[ids[i],:] + wpe[pos[i],:] for i < n; ids/pos are host
     * arrays, checked against vocab / n_positions (NR_EINVAL when outside).
     * wpe and pos NULL: out[i,:] = wte[ids[i],:] (no position table). */
    int (*embed)(void *ctx, float *out, const float *wte, const float *wpe, const int *ids, const int *pos, int n,
                 int dim, int vocab, int n_positions);
    int (*patch_embed)(void *ctx, const nr_patch_args_t *a);
    /* Gemma's RMSNorm per row of N (y may be x): computed in float, weight
     * applied as (1 + g). */
    int (*rmsnorm)(void *ctx, float *y, const float *x, const float *g, int M, int N, float eps);
    int (*rotary)(void *ctx, const nr_rotary_args_t *a);
    int (*mul)(void *ctx, float *y, const float *x, size_t n);
    int (*scale)(void *ctx, float *x, size_t n, float s);
} nr_backend_ops_t;

typedef struct nr_backend {
    const nr_backend_ops_t *ops;
    void *ctx;
    int host_memory; /* 1 when backend buffers are ordinary host memory (CPU) */
} nr_backend_t;

/* Backend by name: "cpu" (always), "cuda:N" when built with NR_CUDA. NULL
 * with a message in err when the name is unknown or the device fails.
 * num_threads <= 0 means all cores. */
nr_backend_t *nr_backend_new(const char *device, int num_threads, char *err, size_t errlen);
/* Frees the backend; sets *b to NULL; safe twice. */
void nr_backend_destroy(nr_backend_t **b);

/* Convenience: allocates and uploads `bytes` from host; NULL on failure. */
void *nr_backend_upload_new(nr_backend_t *b, const void *host, size_t bytes);
/* b->ops->prepare_matmul when the backend has it, else 0 (nothing to do). */
int nr_backend_prepare_matmul(const nr_backend_t *b, const float *w, nr_wlayout_t layout, int N, int K, int rows);
/* b->ops->linear when the backend has it, else matmul, add_bias (b not
 * NULL) and gelu (act >= 0) in turn; y rows ldy == N floats apart then. */
int nr_backend_linear(const nr_backend_t *be, float *y, size_t ldy, const float *x, size_t ldx, const float *w,
                      nr_wlayout_t layout, const float *b, int M, int N, int K, int act, int accumulate);
/* Frees a buffer from b->ops->alloc; NULL is ignored. */
void nr_backend_free(const nr_backend_t *b, void *p);

#endif
