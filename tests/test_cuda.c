/* GPU tests for the CUDA backend (models/cuda/): every op through the CUDA
 * backend against the CPU backend on random inputs (max normalized error
 * |cuda - cpu| / (atol + rtol |cpu|) <= 1, F32: atol = rtol = 1e-4), then
 * the tiny ViT-GPT2 checkpoint through the captioner on "cuda:0" against
 * the PyTorch reference and the CPU captioner: encoder states and logits
 * within the same tolerance, greedy and beam ids identical. GIT, BLIP and
 * PaliGemma on cuda:0: tests/test_cuda_families.c (the same binary).
 *
 * With no usable GPU (cudaGetDeviceCount fails or finds none) every GPU
 * test skips with "no CUDA device: <reason>" and the binary exits 0; the
 * one test that needs no GPU checks that "cuda:N" then fails with a clear
 * message instead. Label: gpu. */
#include <criterion/criterion.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/backend.h"
#include "models/captioner.h"
#include "models/config.h"
#include "models/cuda/backend_cuda.h"
#include "models/gpt2.h"
#include "models/io/checkpoint.h"
#include "models/io/safetensors.h"
#include "models/tensor.h"
#include "tests/model_ref.h"

/* Tolerances for F32 weights and activations. */
#define TOL_ABS 1e-4
#define TOL_REL 1e-4

/* Skips the calling test when there is no GPU. */
static void s_need_gpu(void) {
    char why[256] = "";
    if (nr_cuda_device_count(why, sizeof why) == 0) cr_skip_test("no CUDA device: %s", why);
}

static const char *s_src(void) {
    const char *s = getenv("NR_SOURCE_DIR");
    return s ? s : ".";
}
static void s_path(char *buf, size_t n, const char *rel) { snprintf(buf, n, "%s/%s", s_src(), rel); }

static double s_err(const float *a, const float *b, size_t n, size_t *worst) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (TOL_ABS + TOL_REL * fabs((double)b[i]));
        if (!(e <= m)) {
            m = isnan(e) ? INFINITY : e;
            if (worst) *worst = i;
        }
    }
    return m;
}

static uint64_t s_rng = 0x2545F4914F6CDD1Dull;
static float s_rand(void) {
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float)((s_rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *s_randv(size_t n, float scale) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = s_rand() * scale;
    return v;
}

/* ---- the two backends ---- */

typedef struct {
    nr_backend_t *cpu, *gpu;
} s_pair_t;

static s_pair_t s_pair(void) {
    s_need_gpu();
    char err[512];
    s_pair_t p;
    p.cpu = nr_backend_new("cpu", 2, err, sizeof err);
    cr_assert_not_null(p.cpu, "%s", err);
    p.gpu = nr_backend_new("cuda:0", 0, err, sizeof err);
    cr_assert_not_null(p.gpu, "%s", err);
    cr_assert_eq(p.gpu->host_memory, 0);
    return p;
}
static void s_pair_free(s_pair_t *p) {
    nr_backend_destroy(&p->cpu);
    nr_backend_destroy(&p->gpu);
}

/* Device copy of host floats. */
static float *s_up(nr_backend_t *g, const float *h, size_t n) {
    float *d = nr_backend_upload_new(g, h, (n ? n : 1) * sizeof(float));
    cr_assert_not_null(d, "upload of %zu floats: %s", n, nr_backend_cuda_last_error(g));
    return d;
}
/* Host copy (new) of device floats, after a synchronize that must succeed. */
static float *s_down(nr_backend_t *g, const float *d, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    cr_assert_eq(g->ops->synchronize(g->ctx), 0, "%s", nr_backend_cuda_last_error(g));
    cr_assert_eq(g->ops->download(g->ctx, h, d, n * sizeof(float)), 0, "%s", nr_backend_cuda_last_error(g));
    return h;
}
static void s_dfree(nr_backend_t *g, void *d) { g->ops->free(g->ctx, d); }

/* Compares n floats of a device result with a host (CPU backend) one. */
static void s_check(nr_backend_t *g, const float *dev, const float *want, size_t n, const char *what) {
    float *got = s_down(g, dev, n);
    size_t w = 0;
    double e = s_err(got, want, n, &w);
    cr_assert_leq(e, 1.0, "%s: max normalized error %g at %zu (%g vs %g)", what, e, w, n ? got[w] : 0.0,
                  n ? want[w] : 0.0);
    free(got);
}

/* ------------------------------------------------------------------ */
/* No GPU needed                                                        */
/* ------------------------------------------------------------------ */

Test(cuda_setup, device_names_and_clear_errors) {
    char err[512] = "", why[256] = "";
    cr_assert_null(nr_backend_new("cuda:x", 0, err, sizeof err));
    cr_assert(strstr(err, "unknown device") != NULL, "%s", err);
    cr_assert_null(nr_backend_new("cuda:", 0, err, sizeof err));
    cr_assert_null(nr_backend_new("cudax", 0, err, sizeof err));
    cr_assert_null(nr_backend_new("cuda:99999", 0, err, sizeof err));
    cr_assert(strstr(err, "cuda:99999") != NULL, "%s", err);
    cr_assert_null(nr_backend_cuda_new(-1, err, sizeof err));
    cr_assert_null(nr_backend_new("cuda:0:f8", 0, err, sizeof err));
    cr_assert(strstr(err, "unknown precision") != NULL, "%s", err);
    cr_assert_null(nr_backend_new("cuda:0:", 0, err, sizeof err));
    cr_assert_eq(nr_cuda_precision_from_name("bf16"), NR_CUDA_BF16);
    cr_assert_eq(nr_cuda_precision_from_name("tf32"), NR_CUDA_TF32);
    cr_assert_eq(nr_cuda_precision_from_name("f64"), -1);
    cr_assert_str_eq(nr_cuda_precision_name(NR_CUDA_F16), "f16");
    int n = nr_cuda_device_count(why, sizeof why);
    cr_assert_geq(n, 0);
    if (n == 0) {
        /* The message a worker started with --device cuda:0 would log. */
        cr_assert_null(nr_backend_new("cuda:0", 0, err, sizeof err));
        cr_assert(strstr(err, "cuda:0") && strstr(err, "no CUDA device"), "%s", err);
        fprintf(stderr, "no CUDA device here (%s): the GPU tests skip; cuda:0 gives \"%s\"\n", why, err);
    }
    cr_assert_str_eq(nr_backend_cuda_last_error(NULL), "");
}

/* ------------------------------------------------------------------ */
/* Ops: CUDA against CPU                                                */
/* ------------------------------------------------------------------ */

Test(cuda_ops, memory_supports_and_errors) {
    s_pair_t p = s_pair();
    nr_backend_t *g = p.gpu;
    for (int op = 0; op < NR_OP_COUNT; op++) cr_assert(g->ops->supports_op(g->ctx, (nr_op_t)op));
    cr_assert_str_eq(g->ops->name, "cuda");
    float *z = g->ops->alloc(g->ctx, 0);
    cr_assert_not_null(z);
    s_dfree(g, z);
    float *h = s_randv(1000, 1);
    float *d = s_up(g, h, 1000), *d2 = g->ops->alloc(g->ctx, 1000 * sizeof(float));
    cr_assert_eq(g->ops->copy(g->ctx, d2, d + 10, 990 * sizeof(float)), 0);
    float *back = s_down(g, d2, 990);
    cr_assert_eq(memcmp(back, h + 10, 990 * sizeof(float)), 0);
    /* bad arguments: an error code and a message, never a crash */
    cr_assert_eq(g->ops->matmul(g->ctx, d2, 10, NULL, 10, d, NR_W_OUT_IN, 2, 10, 10, 0), NR_EINVAL);
    cr_assert(strstr(nr_backend_cuda_last_error(g), "matmul") != NULL);
    cr_assert_eq(g->ops->matmul(g->ctx, d2, 5, d, 10, d, NR_W_OUT_IN, 2, 10, 10, 0), NR_EINVAL);
    /* an absurd allocation fails cleanly with a message */
    cr_assert_null(g->ops->alloc(g->ctx, (size_t)1 << 60));
    cr_assert(strstr(nr_backend_cuda_last_error(g), "allocating") != NULL, "%s", nr_backend_cuda_last_error(g));
    cr_assert_eq(g->ops->synchronize(g->ctx), 0, "the failed allocation must not poison the stream: %s",
                 nr_backend_cuda_last_error(g));
    s_dfree(g, d);
    s_dfree(g, d2);
    free(h);
    free(back);
    s_pair_free(&p);
    nr_backend_destroy(&p.gpu);
}

static void s_matmul_case(s_pair_t *p, int M, int N, int K, int ldx, int ldy) {
    float *x = s_randv((size_t)M * ldx, 1), *w = s_randv((size_t)N * K, 1);
    float *dx = s_up(p->gpu, x, (size_t)M * ldx), *dw = s_up(p->gpu, w, (size_t)N * K);
    for (int layout = 0; layout < 2; layout++)
        for (int acc = 0; acc < 2; acc++) {
            float *y = s_randv((size_t)M * ldy, 1);
            float *dy = s_up(p->gpu, y, (size_t)M * ldy);
            cr_assert_eq(p->cpu->ops->matmul(p->cpu->ctx, y, ldy, x, ldx, w, (nr_wlayout_t)layout, M, N, K, acc), 0);
            cr_assert_eq(p->gpu->ops->matmul(p->gpu->ctx, dy, ldy, dx, ldx, dw, (nr_wlayout_t)layout, M, N, K, acc), 0,
                         "%s", nr_backend_cuda_last_error(p->gpu));
            char what[128];
            snprintf(what, sizeof what, "matmul M %d N %d K %d ldx %d ldy %d layout %d acc %d", M, N, K, ldx, ldy,
                     layout, acc);
            s_check(p->gpu, dy, y, (size_t)M * ldy, what); /* the gaps between rows too */
            s_dfree(p->gpu, dy);
            free(y);
        }
    s_dfree(p->gpu, dx);
    s_dfree(p->gpu, dw);
    free(x);
    free(w);
}

Test(cuda_ops, matmul_layouts_strides_accumulate) {
    s_pair_t p = s_pair();
    s_matmul_case(&p, 1, 1, 1, 1, 1);
    s_matmul_case(&p, 1, 96, 32, 32, 96);
    s_matmul_case(&p, 3, 17, 33, 40, 20);
    s_matmul_case(&p, 8, 64, 64, 64, 64);
    s_matmul_case(&p, 197, 96, 32, 32, 96);
    s_matmul_case(&p, 70, 130, 300, 310, 131);
    s_matmul_case(&p, 4, 768, 3072, 3072, 768);
    s_matmul_case(&p, 2, 50257, 32, 32, 50257); /* lm_head-like */
    s_pair_free(&p);
}


/* TF32 / BF16 / F16 matmul against the CPU's F32, by relative L2 error:
 * the rounding of 10 (tf32, f16) or 7 (bf16) mantissa bits. */
Test(cuda_ops, matmul_reduced_precision) {
    s_need_gpu();
    const char *dev[3] = {"cuda:0:tf32", "cuda:0:bf16", "cuda:0:f16"};
    const double tol[3] = {3e-3, 1.5e-2, 3e-3};
    char err[512];
    nr_backend_t *cpu = nr_backend_new("cpu", 2, err, sizeof err);
    cr_assert_not_null(cpu, "%s", err);
    const int M = 33, N = 300, K = 768, ldx = 800, ldy = 310;
    for (int p = 0; p < 3; p++) {
        nr_backend_t *g = nr_backend_new(dev[p], 0, err, sizeof err);
        cr_assert_not_null(g, "%s", err);
        for (int round = 0; round < 2; round++) { /* round 1: W freed and remade (no stale copy) */
            float *x = s_randv((size_t)M * ldx, 1), *w = s_randv((size_t)N * K, 1);
            float *dx = s_up(g, x, (size_t)M * ldx), *dw = s_up(g, w, (size_t)N * K);
            for (int layout = 0; layout < 2; layout++) {
                float *y = s_randv((size_t)M * ldy, 1);
                float *dy = s_up(g, y, (size_t)M * ldy);
                cr_assert_eq(cpu->ops->matmul(cpu->ctx, y, ldy, x, ldx, w, (nr_wlayout_t)layout, M, N, K, 1), 0);
                cr_assert_eq(g->ops->matmul(g->ctx, dy, ldy, dx, ldx, dw, (nr_wlayout_t)layout, M, N, K, 1), 0, "%s",
                             nr_backend_cuda_last_error(g));
                float *got = s_down(g, dy, (size_t)M * ldy);
                double e = nr_test_rel_l2(got, y, (size_t)M * ldy);
                fprintf(stderr, "%s matmul layout %d: relative L2 error %.3g\n", dev[p], layout, e);
                cr_assert_leq(e, tol[p], "%s layout %d round %d: relative L2 error %g", dev[p], layout, round, e);
                free(got);
                free(y);
                s_dfree(g, dy);
            }
            s_dfree(g, dx);
            s_dfree(g, dw);
            free(x);
            free(w);
        }
        nr_backend_destroy(&g);
    }
    nr_backend_destroy(&cpu);
}

Test(cuda_ops, add_bias_add_layernorm) {
    s_pair_t p = s_pair();
    int shapes[][2] = {{1, 1}, {3, 5}, {197, 32}, {7, 768}, {2, 3000}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        const int M = shapes[k][0], N = shapes[k][1];
        const size_t n = (size_t)M * N;
        float *y = s_randv(n, 3), *x = s_randv(n, 2), *b = s_randv((size_t)N, 1), *g = s_randv((size_t)N, 1);
        for (size_t i = 0; i < n; i++) x[i] += 5.0f; /* a mean far from 0 */
        float *dy = s_up(p.gpu, y, n), *dx = s_up(p.gpu, x, n), *db = s_up(p.gpu, b, N), *dg = s_up(p.gpu, g, N);
        char what[64];
        cr_assert_eq(p.cpu->ops->add_bias(p.cpu->ctx, y, b, M, N), 0);
        cr_assert_eq(p.gpu->ops->add_bias(p.gpu->ctx, dy, db, M, N), 0);
        snprintf(what, sizeof what, "add_bias %dx%d", M, N);
        s_check(p.gpu, dy, y, n, what);
        cr_assert_eq(p.cpu->ops->add(p.cpu->ctx, y, x, n), 0);
        cr_assert_eq(p.gpu->ops->add(p.gpu->ctx, dy, dx, n), 0);
        snprintf(what, sizeof what, "add %dx%d", M, N);
        s_check(p.gpu, dy, y, n, what);
        cr_assert_eq(p.cpu->ops->layernorm(p.cpu->ctx, y, x, g, b, M, N, 1e-5f), 0);
        cr_assert_eq(p.gpu->ops->layernorm(p.gpu->ctx, dy, dx, dg, db, M, N, 1e-5f), 0);
        snprintf(what, sizeof what, "layernorm %dx%d", M, N);
        s_check(p.gpu, dy, y, n, what);
        /* in place, tiny eps (ViT's 1e-12) */
        cr_assert_eq(p.cpu->ops->layernorm(p.cpu->ctx, x, x, g, b, M, N, 1e-12f), 0);
        cr_assert_eq(p.gpu->ops->layernorm(p.gpu->ctx, dx, dx, dg, db, M, N, 1e-12f), 0);
        snprintf(what, sizeof what, "layernorm in place %dx%d", M, N);
        s_check(p.gpu, dx, x, n, what);
        s_dfree(p.gpu, dy);
        s_dfree(p.gpu, dx);
        s_dfree(p.gpu, db);
        s_dfree(p.gpu, dg);
        free(y);
        free(x);
        free(b);
        free(g);
    }
    s_pair_free(&p);
}

Test(cuda_ops, gelu_both_forms_and_softmax) {
    s_pair_t p = s_pair();
    const size_t n = 100003;
    for (int form = 0; form < 3; form++) { /* erf, tanh, quick_gelu */
        float *x = s_randv(n, 8);
        float *dx = s_up(p.gpu, x, n);
        cr_assert_eq(p.cpu->ops->gelu(p.cpu->ctx, x, n, form), 0);
        cr_assert_eq(p.gpu->ops->gelu(p.gpu->ctx, dx, n, form), 0);
        s_check(p.gpu, dx, x, n, form == 2 ? "quick_gelu" : form ? "gelu tanh" : "gelu erf");
        s_dfree(p.gpu, dx);
        free(x);
    }
    int shapes[][2] = {{1, 1}, {4, 7}, {3, 50257}, {300, 197}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        const int R = shapes[k][0], C = shapes[k][1];
        float *x = s_randv((size_t)R * C, 20);
        float *dx = s_up(p.gpu, x, (size_t)R * C);
        cr_assert_eq(p.cpu->ops->softmax(p.cpu->ctx, x, R, C), 0);
        cr_assert_eq(p.gpu->ops->softmax(p.gpu->ctx, dx, R, C), 0);
        char what[64];
        snprintf(what, sizeof what, "softmax %dx%d", R, C);
        s_check(p.gpu, dx, x, (size_t)R * C, what);
        s_dfree(p.gpu, dx);
        free(x);
    }
    s_pair_free(&p);
}

/* One attention case, laid out as the models do (q inside a fused row of
 * 3D, K|V rows of 2 KVH hd), with KVH key/value heads (grouped-query
 * attention when fewer than H). */
static void s_attn_case_kv(int batch, int H, int KVH, int hd, int n_q, int n_kv, int causal, int q_pos0,
                           int use_index) {
    s_pair_t p = s_pair();
    const int D = H * hd, KD = KVH * hd;
    int idx[8] = {1, 0, 1, 1, 0, 0, 1, 0};
    const int nkvb = use_index ? 2 : batch;
    const size_t nq = (size_t)batch * n_q * 3 * D, nkv = (size_t)nkvb * n_kv * 2 * KD, no = (size_t)batch * n_q * D;
    float *q = s_randv(nq, 1), *kv = s_randv(nkv, 1), *out = s_randv(no, 1);
    float *dq = s_up(p.gpu, q, nq), *dkv = s_up(p.gpu, kv, nkv), *dout = s_up(p.gpu, out, no);
    nr_attn_args_t a = {.batch = batch, .n_head = H, .n_kv_head = KVH == H ? 0 : KVH, .head_dim = hd, .n_q = n_q,
                        .n_kv = n_kv, .causal = causal, .q_pos0 = q_pos0, .scale = 1.0f / sqrtf((float)hd), .q = q,
                        .k = kv, .v = kv + KD, .out = out, .q_bstride = (size_t)n_q * 3 * D,
                        .q_rstride = 3 * (size_t)D, .kv_bstride = (size_t)n_kv * 2 * KD, .kv_rstride = 2 * (size_t)KD,
                        .o_bstride = (size_t)n_q * D, .o_rstride = (size_t)D, .kv_index = use_index ? idx : NULL};
    cr_assert_eq(p.cpu->ops->attention(p.cpu->ctx, &a), 0);
    a.q = dq;
    a.k = dkv;
    a.v = dkv + KD;
    a.out = dout;
    cr_assert_eq(p.gpu->ops->attention(p.gpu->ctx, &a), 0, "%s", nr_backend_cuda_last_error(p.gpu));
    char what[160];
    snprintf(what, sizeof what, "attention batch %d heads %d/%d hd %d n_q %d n_kv %d causal %d q_pos0 %d index %d",
             batch, H, KVH, hd, n_q, n_kv, causal, q_pos0, use_index);
    s_check(p.gpu, dout, out, no, what);
    s_dfree(p.gpu, dq);
    s_dfree(p.gpu, dkv);
    s_dfree(p.gpu, dout);
    free(q);
    free(kv);
    free(out);
    s_pair_free(&p);
}

static void s_attn_case(int batch, int H, int hd, int n_q, int n_kv, int causal, int q_pos0, int use_index) {
    s_attn_case_kv(batch, H, H, hd, n_q, n_kv, causal, q_pos0, use_index);
}

/* Grouped-query attention (Gemma): the gemm path, the prefix with kv_index,
 * cached decode steps; one KV head (PaliGemma's Gemma-2B) and several. */
Test(cuda_ops, attention_grouped_kv_heads) {
    s_attn_case_kv(2, 8, 1, 256, 260, 260, 0, 0, 0);
    s_attn_case_kv(2, 6, 2, 8, 20, 20, 0, 0, 1);
    s_attn_case_kv(3, 8, 1, 256, 1, 270, 1, 269, 0);
    s_attn_case_kv(2, 4, 2, 10, 3, 30, 1, 27, 0);
}

/* Non-causal with n_q >= 16 and no kv_index: the gemm path (cuBLAS + softmax). */
Test(cuda_ops, attention_vit_like_gemm_path) { s_attn_case(2, 4, 64, 197, 197, 0, 0, 0); }
Test(cuda_ops, attention_noncausal_small_heads_gemm_path) { s_attn_case(3, 3, 8, 50, 50, 0, 0, 0); }
/* Everything else: the fused kernel. */
Test(cuda_ops, attention_noncausal_fused) { s_attn_case(2, 4, 64, 15, 197, 0, 0, 0); }
Test(cuda_ops, attention_cross_with_kv_index) { s_attn_case(8, 4, 8, 1, 197, 0, 0, 1); }
Test(cuda_ops, attention_causal_prefill) { s_attn_case(2, 3, 16, 6, 6, 1, 0, 0); }
Test(cuda_ops, attention_causal_cached_step) { s_attn_case(3, 12, 64, 1, 9, 1, 8, 0); }
Test(cuda_ops, attention_causal_chunk_after_cache) { s_attn_case(2, 2, 80, 20, 25, 1, 5, 0); }
Test(cuda_ops, attention_wide_heads) {
    s_attn_case(1, 2, 256, 3, 40, 0, 0, 0);
    s_attn_case(1, 1, 300, 2, 33, 1, 31, 0);
}
Test(cuda_ops, attention_long_context) {
    s_attn_case(1, 2, 64, 2, 4000, 1, 3998, 0);
    s_attn_case(1, 1, 32, 1, 14000, 0, 0, 0); /* scores need more than 48 KB of shared memory */
}

/* Gemma's ops: RMSNorm (in place too), rotary embeddings on strided rows
 * (q heads, then cached keys rs apart), elementwise mul and scale. */
Test(cuda_ops, rmsnorm_rotary_mul_scale) {
    s_pair_t p = s_pair();
    int shapes[][2] = {{1, 1}, {3, 10}, {260, 32}, {5, 2048}, {2, 3000}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        const int M = shapes[k][0], N = shapes[k][1];
        const size_t n = (size_t)M * N;
        float *y = s_randv(n, 1), *x = s_randv(n, 3), *g = s_randv((size_t)N, 0.5f);
        float *dy = s_up(p.gpu, y, n), *dx = s_up(p.gpu, x, n), *dg = s_up(p.gpu, g, N);
        char what[64];
        cr_assert_eq(p.cpu->ops->rmsnorm(p.cpu->ctx, y, x, g, M, N, 1e-6f), 0);
        cr_assert_eq(p.gpu->ops->rmsnorm(p.gpu->ctx, dy, dx, dg, M, N, 1e-6f), 0);
        snprintf(what, sizeof what, "rmsnorm %dx%d", M, N);
        s_check(p.gpu, dy, y, n, what);
        cr_assert_eq(p.cpu->ops->mul(p.cpu->ctx, y, x, n), 0);
        cr_assert_eq(p.gpu->ops->mul(p.gpu->ctx, dy, dx, n), 0);
        cr_assert_eq(p.cpu->ops->scale(p.cpu->ctx, y, n, 45.254834f), 0);
        cr_assert_eq(p.gpu->ops->scale(p.gpu->ctx, dy, n, 45.254834f), 0);
        snprintf(what, sizeof what, "mul, scale %dx%d", M, N);
        s_check(p.gpu, dy, y, n, what);
        cr_assert_eq(p.cpu->ops->rmsnorm(p.cpu->ctx, x, x, g, M, N, 1e-6f), 0);
        cr_assert_eq(p.gpu->ops->rmsnorm(p.gpu->ctx, dx, dx, dg, M, N, 1e-6f), 0);
        snprintf(what, sizeof what, "rmsnorm in place %dx%d", M, N);
        s_check(p.gpu, dx, x, n, what);
        s_dfree(p.gpu, dy);
        s_dfree(p.gpu, dx);
        s_dfree(p.gpu, dg);
        free(y);
        free(x);
        free(g);
    }
    /* rotary: {M, n_head, head_dim, ld, n_tok, pos0, theta} */
    const int rc[][6] = {{260, 8, 256, 8 * 256, 260, 1}, {3, 1, 256, 300 * 256, 1, 270}, {8, 6, 8, 60, 4, 17},
                         {2, 4, 10, 40, 2, 1}};
    const float theta[] = {10000.0f, 10000.0f, 500.0f, 10000.0f};
    for (size_t k = 0; k < sizeof rc / sizeof *rc; k++) {
        const int M = rc[k][0], H = rc[k][1], hd = rc[k][2], ld = rc[k][3];
        const size_t n = (size_t)(M - 1) * ld + (size_t)H * hd;
        float *x = s_randv(n, 2), *dx = s_up(p.gpu, x, n);
        nr_rotary_args_t a = {.x = x, .ld = (size_t)ld, .M = M, .n_head = H, .head_dim = hd, .n_tok = rc[k][4],
                              .pos0 = rc[k][5], .theta = theta[k]};
        cr_assert_eq(p.cpu->ops->rotary(p.cpu->ctx, &a), 0);
        a.x = dx;
        cr_assert_eq(p.gpu->ops->rotary(p.gpu->ctx, &a), 0, "%s", nr_backend_cuda_last_error(p.gpu));
        char what[96];
        snprintf(what, sizeof what, "rotary M %d heads %d hd %d ld %d", M, H, hd, ld);
        s_check(p.gpu, dx, x, n, what);
        a.head_dim = 7;
        cr_assert_eq(p.gpu->ops->rotary(p.gpu->ctx, &a), NR_EINVAL);
        s_dfree(p.gpu, dx);
        free(x);
    }
    s_pair_free(&p);
}

Test(cuda_ops, embed_and_bounds) {
    s_pair_t p = s_pair();
    const int V = 50, P = 16, D = 40, n = 9;
    float *wte = s_randv(V * D, 1), *wpe = s_randv(P * D, 1), *out = malloc((size_t)n * D * sizeof(float));
    float *dwte = s_up(p.gpu, wte, V * D), *dwpe = s_up(p.gpu, wpe, P * D);
    float *dout = p.gpu->ops->alloc(p.gpu->ctx, (size_t)n * D * sizeof(float));
    int ids[9] = {49, 0, 4, 4, 17, 3, 2, 1, 0}, pos[9] = {0, 15, 3, 3, 8, 1, 2, 4, 5};
    cr_assert_eq(p.cpu->ops->embed(p.cpu->ctx, out, wte, wpe, ids, pos, n, D, V, P), 0);
    cr_assert_eq(p.gpu->ops->embed(p.gpu->ctx, dout, dwte, dwpe, ids, pos, n, D, V, P), 0);
    /* the host ids may change at once: the backend copied them */
    int keep = ids[0];
    ids[0] = 7;
    s_check(p.gpu, dout, out, (size_t)n * D, "embed");
    ids[0] = keep;
    ids[1] = V;
    cr_assert_eq(p.gpu->ops->embed(p.gpu->ctx, dout, dwte, dwpe, ids, pos, n, D, V, P), NR_EINVAL);
    ids[1] = 0;
    pos[0] = -1;
    cr_assert_eq(p.gpu->ops->embed(p.gpu->ctx, dout, dwte, dwpe, ids, pos, n, D, V, P), NR_EINVAL);
    /* no position table (Gemma): the token rows alone, short and long lists */
    cr_assert_eq(p.cpu->ops->embed(p.cpu->ctx, out, wte, NULL, ids, NULL, n, D, V, 0), 0);
    cr_assert_eq(p.gpu->ops->embed(p.gpu->ctx, dout, dwte, NULL, ids, NULL, n, D, V, 0), 0);
    s_check(p.gpu, dout, out, (size_t)n * D, "embed without positions");
    s_dfree(p.gpu, dwte);
    s_dfree(p.gpu, dwpe);
    s_dfree(p.gpu, dout);
    free(wte);
    free(wpe);
    free(out);
    s_pair_free(&p);
}

Test(cuda_ops, patch_embed) {
    s_pair_t p = s_pair();
    int cases[][6] = {{2, 3, 32, 48, 16, 6}, {3, 3, 224, 224, 16, 32}, {1, 1, 8, 8, 4, 5}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int B = cases[k][0], C = cases[k][1], Hh = cases[k][2], W = cases[k][3], P = cases[k][4], D = cases[k][5];
        const int np = (Hh / P) * (W / P);
        const size_t npx = (size_t)B * C * Hh * W, nw = (size_t)D * C * P * P, no = (size_t)B * (np + 1) * D;
        float *px = s_randv(npx, 1), *w = s_randv(nw, 0.1f), *bias = s_randv(D, 1), *cls = s_randv(D, 1);
        float *pos = s_randv((size_t)(np + 1) * D, 1), *out = malloc(no * sizeof(float));
        float *dpx = s_up(p.gpu, px, npx), *dw = s_up(p.gpu, w, nw), *db = s_up(p.gpu, bias, D);
        float *dcls = s_up(p.gpu, cls, D), *dpos = s_up(p.gpu, pos, (size_t)(np + 1) * D);
        float *dout = p.gpu->ops->alloc(p.gpu->ctx, no * sizeof(float));
        nr_patch_args_t a = {.batch = B, .channels = C, .height = Hh, .width = W, .patch = P, .dim = D, .pixels = px,
                             .w = w, .b = bias, .cls = cls, .pos = pos, .out = out};
        cr_assert_eq(p.cpu->ops->patch_embed(p.cpu->ctx, &a), 0);
        nr_patch_args_t da = a;
        da.pixels = dpx;
        da.w = dw;
        da.b = db;
        da.cls = dcls;
        da.pos = dpos;
        da.out = dout;
        cr_assert_eq(p.gpu->ops->patch_embed(p.gpu->ctx, &da), 0, "%s", nr_backend_cuda_last_error(p.gpu));
        char what[96];
        snprintf(what, sizeof what, "patch_embed B %d C %d %dx%d P %d D %d", B, C, Hh, W, P, D);
        s_check(p.gpu, dout, out, no, what);
        /* SigLIP: no class row, one position per patch */
        a.cls = NULL;
        a.pos = pos + D;
        da.cls = NULL;
        da.pos = dpos + D;
        cr_assert_eq(p.cpu->ops->patch_embed(p.cpu->ctx, &a), 0);
        cr_assert_eq(p.gpu->ops->patch_embed(p.gpu->ctx, &da), 0, "%s", nr_backend_cuda_last_error(p.gpu));
        s_check(p.gpu, dout, out, no - (size_t)B * D, "patch_embed without a class token");
        da.patch = 5; /* 32 % 5 != 0 */
        cr_assert_eq(p.gpu->ops->patch_embed(p.gpu->ctx, &da), NR_EINVAL);
        s_dfree(p.gpu, dpx);
        s_dfree(p.gpu, dw);
        s_dfree(p.gpu, db);
        s_dfree(p.gpu, dcls);
        s_dfree(p.gpu, dpos);
        s_dfree(p.gpu, dout);
        free(px);
        free(w);
        free(bias);
        free(cls);
        free(pos);
        free(out);
    }
    s_pair_free(&p);
}

/* ------------------------------------------------------------------ */
/* The tiny checkpoint on cuda:0                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    nr_safetensors_t *ref;
    nr_captioner_t *gpu, *cpu;
} s_fix_t;

static s_fix_t s_fix(void) {
    s_need_gpu();
    s_fix_t f = {0};
    char path[1024], err[1024];
    s_path(path, sizeof path, "tests/fixtures/vit-gpt2-tiny-reference.safetensors");
    cr_assert_eq(nr_safetensors_open(path, &f.ref, err, sizeof err), 0, "%s", err);
    s_path(path, sizeof path, "tests/fixtures/vit-gpt2-tiny");
    nr_captioner_params_t p = nr_captioner_default_params();
    p.device = "cuda:0";
    cr_assert_eq(nr_captioner_load(path, &p, &f.gpu, err, sizeof err), 0, "%s", err);
    p.device = "cpu";
    p.num_threads = 2;
    cr_assert_eq(nr_captioner_load(path, &p, &f.cpu, err, sizeof err), 0, "%s", err);
    return f;
}
static void s_fix_free(s_fix_t *f) {
    nr_captioner_destroy(&f->gpu);
    nr_captioner_destroy(&f->cpu);
    nr_safetensors_close(&f->ref);
}

static float *s_ref(s_fix_t *f, const char *name, size_t *count) { return nr_test_ref(f->ref, name, count); }
static int *s_ref_ids(s_fix_t *f, const char *name, int *count) { return nr_test_ref_ids(f->ref, name, count); }
static void s_check_ids(const int *got, int gn, const int *want, int wn, const char *what) {
    char g[512] = "", w[512] = "";
    for (int i = 0; i < gn; i++) snprintf(g + strlen(g), sizeof g - strlen(g), " %d", got[i]);
    for (int i = 0; i < wn; i++) snprintf(w + strlen(w), sizeof w - strlen(w), " %d", want[i]);
    cr_assert(gn == wn && memcmp(got, want, (size_t)wn * sizeof(int)) == 0, "%s: got%s, want%s", what, g, w);
}

Test(cuda_fixture, encoder_states_vs_reference_and_cpu) {
    s_fix_t f = s_fix();
    size_t np, ns, nb, nbs;
    float *px = s_ref(&f, "encoder.pixel_values", &np), *want = s_ref(&f, "encoder.hidden_states", &ns);
    float *got = malloc(ns * sizeof(float)), *cpu = malloc(ns * sizeof(float));
    char err[512];
    cr_assert_eq(nr_captioner_encode(f.gpu, px, 1, got, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_captioner_encode(f.cpu, px, 1, cpu, err, sizeof err), 0, "%s", err);
    size_t w = 0;
    double e = s_err(got, want, ns, &w);
    fprintf(stderr, "cuda encoder.hidden_states: max normalized error %.3g vs reference, %.3g vs cpu\n", e,
            s_err(got, cpu, ns, NULL));
    cr_assert_leq(e, 1.0, "element %zu: %g vs %g", w, got[w], want[w]);
    cr_assert_leq(s_err(got, cpu, ns, NULL), 1.0);
    /* a batch of three (one encoder call) */
    float *bpx = s_ref(&f, "batch.pixel_values", &nb), *bwant = s_ref(&f, "batch.hidden_states", &nbs);
    float *bgot = malloc(nbs * sizeof(float));
    cr_assert_eq(nr_captioner_encode(f.gpu, bpx, 3, bgot, err, sizeof err), 0, "%s", err);
    e = s_err(bgot, bwant, nbs, NULL);
    fprintf(stderr, "cuda batch.hidden_states: max normalized error %.3g\n", e);
    cr_assert_leq(e, 1.0);
    free(px);
    free(want);
    free(got);
    free(cpu);
    free(bpx);
    free(bwant);
    free(bgot);
    s_fix_free(&f);
}

/* The encoder in each reduced precision: states near the reference (relative
 * L2), and the decoder still produces captions. */
Test(cuda_fixture, reduced_precision_encoder_and_captions) {
    s_need_gpu();
    const char *dev[3] = {"cuda:0:tf32", "cuda:0:bf16", "cuda:0:f16"};
    const double tol[3] = {3e-3, 2e-2, 3e-3};
    char path[1024], err[1024];
    nr_safetensors_t *ref = NULL;
    s_path(path, sizeof path, "tests/fixtures/vit-gpt2-tiny-reference.safetensors");
    cr_assert_eq(nr_safetensors_open(path, &ref, err, sizeof err), 0, "%s", err);
    s_fix_t f = {.ref = ref};
    size_t np, ns;
    float *px = s_ref(&f, "encoder.pixel_values", &np), *want = s_ref(&f, "encoder.hidden_states", &ns);
    float *got = malloc(ns * sizeof(float));
    s_path(path, sizeof path, "tests/fixtures/vit-gpt2-tiny");
    for (int p = 0; p < 3; p++) {
        nr_captioner_params_t cp = nr_captioner_default_params();
        cp.device = dev[p];
        nr_captioner_t *cap = NULL;
        cr_assert_eq(nr_captioner_load(path, &cp, &cap, err, sizeof err), 0, "%s", err);
        cr_assert_eq(nr_captioner_encode(cap, px, 1, got, err, sizeof err), 0, "%s", err);
        double e = nr_test_rel_l2(got, want, ns);
        fprintf(stderr, "%s encoder.hidden_states: relative L2 error %.3g\n", dev[p], e);
        cr_assert_leq(e, tol[p], "%s: %g", dev[p], e);
        int ids[16], len;
        nr_gen_config_t g = nr_captioner_gen_defaults(cap);
        cr_assert_eq(nr_captioner_generate(cap, got, 1, &g, ids, &len, err, sizeof err), 0, "%s", err);
        cr_assert(len >= 2 && ids[0] == 50256);
        nr_captioner_destroy(&cap);
    }
    free(px);
    free(want);
    free(got);
    nr_safetensors_close(&ref);
}

Test(cuda_fixture, decoder_logits_full_and_cached) {
    s_fix_t f = s_fix();
    char dir[1024], err[1024];
    s_path(dir, sizeof dir, "tests/fixtures/vit-gpt2-tiny");
    nr_model_config_t cfg;
    cr_assert_eq(nr_model_config_load(dir, &cfg, err, sizeof err), 0, "%s", err);
    nr_checkpoint_t *ck = NULL;
    cr_assert_eq(nr_checkpoint_open_dir(dir, &ck, err, sizeof err), 0, "%s", err);
    nr_backend_t *g = nr_backend_new("cuda:0", 0, err, sizeof err);
    cr_assert_not_null(g, "%s", err);
    nr_gpt2_t *m = NULL;
    cr_assert_eq(nr_gpt2_load(&cfg.gpt2, ck, "decoder.", g, &m, err, sizeof err), 0, "%s", err);
    size_t ns, nl;
    int T;
    float *enc = s_ref(&f, "encoder.hidden_states", &ns), *want = s_ref(&f, "decoder.logits", &nl);
    int *ids = s_ref_ids(&f, "decoder.input_ids", &T);
    const int V = 50257;
    cr_assert_eq(nl, (size_t)T * V);
    float *denc = s_up(g, enc, ns), *got = malloc(nl * sizeof(float));
    nr_gpt2_state_t *s = nr_gpt2_state_new(m, 1, 16, 1, 197);
    cr_assert_not_null(s);
    cr_assert_eq(nr_gpt2_set_encoder(m, s, denc, NULL), 0);
    cr_assert_eq(nr_gpt2_step(m, s, ids, T, got, 1), 0, "%s", nr_backend_cuda_last_error(g));
    double e = s_err(got, want, nl, NULL);
    fprintf(stderr, "cuda decoder.logits (one pass): max normalized error %.3g\n", e);
    cr_assert_leq(e, 1.0);
    cr_assert_eq(nr_gpt2_set_encoder(m, s, denc, NULL), 0);
    for (int t = 0; t < T; t++) cr_assert_eq(nr_gpt2_step(m, s, ids + t, 1, got + (size_t)t * V, 0), 0);
    e = s_err(got, want, nl, NULL);
    fprintf(stderr, "cuda decoder.logits (KV cache, step by step): max normalized error %.3g\n", e);
    cr_assert_leq(e, 1.0);
    cr_assert_eq(nr_gpt2_set_encoder(m, s, denc, NULL), 0);
    cr_assert_eq(nr_gpt2_step(m, s, ids, 4, got, 0), 0);
    cr_assert_leq(s_err(got, want + 3 * V, V, NULL), 1.0);
    cr_assert_eq(nr_gpt2_step(m, s, ids + 4, 2, got, 0), 0);
    cr_assert_leq(s_err(got, want + 5 * V, V, NULL), 1.0);
    int bad = V;
    cr_assert_eq(nr_gpt2_set_encoder(m, s, denc, NULL), 0);
    cr_assert_eq(nr_gpt2_step(m, s, &bad, 1, got, 0), NR_EINVAL);
    nr_gpt2_state_destroy(&s);
    s_dfree(g, denc);
    nr_gpt2_destroy(&m);
    nr_backend_destroy(&g);
    nr_checkpoint_close(&ck);
    free(enc);
    free(want);
    free(ids);
    free(got);
    s_fix_free(&f);
}

Test(cuda_fixture, greedy_and_beam_ids_match_cpu_and_reference) {
    s_fix_t f = s_fix();
    size_t ns, np;
    int gn, bn;
    float *enc = s_ref(&f, "encoder.hidden_states", &ns), *px = s_ref(&f, "encoder.pixel_values", &np);
    int *greedy = s_ref_ids(&f, "generate.greedy_ids", &gn), *beam = s_ref_ids(&f, "generate.beam4_ids", &bn);
    nr_gen_config_t g = nr_captioner_gen_defaults(f.gpu);
    int ids[16], len, cids[16], clen;
    char err[512];
    float *mine = malloc(ns * sizeof(float));
    cr_assert_eq(nr_captioner_encode(f.gpu, px, 1, mine, err, sizeof err), 0, "%s", err);
    const float *inputs[2] = {enc, mine};
    for (int src = 0; src < 2; src++)
        for (int beams = 1; beams <= 4; beams += 3) {
            g.num_beams = beams;
            cr_assert_eq(nr_captioner_generate(f.gpu, inputs[src], 1, &g, ids, &len, err, sizeof err), 0, "%s", err);
            cr_assert_eq(nr_captioner_generate(f.cpu, inputs[src], 1, &g, cids, &clen, err, sizeof err), 0, "%s", err);
            char what[96];
            snprintf(what, sizeof what, "%s, beams %d, cuda vs reference", src ? "own encoder" : "reference states",
                     beams);
            s_check_ids(ids, len, beams == 1 ? greedy : beam, beams == 1 ? gn : bn, what);
            snprintf(what, sizeof what, "%s, beams %d, cuda vs cpu", src ? "own encoder" : "reference states", beams);
            s_check_ids(ids, len, cids, clen, what);
        }
    free(enc);
    free(px);
    free(mine);
    free(greedy);
    free(beam);
    s_fix_free(&f);
}

Test(cuda_fixture, batched_generation_and_captions_match_cpu) {
    s_fix_t f = s_fix();
    size_t ns;
    float *enc = s_ref(&f, "batch.hidden_states", &ns);
    char err[512];
    int settings[][3] = {{1, 16, 1}, {4, 16, 1}, {3, 5, 1}, {2, 16, 0}, {3, 9, -1}};
    for (size_t k = 0; k < sizeof settings / sizeof *settings; k++) {
        nr_gen_config_t g = nr_captioner_gen_defaults(f.gpu);
        g.num_beams = settings[k][0];
        g.max_length = settings[k][1];
        g.early_stopping = settings[k][2];
        int *ids = malloc(3 * (size_t)g.max_length * sizeof(int)), lens[3];
        int *cids = malloc(3 * (size_t)g.max_length * sizeof(int)), clens[3];
        cr_assert_eq(nr_captioner_generate(f.gpu, enc, 3, &g, ids, lens, err, sizeof err), 0, "%s", err);
        cr_assert_eq(nr_captioner_generate(f.cpu, enc, 3, &g, cids, clens, err, sizeof err), 0, "%s", err);
        for (int i = 0; i < 3; i++) {
            char what[64];
            snprintf(what, sizeof what, "beams %d max %d es %d image %d", g.num_beams, g.max_length,
                     g.early_stopping, i);
            s_check_ids(ids + (size_t)i * g.max_length, lens[i], cids + (size_t)i * g.max_length, clens[i], what);
        }
        free(ids);
        free(cids);
    }
    char *cap[3] = {0}, *ccap[3] = {0};
    cr_assert_eq(nr_captioner_caption(f.gpu, enc, 3, NULL, cap, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_captioner_caption(f.cpu, enc, 3, NULL, ccap, NULL, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(cap[i], ccap[i]);
        free(cap[i]);
        free(ccap[i]);
    }
    free(enc);
    s_fix_free(&f);
}

/* Several threads on one captioner (as a worker with capacity > 1): the
 * backend serialises them onto its stream; results equal the serial ones. */
typedef struct {
    const nr_captioner_t *c;
    const float *px;
    float *out;
    int rc;
} s_job_t;

static void *s_encode_thread(void *p) {
    s_job_t *j = p;
    char err[256];
    for (int r = 0; r < 5 && j->rc == 0; r++) j->rc = nr_captioner_encode(j->c, j->px, 3, j->out, err, sizeof err);
    return NULL;
}

Test(cuda_fixture, concurrent_encodes) {
    s_fix_t f = s_fix();
    size_t nb, nbs;
    float *bpx = s_ref(&f, "batch.pixel_values", &nb), *bwant = s_ref(&f, "batch.hidden_states", &nbs);
    s_job_t jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (s_job_t){.c = f.gpu, .px = bpx, .out = malloc(nbs * sizeof(float)), .rc = 0};
        cr_assert_eq(pthread_create(&th[i], NULL, s_encode_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(jobs[i].rc, 0, "thread %d: %s", i, nr_strerror(jobs[i].rc));
        cr_assert_leq(s_err(jobs[i].out, bwant, nbs, NULL), 1.0, "thread %d", i);
        free(jobs[i].out);
    }
    free(bpx);
    free(bwant);
    s_fix_free(&f);
}
