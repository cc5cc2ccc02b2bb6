/* Tests for models/: the CPU kernels op by op against naive loops, the
 * safetensors reader on good and corrupt files, config checks, the NRS1
 * frame, and the tiny ViT-GPT2 checkpoint against the PyTorch reference
 * (tests/fixtures/README.md): encoder states and logits within
 * |a - b| <= 1e-4 + 1e-4 |b|, greedy and beam ids exact, batched == unbatched. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "models/backend.h"
#include "models/captioner.h"
#include "models/config.h"
#include "models/cpu/kernels.h"
#include "models/generate.h"
#include "models/gpt2.h"
#include "models/io/checkpoint.h"
#include "models/io/safetensors.h"
#include "models/states.h"
#include "models/tensor.h"
#include "models/vit.h"
#include "tests/harness.h"
#include "tests/model_ref.h"

#define TOL_ABS 1e-4
#define TOL_REL 1e-4

static void s_path(char *buf, size_t n, const char *rel) { snprintf(buf, n, "%s/%s", nr_test_src(), rel); }

static void s_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Max over elements of |a-b| / (TOL_ABS + TOL_REL |b|): <= 1 passes. */
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

/* fmax for the reference loops: Debian 12's aarch64 gcc 12.2 crashes
 * (internal compiler error in the vectorizer) on an fmax reduction of
 * floats into a double over a known count. The same answer, NaN ignored. */
static inline double s_fmax(double m, double v) { return v > m ? v : m; }

static uint64_t s_rng = 88172645463325252ull;
static float s_rand(void) {
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float)((s_rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *s_randv(size_t n, float scale) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = s_rand() * scale;
    return v;
}

/* ------------------------------------------------------------------ */
/* CPU kernels, through the backend interface, against naive loops     */
/* ------------------------------------------------------------------ */

static nr_backend_t *s_cpu(void) {
    char err[256];
    nr_backend_t *b = nr_backend_new("cpu", 2, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    return b;
}

Test(models_ops, supports_every_op) {
    nr_backend_t *b = s_cpu();
    for (int op = 0; op < NR_OP_COUNT; op++) cr_assert(b->ops->supports_op(b->ctx, (nr_op_t)op));
    cr_assert(b->host_memory);
    nr_backend_destroy(&b);
    nr_backend_destroy(&b);
    char err[256];
    cr_assert_null(nr_backend_new("tpu:0", 1, err, sizeof err));
}

/* One matmul case against a double-precision loop. */
static void s_matmul_case(nr_backend_t *b, int M, int N, int K, int ldx, int ldy) {
    float *x = s_randv((size_t)M * ldx, 1), *w = s_randv((size_t)N * K, 1);
    for (int layout = 0; layout < 2; layout++)
        for (int acc = 0; acc < 2; acc++) {
            float *y = s_randv((size_t)M * ldy, 1);
            float *ref = malloc((size_t)M * ldy * sizeof(float));
            memcpy(ref, y, (size_t)M * ldy * sizeof(float));
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double s = acc ? ref[(size_t)m * ldy + n] : 0;
                    for (int k = 0; k < K; k++)
                        s += (double)x[(size_t)m * ldx + k] *
                             (layout == NR_W_OUT_IN ? w[(size_t)n * K + k] : w[(size_t)k * N + n]);
                    ref[(size_t)m * ldy + n] = (float)s;
                }
            cr_assert_eq(b->ops->matmul(b->ctx, y, ldy, x, ldx, w, (nr_wlayout_t)layout, M, N, K, acc), 0);
            /* entries between rows (ldy > N) must be left alone: compared too */
            double e = s_err(y, ref, (size_t)M * ldy, NULL);
            cr_assert_leq(e, 1.0, "M %d N %d K %d layout %d acc %d: error %g", M, N, K, layout, acc, e);
            free(y);
            free(ref);
        }
    free(x);
    free(w);
}

Test(models_ops, matmul_layouts_strides_accumulate) {
    nr_backend_t *b = s_cpu();
    /* streaming kernel (M <= 8), single-threaded and split over the pool,
     * with tails that are not multiples of 64 and row groups; sgemm above 32 rows */
    s_matmul_case(b, 7, 33, 19, 21, 40);
    s_matmul_case(b, 1, 300, 250, 250, 300);
    s_matmul_case(b, 3, 577, 130, 131, 600);
    s_matmul_case(b, 8, 129, 700, 700, 129);
    s_matmul_case(b, 20, 70, 90, 95, 71);
    s_matmul_case(b, 13, 200, 400, 400, 200);
    s_matmul_case(b, 40, 70, 90, 95, 71);
    /* above 32 rows: the own AVX-512 GEMM when built for it (K blocks of
     * 512 with accumulation, row and column tails), else sgemm */
    s_matmul_case(b, 33, 50, 1100, 1100, 60);
    s_matmul_case(b, 64, 96, 512, 512, 96);
    nr_cpu_gemm_own = 0;
    s_matmul_case(b, 33, 50, 1100, 1100, 60);
    nr_cpu_gemm_own = 1;
    int saved = nr_cpu_skinny_max;
    nr_cpu_skinny_max = 0; /* the same small shapes through sgemm */
    s_matmul_case(b, 3, 577, 130, 131, 600);
    nr_cpu_skinny_max = saved;
    nr_backend_destroy(&b);
}

Test(models_ops, layernorm_bias_add) {
    nr_backend_t *b = s_cpu();
    const int M = 5, N = 77;
    float *x = s_randv((size_t)M * N, 3), *g = s_randv(N, 1), *bb = s_randv(N, 1);
    for (int i = 0; i < M * N; i++) x[i] += 2.0f; /* non-zero mean */
    float *y = malloc((size_t)M * N * sizeof(float)), *ref = malloc((size_t)M * N * sizeof(float));
    for (int m = 0; m < M; m++) {
        double mean = 0, var = 0;
        for (int i = 0; i < N; i++) mean += x[m * N + i];
        mean /= N;
        for (int i = 0; i < N; i++) var += (x[m * N + i] - mean) * (x[m * N + i] - mean);
        var /= N;
        for (int i = 0; i < N; i++) ref[m * N + i] = (float)((x[m * N + i] - mean) / sqrt(var + 1e-5) * g[i] + bb[i]);
    }
    cr_assert_eq(b->ops->layernorm(b->ctx, y, x, g, bb, M, N, 1e-5f), 0);
    cr_assert_leq(s_err(y, ref, (size_t)M * N, NULL), 0.1);
    /* in place */
    cr_assert_eq(b->ops->layernorm(b->ctx, x, x, g, bb, M, N, 1e-5f), 0);
    cr_assert_leq(s_err(x, ref, (size_t)M * N, NULL), 0.1);
    memcpy(ref, y, (size_t)M * N * sizeof(float));
    for (int m = 0; m < M; m++)
        for (int i = 0; i < N; i++) ref[m * N + i] += bb[i];
    cr_assert_eq(b->ops->add_bias(b->ctx, y, bb, M, N), 0);
    cr_assert_leq(s_err(y, ref, (size_t)M * N, NULL), 0.01);
    for (int i = 0; i < M * N; i++) ref[i] += x[i];
    cr_assert_eq(b->ops->add(b->ctx, y, x, (size_t)M * N), 0);
    cr_assert_leq(s_err(y, ref, (size_t)M * N, NULL), 0.01);
    free(x);
    free(g);
    free(bb);
    free(y);
    free(ref);
    nr_backend_destroy(&b);
}

Test(models_ops, gelu_both_forms_and_exp) {
    nr_backend_t *b = s_cpu();
    const int n = 20001;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) x[i] = -12.0f + 24.0f * (float)i / (n - 1);
    for (int form = 0; form < 2; form++) {
        for (int i = 0; i < n; i++) {
            double v = x[i];
            ref[i] = form ? (float)(0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))))
                          : (float)(0.5 * v * (1 + erf(v / sqrt(2.0))));
        }
        memcpy(y, x, n * sizeof(float));
        cr_assert_eq(b->ops->gelu(b->ctx, y, n, form), 0);
        /* absolute error below 1e-6 (|gelu| up to 12) */
        double m = 0;
        for (int i = 0; i < n; i++) m = s_fmax(m, fabs((double)y[i] - ref[i]));
        cr_assert_lt(m, 2e-6, "form %d max abs error %g", form, m);
    }
    double m = 0;
    for (float v = -80.0f; v < 80.0f; v += 0.01f) m = s_fmax(m, fabs(nr_cpu_expf(v) / exp(v) - 1));
    cr_assert_lt(m, 5e-7, "exp relative error %g", m);
    free(x);
    free(y);
    free(ref);
    nr_backend_destroy(&b);
}

Test(models_ops, softmax) {
    nr_backend_t *b = s_cpu();
    const int R = 4, C = 1000;
    float *x = s_randv((size_t)R * C, 20), *ref = malloc((size_t)R * C * sizeof(float));
    for (int r = 0; r < R; r++) {
        double mx = -1e30, s = 0;
        for (int i = 0; i < C; i++) mx = s_fmax(mx, x[r * C + i]);
        for (int i = 0; i < C; i++) s += exp(x[r * C + i] - mx);
        for (int i = 0; i < C; i++) ref[r * C + i] = (float)(exp(x[r * C + i] - mx) / s);
    }
    cr_assert_eq(b->ops->softmax(b->ctx, x, R, C), 0);
    cr_assert_leq(s_err(x, ref, (size_t)R * C, NULL), 0.05);
    free(x);
    free(ref);
    nr_backend_destroy(&b);
}

/* Naive attention with the same argument conventions. */
static void s_attn_ref(const nr_attn_args_t *a) {
    double *sc = malloc((size_t)a->n_kv * sizeof(double));
    for (int b = 0; b < a->batch; b++) {
        int kb = a->kv_index ? a->kv_index[b] : b;
        for (int h = 0; h < a->n_head; h++)
            for (int i = 0; i < a->n_q; i++) {
                const float *q = a->q + b * a->q_bstride + i * a->q_rstride + h * a->head_dim;
                int lim = a->causal ? a->q_pos0 + i + 1 : a->n_kv;
                if (lim > a->n_kv) lim = a->n_kv;
                double mx = -1e300, s = 0;
                for (int j = 0; j < lim; j++) {
                    const float *k = a->k + kb * a->kv_bstride + j * a->kv_rstride + h * a->head_dim;
                    double d = 0;
                    for (int e = 0; e < a->head_dim; e++) d += (double)q[e] * k[e];
                    sc[j] = d * a->scale;
                    mx = s_fmax(mx, sc[j]);
                }
                for (int j = 0; j < lim; j++) s += (sc[j] = exp(sc[j] - mx));
                float *o = a->out + b * a->o_bstride + i * a->o_rstride + h * a->head_dim;
                for (int e = 0; e < a->head_dim; e++) {
                    double acc = 0;
                    for (int j = 0; j < lim; j++)
                        acc += sc[j] / s * a->v[kb * a->kv_bstride + j * a->kv_rstride + h * a->head_dim + e];
                    o[e] = (float)acc;
                }
            }
    }
    free(sc);
}

/* idx: batch rows -> K/V rows (0 or 1), or NULL: one K/V per row. */
static void s_attn_case_hd(int batch, int n_q, int n_kv, int causal, int q_pos0, const int *idx, int hd) {
    nr_backend_t *b = s_cpu();
    const int H = 3, D = H * hd;
    int nkvb = idx ? 2 : batch;
    float *q = s_randv((size_t)batch * n_q * 3 * D, 1);
    float *kv = s_randv((size_t)nkvb * n_kv * 2 * D, 1);
    float *out = calloc((size_t)batch * n_q * D, sizeof(float)), *ref = calloc((size_t)batch * n_q * D, sizeof(float));
    nr_attn_args_t a = {.batch = batch, .n_head = H, .head_dim = hd, .n_q = n_q, .n_kv = n_kv, .causal = causal,
                        .q_pos0 = q_pos0, .scale = 0.25f, .q = q, .k = kv, .v = kv + D, .out = out,
                        .q_bstride = (size_t)n_q * 3 * D, .q_rstride = 3 * D, .kv_bstride = (size_t)n_kv * 2 * D,
                        .kv_rstride = 2 * D, .o_bstride = (size_t)n_q * D, .o_rstride = D,
                        .kv_index = idx};
    cr_assert_eq(b->ops->attention(b->ctx, &a), 0);
    a.out = ref;
    s_attn_ref(&a);
    cr_assert_leq(s_err(out, ref, (size_t)batch * n_q * D, NULL), 0.1, "batch %d n_q %d n_kv %d causal %d head_dim %d",
                  batch, n_q, n_kv, causal, hd);
    free(q);
    free(kv);
    free(out);
    free(ref);
    nr_backend_destroy(&b);
}

static void s_attn_case(int batch, int n_q, int n_kv, int causal, int q_pos0, int use_index) {
    static const int idx[4] = {1, 0, 1, 0};
    s_attn_case_hd(batch, n_q, n_kv, causal, q_pos0, use_index ? idx : NULL, 16);
}

Test(models_ops, attention_noncausal_gemm_path) { s_attn_case(2, 50, 50, 0, 0, 0); }
/* head sizes off the 16-float vectors (SigLIP's 72) and above 64 (Gemma's
 * 256: V's columns in blocks), with a query-row tail; keys past a block of
 * 64 with a tail (150 = 2 x 64 + 22) */
Test(models_ops, attention_noncausal_any_head_size) {
    const int hds[] = {4, 12, 72, 200, 256};
    for (size_t i = 0; i < sizeof hds / sizeof *hds; i++) {
        s_attn_case_hd(2, 19, 23, 0, 0, NULL, hds[i]);
        s_attn_case_hd(1, 17, 150, 0, 0, NULL, hds[i]);
    }
}
Test(models_ops, attention_cross_with_kv_index) { s_attn_case(4, 1, 37, 0, 0, 1); }
Test(models_ops, attention_causal_prefill) { s_attn_case(2, 6, 6, 1, 0, 0); }
Test(models_ops, attention_causal_cached_step) { s_attn_case(3, 1, 9, 1, 8, 0); }
Test(models_ops, attention_causal_chunk_after_cache) { s_attn_case(2, 20, 25, 1, 5, 0); }
/* Decode steps: beams of one image share its K/V (runs of 1, 5 and 2
 * rows; 4 rows at a time), the AVX-512 head size 64 and two that are not
 * multiples of 16; enough keys to run on the pool. */
Test(models_ops, attention_beams_share_kv) {
    static const int idx[8] = {0, 1, 1, 1, 1, 1, 0, 0};
    s_attn_case_hd(8, 1, 577, 0, 0, idx, 64);
    s_attn_case_hd(8, 2, 101, 0, 0, idx, 20);
    s_attn_case_hd(3, 1, 40, 1, 39, NULL, 72);
    s_attn_case_hd(2, 6, 300, 1, 294, NULL, 64);
}

Test(models_ops, embed_and_bounds) {
    nr_backend_t *b = s_cpu();
    const int V = 10, P = 8, D = 5;
    float *wte = s_randv(V * D, 1), *wpe = s_randv(P * D, 1), out[3 * 5];
    int ids[3] = {9, 0, 4}, pos[3] = {0, 7, 3};
    cr_assert_eq(b->ops->embed(b->ctx, out, wte, wpe, ids, pos, 3, D, V, P), 0);
    for (int i = 0; i < 3; i++)
        for (int d = 0; d < D; d++) cr_assert_float_eq(out[i * D + d], wte[ids[i] * D + d] + wpe[pos[i] * D + d], 1e-7);
    ids[1] = 10;
    cr_assert_eq(b->ops->embed(b->ctx, out, wte, wpe, ids, pos, 3, D, V, P), NR_EINVAL);
    ids[1] = 0;
    pos[0] = 8;
    cr_assert_eq(b->ops->embed(b->ctx, out, wte, wpe, ids, pos, 3, D, V, P), NR_EINVAL);
    free(wte);
    free(wpe);
    nr_backend_destroy(&b);
}

Test(models_ops, patch_embed_vs_naive_conv) {
    nr_backend_t *b = s_cpu();
    const int B = 2, C = 3, Hh = 32, W = 48, P = 16, D = 6, np = (Hh / P) * (W / P);
    float *px = s_randv((size_t)B * C * Hh * W, 1), *w = s_randv((size_t)D * C * P * P, 0.1f), *bias = s_randv(D, 1);
    float *cls = s_randv(D, 1), *pos = s_randv((size_t)(np + 1) * D, 1);
    float *out = malloc((size_t)B * (np + 1) * D * sizeof(float)), *ref = malloc((size_t)B * (np + 1) * D * sizeof(float));
    for (int bb = 0; bb < B; bb++) {
        for (int d = 0; d < D; d++) ref[(size_t)bb * (np + 1) * D + d] = cls[d] + pos[d];
        for (int py = 0; py < Hh / P; py++)
            for (int pxx = 0; pxx < W / P; pxx++)
                for (int d = 0; d < D; d++) {
                    double s = bias[d];
                    for (int c = 0; c < C; c++)
                        for (int ky = 0; ky < P; ky++)
                            for (int kx = 0; kx < P; kx++)
                                s += (double)w[((d * C + c) * P + ky) * P + kx] *
                                     px[(((size_t)bb * C + c) * Hh + py * P + ky) * W + pxx * P + kx];
                    int row = 1 + py * (W / P) + pxx;
                    ref[((size_t)bb * (np + 1) + row) * D + d] = (float)(s + pos[row * D + d]);
                }
    }
    nr_patch_args_t a = {.batch = B, .channels = C, .height = Hh, .width = W, .patch = P, .dim = D, .pixels = px,
                         .w = w, .b = bias, .cls = cls, .pos = pos, .out = out};
    cr_assert_eq(b->ops->patch_embed(b->ctx, &a), 0);
    cr_assert_leq(s_err(out, ref, (size_t)B * (np + 1) * D, NULL), 0.1);
    free(px);
    free(w);
    free(bias);
    free(cls);
    free(pos);
    free(out);
    free(ref);
    nr_backend_destroy(&b);
}

Test(models_ops, f16_bf16_conversions) {
    cr_assert_eq(nr_f16_to_f32(0x3c00), 1.0f);
    cr_assert_eq(nr_f16_to_f32(0xc000), -2.0f);
    cr_assert_eq(nr_f16_to_f32(0x0001), ldexpf(1.0f, -24));
    cr_assert(isinf(nr_f16_to_f32(0x7c00)));
    cr_assert_eq(nr_bf16_to_f32(0x3f80), 1.0f);
    for (uint32_t h = 0; h < 0x7c00; h++) cr_assert_eq(nr_f32_to_f16(nr_f16_to_f32((uint16_t)h)), h, "f16 %x", h);
    cr_assert_eq(nr_f32_to_bf16(1.0f), 0x3f80);
}

/* ------------------------------------------------------------------ */
/* safetensors                                                         */
/* ------------------------------------------------------------------ */

static char s_tmp[256];

static void s_mktmp(void) {
    snprintf(s_tmp, sizeof s_tmp, "/tmp/nr_test_models_XXXXXX");
    cr_assert_not_null(mkdtemp(s_tmp));
}

/* Writes header JSON + data as a safetensors file and opens it. */
static int s_open_raw(const char *json, const void *data, size_t dlen, uint64_t hlen_override, char *err, size_t errlen) {
    char path[512];
    snprintf(path, sizeof path, "%s/raw.safetensors", s_tmp);
    size_t jl = strlen(json);
    unsigned char *buf = malloc(8 + jl + dlen);
    uint64_t hl = hlen_override ? hlen_override : jl;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, json, jl);
    if (dlen) memcpy(buf + 8 + jl, data, dlen);
    s_write(path, buf, 8 + jl + dlen);
    free(buf);
    nr_safetensors_t *st = NULL;
    int rc = nr_safetensors_open(path, &st, err, errlen);
    cr_assert((rc == 0) == (st != NULL));
    nr_safetensors_close(&st);
    nr_safetensors_close(&st);
    return rc;
}

Test(models_safetensors, good_small_file_and_write_roundtrip) {
    s_mktmp();
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[2] = {0x3c00, 0x4000}, bf[2] = {0x3f80, 0xc000};
    int64_t ids[2] = {7, -1};
    nr_named_tensor_t t[4] = {{.name = "a", .dtype = NR_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = 24},
                           {.name = "h", .dtype = NR_DTYPE_F16, .ndim = 1, .shape = {2}, .data = h, .nbytes = 4},
                           {.name = "b", .dtype = NR_DTYPE_BF16, .ndim = 1, .shape = {2}, .data = bf, .nbytes = 4},
                           {.name = "i", .dtype = NR_DTYPE_I64, .ndim = 1, .shape = {2}, .data = ids, .nbytes = 16}};
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/ok.safetensors", s_tmp);
    cr_assert_eq(nr_safetensors_write(path, t, 4, err, sizeof err), 0, "%s", err);
    nr_safetensors_t *st = NULL;
    cr_assert_eq(nr_safetensors_open(path, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_safetensors_count(st), 4);
    float *f = NULL;
    int64_t sh[2] = {2, 3};
    cr_assert_eq(nr_safetensors_load_f32(st, "a", 2, sh, &f, err, sizeof err), 0);
    cr_assert_eq(f[5], 6.0f);
    free(f);
    cr_assert_eq(nr_safetensors_load_f32(st, "h", -1, NULL, &f, err, sizeof err), 0);
    cr_assert_eq(f[1], 2.0f);
    free(f);
    cr_assert_eq(nr_safetensors_load_f32(st, "b", -1, NULL, &f, err, sizeof err), 0);
    cr_assert_eq(f[1], -2.0f);
    free(f);
    int64_t bad[2] = {3, 2};
    cr_assert_eq(nr_safetensors_load_f32(st, "a", 2, bad, &f, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "ok.safetensors") && strstr(err, "tensor a"), "%s", err);
    cr_assert_eq(nr_safetensors_load_f32(st, "zz", -1, NULL, &f, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "missing tensor zz"), "%s", err);
    cr_assert_eq(nr_safetensors_load_f32(st, "i", -1, NULL, &f, err, sizeof err), NR_EMODEL);
    nr_safetensors_close(&st);
}

Test(models_safetensors, rejects_bad_headers) {
    s_mktmp();
    char err[512];
    float d[4] = {0};
    /* shorter than the length field */
    char path[512];
    snprintf(path, sizeof path, "%s/short.safetensors", s_tmp);
    s_write(path, "abc", 3);
    nr_safetensors_t *st = NULL;
    cr_assert_eq(nr_safetensors_open(path, &st, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "short.safetensors"), "%s", err);
    /* empty file, missing file */
    s_write(path, "", 0);
    cr_assert_eq(nr_safetensors_open(path, &st, err, sizeof err), NR_EMODEL);
    snprintf(path, sizeof path, "%s/none.safetensors", s_tmp);
    cr_assert_neq(nr_safetensors_open(path, &st, err, sizeof err), 0);
    /* header length beyond the file, and absurd */
    cr_assert_eq(s_open_raw("{}", NULL, 0, 1000, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "header length"), "%s", err);
    cr_assert_eq(s_open_raw("{}", NULL, 0, UINT64_MAX, err, sizeof err), NR_EMODEL);
    cr_assert_eq(s_open_raw("{}", NULL, 0, 0, err, sizeof err), 0, "%s", err);
    /* bad JSON */
    cr_assert_eq(s_open_raw("{\"a\": {\"dtype\": \"F32\", ", NULL, 0, 0, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "JSON"), "%s", err);
    cr_assert_eq(s_open_raw("[1, 2]   ", NULL, 0, 0, err, sizeof err), NR_EMODEL);
    cr_assert_eq(s_open_raw("{} x", NULL, 0, 0, err, sizeof err), NR_EMODEL);
    /* unknown dtype, shape mismatch, bad offsets */
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F99\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16, 0, err,
                            sizeof err),
                 NR_EMODEL);
    cr_assert(strstr(err, "tensor a") && strstr(err, "dtype"), "%s", err);
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", d, 16, 0, err,
                            sizeof err),
                 NR_EMODEL);
    cr_assert(strstr(err, "tensor a") && strstr(err, "shape"), "%s", err);
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16, 0, err,
                            sizeof err),
                 NR_EMODEL);
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[4,20]}}", d, 16, 0, err,
                            sizeof err),
                 NR_EMODEL);
    cr_assert(strstr(err, "outside"), "%s", err);
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", d, 16, 0, err,
                            sizeof err),
                 NR_EMODEL);
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", d, 16, 0, err,
                            sizeof err),
                 NR_EMODEL);
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,4],\"data_offsets\":[0,16]}}", d, 16, 0,
                            err, sizeof err),
                 NR_EMODEL);
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}", d, 16, 0, err, sizeof err), NR_EMODEL);
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,1e30]}}", d, 16, 0, err,
                            sizeof err),
                 NR_EMODEL);
    /* overlapping tensors */
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                            d, 16, 0, err, sizeof err),
                 NR_EMODEL);
    cr_assert(strstr(err, "overlap"), "%s", err);
    /* duplicate names */
    cr_assert_eq(s_open_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                            d, 16, 0, err, sizeof err),
                 NR_EMODEL);
    /* 0-dim, BOOL buffers and metadata are fine */
    cr_assert_eq(s_open_raw("{\"__metadata__\":{\"format\":\"pt\"},\"m\":{\"dtype\":\"F32\",\"shape\":[],"
                            "\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"BOOL\",\"shape\":[2,2],\"data_offsets\":[4,8]}}",
                            d, 8, 0, err, sizeof err),
                 0, "%s", err);
}

/* Copies the fixture checkpoint into s_tmp/ckpt, returns the safetensors
 * bytes; the caller may rewrite model.safetensors or config.json. */
static unsigned char *s_copy_ckpt(size_t *size, char *dir, size_t dn) {
    s_mktmp();
    snprintf(dir, dn, "%s/ckpt", s_tmp);
    cr_assert_eq(mkdir(dir, 0700), 0);
    const char *files[] = {"config.json", "generation_config.json", "preprocessor_config.json", "vocab.json",
                           "merges.txt"};
    char src[1024], dst[1024];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        size_t n;
        snprintf(src, sizeof src, "%s/tests/fixtures/vit-gpt2-tiny/%s", nr_test_src(), files[i]);
        unsigned char *b = (unsigned char *)nr_harness_read_file(src, &n);
        cr_assert_not_null(b, "cannot read %s", src);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        s_write(dst, b, n);
        free(b);
    }
    snprintf(src, sizeof src, "%s/tests/fixtures/vit-gpt2-tiny/model.safetensors", nr_test_src());
    unsigned char *b = (unsigned char *)nr_harness_read_file(src, size);
    cr_assert_not_null(b, "cannot read %s", src);
    return b;
}

static int s_load_dir(const char *dir, char *err, size_t errlen) {
    nr_captioner_t *c = NULL;
    int rc = nr_captioner_load(dir, NULL, &c, err, errlen);
    cr_assert((rc == 0) == (c != NULL));
    nr_captioner_destroy(&c);
    return rc;
}

static void s_put_model(const char *dir, const unsigned char *b, size_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    s_write(p, b, n);
}

/* Finds `needle` in the header of a safetensors image. */
static unsigned char *s_find_hdr(unsigned char *b, size_t n, const char *needle) {
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
    size_t nl = strlen(needle);
    for (size_t i = 8; i + nl <= 8 + hl && i + nl <= n; i++)
        if (memcmp(b + i, needle, nl) == 0) return b + i;
    return NULL;
}

Test(models_safetensors, corrupt_checkpoints_are_clear_errors) {
    size_t n;
    char dir[512], err[1024];
    unsigned char *good = s_copy_ckpt(&n, dir, sizeof dir);
    unsigned char *b = malloc(n);
    s_put_model(dir, good, n);
    cr_assert_eq(s_load_dir(dir, err, sizeof err), 0, "%s", err);
    /* truncated at several points */
    size_t cuts[] = {4, 8, 100, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        s_put_model(dir, good, cuts[i]);
        cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL, "cut %zu", cuts[i]);
        cr_assert(strstr(err, "model.safetensors"), "%s", err);
    }
    /* bad header length */
    memcpy(b, good, n);
    b[6] = 0x7f;
    s_put_model(dir, b, n);
    cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "header length"), "%s", err);
    /* bad JSON */
    memcpy(b, good, n);
    b[8] = 'x';
    s_put_model(dir, b, n);
    cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "JSON"), "%s", err);
    /* dtype/shape mismatch: one F32 tensor relabelled F16 (same header length) */
    memcpy(b, good, n);
    unsigned char *p = s_find_hdr(b, n, "\"encoder.layernorm.weight\":{\"dtype\":\"F32\"");
    if (!p) p = s_find_hdr(b, n, "\"encoder.layernorm.weight\": {\"dtype\": \"F32\"");
    cr_assert_not_null(p, "fixture header layout changed");
    unsigned char *f = (unsigned char *)strstr((char *)p, "F32");
    f[1] = '1';
    f[2] = '6';
    s_put_model(dir, b, n);
    cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "encoder.layernorm.weight"), "%s", err);
    /* missing tensor: renamed in place */
    memcpy(b, good, n);
    p = s_find_hdr(b, n, "\"encoder.layernorm.weight\"");
    cr_assert_not_null(p);
    p[18] = 'X';
    s_put_model(dir, b, n);
    cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "missing tensor encoder.layernorm.weight"), "%s", err);
    /* out-of-range offsets: the first data_offsets end pushed past the file */
    memcpy(b, good, n);
    p = s_find_hdr(b, n, "data_offsets");
    cr_assert_not_null(p);
    unsigned char *q = (unsigned char *)strchr((char *)p, ',');
    cr_assert_not_null(q);
    q++;
    while (*q == ' ') q++;
    unsigned char *e = q;
    while (*e >= '0' && *e <= '9') e++;
    /* replace the end offset with 9s of the same width plus a leading 9 via width: all nines */
    for (unsigned char *k = q; k < e; k++) *k = '9';
    s_put_model(dir, b, n);
    cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL);
    /* pytorch_model.bin only, and damaged: the torch reader's error */
    char mp[1024];
    snprintf(mp, sizeof mp, "%s/model.safetensors", dir);
    unlink(mp);
    snprintf(mp, sizeof mp, "%s/pytorch_model.bin", dir);
    s_write(mp, "PK", 2);
    cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "pytorch_model.bin"), "%s", err);
    free(b);
    free(good);
}

Test(models_config, shape_mismatch_and_bad_config_rejected) {
    size_t n;
    char dir[512], err[1024], cp[1024];
    unsigned char *good = s_copy_ckpt(&n, dir, sizeof dir);
    s_put_model(dir, good, n);
    snprintf(cp, sizeof cp, "%s/config.json", dir);
    size_t cn;
    unsigned char *cfg = (unsigned char *)nr_harness_read_file(cp, &cn);
    cr_assert_not_null(cfg);
    cfg = realloc(cfg, cn + 1);
    cfg[cn] = 0;
    /* intermediate_size 64 -> 48: every MLP weight shape is wrong */
    char *k = strstr((char *)cfg, "\"intermediate_size\": 64");
    cr_assert_not_null(k, "fixture config layout changed");
    char *mod = strdup((char *)cfg);
    memcpy(mod + (k - (char *)cfg), "\"intermediate_size\": 48", 23);
    s_write(cp, mod, strlen(mod));
    cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "intermediate.dense") && strstr(err, "config.json"), "%s", err);
    /* heads that do not divide the hidden size */
    strcpy(mod, (char *)cfg);
    k = strstr(mod, "\"n_head\": 4");
    cr_assert_not_null(k);
    k[10] = '3';
    s_write(cp, mod, strlen(mod));
    cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "n_head"), "%s", err);
    /* not JSON */
    s_write(cp, "{nope", 5);
    cr_assert_eq(s_load_dir(dir, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "config.json"), "%s", err);
    free(mod);
    free(cfg);
    free(good);
}

Test(models_config, reads_fixture_config) {
    char dir[1024], err[512];
    s_path(dir, sizeof dir, "tests/fixtures/vit-gpt2-tiny");
    nr_model_config_t c;
    cr_assert_eq(nr_model_config_load(dir, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.vit.hidden_size, 32);
    cr_assert_eq(c.vit.num_hidden_layers, 2);
    cr_assert_eq(c.vit.intermediate_size, 64);
    cr_assert_eq(c.vit.hidden_act, NR_ACT_GELU);
    cr_assert_float_eq(c.vit.layer_norm_eps, 1e-12f, 1e-20);
    cr_assert_eq(c.gpt2.n_inner, 128);
    cr_assert_eq(c.gpt2.vocab_size, 50257);
    cr_assert_eq(c.gpt2.activation_function, NR_ACT_GELU_TANH);
    cr_assert_eq(c.gen.max_length, 16);
    cr_assert_eq(c.gen.num_beams, 4);
    cr_assert_eq(c.gen.early_stopping, 1);
    cr_assert_eq(c.gen.decoder_start_token_id, 50256);
    cr_assert_eq(c.gen.eos_token_id, 50256);
}

/* ------------------------------------------------------------------ */
/* States frame                                                        */
/* ------------------------------------------------------------------ */

Test(models_states, roundtrip_and_rejections) {
    float d[6] = {1, -2, 3.5f, 0, 1e-3f, 65504};
    int64_t sh[2] = {2, 3};
    unsigned char *f = NULL;
    size_t n = 0;
    char err[256];
    for (int dt = 0; dt < 3; dt++) {
        cr_assert_eq(nr_states_encode(d, 2, sh, (nr_dtype_t)dt, &f, &n), 0);
        cr_assert_eq(memcmp(f, "NRS1", 4), 0);
        nr_tensor_t *t = NULL;
        cr_assert_eq(nr_states_decode(f, n, &t, err, sizeof err), 0, "%s", err);
        cr_assert_eq(t->ndim, 2);
        cr_assert_eq(t->shape[1], 3);
        for (int i = 0; i < 6; i++)
            cr_assert_float_eq(((float *)t->data)[i], d[i], fabsf(d[i]) * (dt ? 1e-2f : 0) + 1e-6f);
        nr_tensor_destroy(&t);
        nr_tensor_destroy(&t);
        if (dt == 0) {
            cr_assert_eq(nr_states_decode(f, n - 1, &t, err, sizeof err), NR_EPROTO);
            cr_assert_eq(nr_states_decode(f, 11, &t, err, sizeof err), NR_EPROTO);
            f[0] = 'X';
            cr_assert_eq(nr_states_decode(f, n, &t, err, sizeof err), NR_EPROTO);
            f[0] = 'N';
            f[8] = 9;
            cr_assert_eq(nr_states_decode(f, n, &t, err, sizeof err), NR_EPROTO);
            f[8] = 2;
            f[4] = 3; /* I64: not a states dtype */
            cr_assert_eq(nr_states_decode(f, n, &t, err, sizeof err), NR_EPROTO);
            f[4] = 0;
            f[12 + 7] = 0x80; /* huge dimension */
            cr_assert_eq(nr_states_decode(f, n, &t, err, sizeof err), NR_EPROTO);
            cr_assert_null(t);
        }
        free(f);
    }
    cr_assert_eq(nr_states_decode(NULL, 0, &(nr_tensor_t *){NULL}, err, sizeof err), NR_EPROTO);
}


/* Version 2 names the family; version 1 still decodes, as vit-gpt2. */
Test(models_states, family_frames) {
    float d[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
    int64_t sh[2] = {2, 3};
    unsigned char *f = NULL;
    size_t n = 0;
    char err[256], fam[NR_STATES_FAMILY_MAX + 1];
    nr_tensor_t *t = NULL;
    cr_assert_eq(nr_states_encode_family("git", d, 2, sh, NR_DTYPE_F32, &f, &n), 0);
    cr_assert_eq(memcmp(f, "NRS2", 4), 0);
    cr_assert_eq(n, nr_states_frame_size(NR_DTYPE_F32, 2, sh) + 4 + 3);
    cr_assert_eq(nr_states_decode_family(f, n, &t, fam, sizeof fam, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(fam, "git");
    cr_assert_eq(t->shape[0], 2);
    cr_assert_eq(memcmp(t->data, d, sizeof d), 0);
    nr_tensor_destroy(&t);
    cr_assert_eq(nr_states_decode_family(f, n - 1, &t, fam, sizeof fam, err, sizeof err), NR_EPROTO);
    for (size_t cut = 0; cut < 24; cut++)
        cr_assert_eq(nr_states_decode(f, cut, &t, err, sizeof err), NR_EPROTO, "cut %zu", cut);
    f[4] = 200; /* family length over the limit */
    cr_assert_eq(nr_states_decode(f, n, &t, err, sizeof err), NR_EPROTO);
    f[4] = 3;
    f[9] = 'I'; /* not a family name character */
    cr_assert_eq(nr_states_decode(f, n, &t, err, sizeof err), NR_EPROTO);
    cr_assert_null(t);
    free(f);
    cr_assert_eq(nr_states_encode_family("", d, 2, sh, NR_DTYPE_F32, &f, &n), NR_EINVAL);
    cr_assert_eq(nr_states_encode_family("a b", d, 2, sh, NR_DTYPE_F32, &f, &n), NR_EINVAL);
    cr_assert_eq(nr_states_encode_family(NULL, d, 2, sh, NR_DTYPE_F32, &f, &n), NR_EINVAL);
    cr_assert_eq(nr_states_encode(d, 2, sh, NR_DTYPE_BF16, &f, &n), 0);
    cr_assert_eq(nr_states_decode_family(f, n, &t, fam, sizeof fam, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(fam, "vit-gpt2");
    nr_tensor_destroy(&t);
    free(f);
}
/* ------------------------------------------------------------------ */
/* The tiny checkpoint against the PyTorch reference                   */
/* ------------------------------------------------------------------ */

typedef struct {
    nr_safetensors_t *ref;
    nr_captioner_t *cap;
} s_fix_t;

static s_fix_t s_fix(void) {
    s_fix_t f = {0};
    char path[1024], err[1024];
    s_path(path, sizeof path, "tests/fixtures/vit-gpt2-tiny-reference.safetensors");
    cr_assert_eq(nr_safetensors_open(path, &f.ref, err, sizeof err), 0, "%s", err);
    s_path(path, sizeof path, "tests/fixtures/vit-gpt2-tiny");
    cr_assert_eq(nr_captioner_load(path, NULL, &f.cap, err, sizeof err), 0, "%s", err);
    return f;
}
static void s_fix_free(s_fix_t *f) {
    nr_captioner_destroy(&f->cap);
    nr_safetensors_close(&f->ref);
}

static float *s_ref(s_fix_t *f, const char *name, size_t *count) { return nr_test_ref(f->ref, name, count); }

static int *s_ref_ids(s_fix_t *f, const char *name, int *count) { return nr_test_ref_ids(f->ref, name, count); }

Test(models_fixture, encoder_hidden_states) {
    s_fix_t f = s_fix();
    size_t np, ns;
    float *px = s_ref(&f, "encoder.pixel_values", &np), *want = s_ref(&f, "encoder.hidden_states", &ns);
    float *got = malloc(ns * sizeof(float));
    char err[512];
    cr_assert_eq(nr_captioner_encode(f.cap, px, 1, got, err, sizeof err), 0, "%s", err);
    size_t w = 0;
    double e = s_err(got, want, ns, &w);
    fprintf(stderr, "encoder.hidden_states: max normalized error %.3g (tolerance 1e-4 + 1e-4|ref|)\n", e);
    cr_assert_leq(e, 1.0, "element %zu: %g vs %g", w, got[w], want[w]);
    free(px);
    free(want);
    free(got);
    s_fix_free(&f);
}

Test(models_fixture, encoder_batch_equals_unbatched) {
    s_fix_t f = s_fix();
    size_t np, ns;
    float *px = s_ref(&f, "batch.pixel_values", &np), *want = s_ref(&f, "batch.hidden_states", &ns);
    float *got = malloc(ns * sizeof(float)), *one = malloc(ns / 3 * sizeof(float));
    char err[512];
    cr_assert_eq(nr_captioner_encode(f.cap, px, 3, got, err, sizeof err), 0, "%s", err);
    double e = s_err(got, want, ns, NULL);
    fprintf(stderr, "batch.hidden_states: max normalized error %.3g\n", e);
    cr_assert_leq(e, 1.0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(nr_captioner_encode(f.cap, px + i * (np / 3), 1, one, err, sizeof err), 0);
        double d = 0;
        for (size_t k = 0; k < ns / 3; k++) d = s_fmax(d, fabs(one[k] - got[i * (ns / 3) + k]));
        cr_assert_leq(d, 1e-5, "image %d: batched vs unbatched differ by %g", i, d);
    }
    free(px);
    free(want);
    free(got);
    free(one);
    s_fix_free(&f);
}

/* The decoder on its own, loaded from the fixture file. */
static nr_gpt2_t *s_gpt2(nr_backend_t **be, nr_checkpoint_t **ck) {
    char dir[1024], err[1024];
    s_path(dir, sizeof dir, "tests/fixtures/vit-gpt2-tiny");
    nr_model_config_t cfg;
    cr_assert_eq(nr_model_config_load(dir, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_checkpoint_open_dir(dir, ck, err, sizeof err), 0, "%s", err);
    *be = s_cpu();
    nr_gpt2_t *m = NULL;
    cr_assert_eq(nr_gpt2_load(&cfg.gpt2, *ck, "decoder.", *be, &m, err, sizeof err), 0, "%s", err);
    return m;
}

Test(models_fixture, decoder_logits_full_and_cached) {
    s_fix_t f = s_fix();
    nr_backend_t *be;
    nr_checkpoint_t *ck;
    nr_gpt2_t *m = s_gpt2(&be, &ck);
    size_t ns, nl;
    int T;
    float *enc = s_ref(&f, "encoder.hidden_states", &ns), *want = s_ref(&f, "decoder.logits", &nl);
    int *ids = s_ref_ids(&f, "decoder.input_ids", &T);
    const int V = 50257;
    cr_assert_eq(nl, (size_t)T * V);
    float *got = malloc(nl * sizeof(float));
    /* all T tokens at once */
    nr_gpt2_state_t *s = nr_gpt2_state_new(m, 1, 16, 1, 197);
    cr_assert_not_null(s);
    cr_assert_eq(nr_gpt2_set_encoder(m, s, enc, NULL), 0);
    cr_assert_eq(nr_gpt2_step(m, s, ids, T, got, 1), 0);
    double e = s_err(got, want, nl, NULL);
    fprintf(stderr, "decoder.logits (one pass): max normalized error %.3g\n", e);
    cr_assert_leq(e, 1.0);
    /* token by token through the KV cache */
    cr_assert_eq(nr_gpt2_set_encoder(m, s, enc, NULL), 0);
    for (int t = 0; t < T; t++) cr_assert_eq(nr_gpt2_step(m, s, ids + t, 1, got + (size_t)t * V, 0), 0);
    e = s_err(got, want, nl, NULL);
    fprintf(stderr, "decoder.logits (KV cache, step by step): max normalized error %.3g\n", e);
    cr_assert_leq(e, 1.0);
    /* prefix of 4, then 2 at once, last-token logits only */
    cr_assert_eq(nr_gpt2_set_encoder(m, s, enc, NULL), 0);
    cr_assert_eq(nr_gpt2_step(m, s, ids, 4, got, 0), 0);
    cr_assert_leq(s_err(got, want + 3 * V, V, NULL), 1.0);
    cr_assert_eq(nr_gpt2_step(m, s, ids + 4, 2, got, 0), 0);
    cr_assert_leq(s_err(got, want + 5 * V, V, NULL), 1.0);
    /* bad ids and a full cache are errors, not crashes */
    int bad = V;
    cr_assert_eq(nr_gpt2_set_encoder(m, s, enc, NULL), 0);
    cr_assert_eq(nr_gpt2_step(m, s, &bad, 1, got, 0), NR_EINVAL);
    int many[17] = {0};
    cr_assert_eq(nr_gpt2_step(m, s, many, 17, got, 0), NR_EINVAL);
    nr_gpt2_state_destroy(&s);
    nr_gpt2_state_destroy(&s);
    free(enc);
    free(want);
    free(ids);
    free(got);
    nr_gpt2_destroy(&m);
    nr_backend_destroy(&be);
    nr_checkpoint_close(&ck);
    s_fix_free(&f);
}

static void s_check_ids(const int *got, int gn, const int *want, int wn, const char *what) {
    char g[512] = "", w[512] = "";
    for (int i = 0; i < gn; i++) snprintf(g + strlen(g), sizeof g - strlen(g), " %d", got[i]);
    for (int i = 0; i < wn; i++) snprintf(w + strlen(w), sizeof w - strlen(w), " %d", want[i]);
    cr_assert(gn == wn && memcmp(got, want, (size_t)wn * sizeof(int)) == 0, "%s: got%s, want%s", what, g, w);
}

Test(models_fixture, greedy_and_beam_ids) {
    s_fix_t f = s_fix();
    size_t ns;
    int gn, bn;
    float *enc = s_ref(&f, "encoder.hidden_states", &ns);
    int *greedy = s_ref_ids(&f, "generate.greedy_ids", &gn), *beam = s_ref_ids(&f, "generate.beam4_ids", &bn);
    nr_gen_config_t g = nr_captioner_gen_defaults(f.cap);
    cr_assert_eq(g.num_beams, 4);
    cr_assert_eq(g.max_length, 16);
    int ids[16], len;
    char err[512];
    cr_assert_eq(nr_captioner_generate(f.cap, enc, 1, &g, ids, &len, err, sizeof err), 0, "%s", err);
    s_check_ids(ids, len, beam, bn, "beam4");
    g.num_beams = 1;
    cr_assert_eq(nr_captioner_generate(f.cap, enc, 1, &g, ids, &len, err, sizeof err), 0, "%s", err);
    s_check_ids(ids, len, greedy, gn, "greedy");
    /* the encoder computed here gives the same ids */
    size_t np;
    float *px = s_ref(&f, "encoder.pixel_values", &np), *mine = malloc(ns * sizeof(float));
    cr_assert_eq(nr_captioner_encode(f.cap, px, 1, mine, err, sizeof err), 0);
    cr_assert_eq(nr_captioner_generate(f.cap, mine, 1, &g, ids, &len, err, sizeof err), 0);
    s_check_ids(ids, len, greedy, gn, "greedy from own encoder");
    g.num_beams = 4;
    cr_assert_eq(nr_captioner_generate(f.cap, mine, 1, &g, ids, &len, err, sizeof err), 0);
    s_check_ids(ids, len, beam, bn, "beam4 from own encoder");
    /* bad options */
    g.max_length = 1000;
    cr_assert_eq(nr_captioner_generate(f.cap, enc, 1, &g, ids, &len, err, sizeof err), NR_EOPTION);
    g.max_length = 16;
    g.num_beams = 0;
    cr_assert_eq(nr_captioner_generate(f.cap, enc, 1, &g, ids, &len, err, sizeof err), NR_EOPTION);
    free(px);
    free(mine);
    free(enc);
    free(greedy);
    free(beam);
    s_fix_free(&f);
}

Test(models_fixture, batched_generation_equals_unbatched) {
    s_fix_t f = s_fix();
    size_t ns;
    float *enc = s_ref(&f, "batch.hidden_states", &ns);
    const size_t one = ns / 3;
    char err[512];
    int settings[][3] = {{1, 16, 1}, {4, 16, 1}, {3, 5, 1}, {2, 16, 0}, {3, 9, -1}};
    for (size_t k = 0; k < sizeof settings / sizeof *settings; k++) {
        nr_gen_config_t g = nr_captioner_gen_defaults(f.cap);
        g.num_beams = settings[k][0];
        g.max_length = settings[k][1];
        g.early_stopping = settings[k][2];
        int *ids = malloc(3 * (size_t)g.max_length * sizeof(int)), lens[3];
        int *ids1 = malloc((size_t)g.max_length * sizeof(int)), len1;
        cr_assert_eq(nr_captioner_generate(f.cap, enc, 3, &g, ids, lens, err, sizeof err), 0, "%s", err);
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(nr_captioner_generate(f.cap, enc + i * one, 1, &g, ids1, &len1, err, sizeof err), 0);
            char what[64];
            snprintf(what, sizeof what, "beams %d max %d es %d image %d", g.num_beams, g.max_length, g.early_stopping, i);
            s_check_ids(ids + (size_t)i * g.max_length, lens[i], ids1, len1, what);
            cr_assert_eq(ids1[0], 50256);
            cr_assert_leq(len1, g.max_length);
        }
        free(ids);
        free(ids1);
    }
    free(enc);
    s_fix_free(&f);
}

Test(models_fixture, frames_and_captions) {
    s_fix_t f = s_fix();
    size_t ns;
    float *enc = s_ref(&f, "encoder.hidden_states", &ns), *back = malloc(ns * sizeof(float));
    unsigned char *fr = NULL;
    size_t fl = 0;
    char err[512];
    cr_assert_eq(nr_captioner_states_to_frame(f.cap, enc, &fr, &fl), 0);
    cr_assert_eq(nr_captioner_frame_to_states(f.cap, fr, fl, back, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(enc, back, ns * sizeof(float)), 0);
    int64_t sh[2] = {196, 32};
    unsigned char *bad = NULL;
    size_t bl;
    cr_assert_eq(nr_states_encode(enc, 2, sh, NR_DTYPE_F32, &bad, &bl), 0);
    cr_assert_eq(nr_captioner_frame_to_states(f.cap, bad, bl, back, err, sizeof err), NR_EPROTO);
    cr_assert(strstr(err, "[196, 32]") && strstr(err, "[197, 32]"), "%s", err);
    free(bad);
    /* a version 1 frame of the right shape is vit-gpt2's; another family's is refused */
    cr_assert_str_eq(nr_captioner_family(f.cap), "vit-gpt2");
    cr_assert_eq(memcmp(fr, "NRS2", 4), 0);
    int64_t sh1[2] = {197, 32};
    cr_assert_eq(nr_states_encode(enc, 2, sh1, NR_DTYPE_F32, &bad, &bl), 0);
    cr_assert_eq(nr_captioner_frame_to_states(f.cap, bad, bl, back, err, sizeof err), 0, "%s", err);
    free(bad);
    cr_assert_eq(nr_states_encode_family("git", enc, 2, sh1, NR_DTYPE_F32, &bad, &bl), 0);
    cr_assert_eq(nr_captioner_frame_to_states(f.cap, bad, bl, back, err, sizeof err), NR_EPROTO);
    cr_assert(strstr(err, "git") && strstr(err, "vit-gpt2"), "%s", err);
    free(bad);
    free(fr);
    char *cap[1] = {NULL};
    int nt[1];
    int rc = nr_captioner_caption(f.cap, enc, 1, NULL, cap, nt, err, sizeof err);
    if (rc == NR_EUNSUPPORTED) {
        cr_log_warn("caption: built without the tokenizer (%s)", err);
    } else {
        cr_assert_eq(rc, 0, "%s", err);
        cr_assert_not_null(cap[0]);
        cr_assert_eq(nt[0], 7); /* beam4: 9 ids = start + 7 + eos */
        fprintf(stderr, "tiny-model caption: \"%s\"\n", cap[0]);
        free(cap[0]);
    }
    free(enc);
    free(back);
    s_fix_free(&f);
}

#ifdef NR_HAVE_IMAGE
#include "models/image.h"
#include "models/preprocess.h"

Test(models_fixture, encode_images_batch_with_a_bad_image) {
    s_fix_t f = s_fix();
    char p1[1024], p2[1024], err[512];
    s_path(p1, sizeof p1, "tests/fixtures/images/chelsea_317x211.jpg");
    s_path(p2, sizeof p2, "tests/fixtures/images/bad_truncated.jpg");
    size_t n1, n2;
    unsigned char *b1 = (unsigned char *)nr_harness_read_file(p1, &n1);
    unsigned char *b2 = (unsigned char *)nr_harness_read_file(p2, &n2);
    cr_assert(b1 && b2);
    const void *bytes[3] = {b1, b2, b1};
    size_t sizes[3] = {n1, n2, n1};
    const size_t one = 197 * 32;
    float *states = malloc(3 * one * sizeof(float)), *want = malloc(one * sizeof(float));
    int status[3];
    cr_assert_eq(nr_captioner_encode_images(f.cap, bytes, sizes, 3, states, status, err, sizeof err), 0, "%s", err);
    cr_assert_eq(status[0], 0);
    cr_assert_neq(status[1], 0);
    cr_assert_eq(status[2], 0);
    for (size_t i = 0; i < one; i++) cr_assert_eq(states[one + i], 0.0f);
    /* the same as decode + preprocess + encode by hand */
    nr_image_t *img = NULL;
    cr_assert_eq(nr_image_decode(b1, n1, NULL, &img, err, sizeof err), 0, "%s", err);
    float *px = malloc(3 * 224 * 224 * sizeof(float));
    nr_preprocess_params_t pp = nr_preprocess_default_params();
    char cfgp[1024];
    s_path(cfgp, sizeof cfgp, "tests/fixtures/vit-gpt2-tiny/preprocessor_config.json");
    cr_assert_eq(nr_preprocess_load_config(cfgp, &pp, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_preprocess_image(img, &pp, px, 3 * 224 * 224), 0);
    cr_assert_eq(nr_captioner_encode(f.cap, px, 1, want, err, sizeof err), 0);
    double d = 0;
    for (size_t i = 0; i < one; i++) d = s_fmax(d, s_fmax(fabs(states[i] - want[i]), fabs(states[2 * one + i] - want[i])));
    cr_assert_leq(d, 1e-5, "batched image path differs by %g", d);
    nr_image_destroy(&img);
    free(px);
    free(states);
    free(want);
    free(b1);
    free(b2);
    s_fix_free(&f);
}
#endif

#include <cjson/cJSON.h>

/* Host F32 copy of a tensor of a safetensors file (the caller frees it). */
static float *s_tensor_f32(const char *rel, const char *name, size_t *count) {
    char path[1024], err[512];
    s_path(path, sizeof path, rel);
    nr_safetensors_t *st = NULL;
    cr_assert_eq(nr_safetensors_open(path, &st, err, sizeof err), 0, "%s", err);
    const nr_named_tensor_t *t = nr_safetensors_find(st, name);
    cr_assert_not_null(t, "%s: tensor %s missing", rel, name);
    size_t n = t->nbytes / nr_dtype_size(t->dtype);
    float *v = malloc(n * sizeof(float));
    cr_assert_not_null(v);
    nr_convert_to_f32(v, t->data, t->dtype, n);
    nr_safetensors_close(&st);
    if (count) *count = n;
    return v;
}

/* Beam search against the reference (transformers v4.46 BeamSearchScorer)
 * over 72 settings for each of 4 sets of encoder states on the two fixture
 * checkpoints (tests/models_beam_cases.json, written by
 * tests/make_models_beam_cases.py from reference_vit_gpt2.py): 288 cases,
 * 1008 id lists, every one compared, the mismatches counted then asserted. */
Test(models_fixture, beam_settings_match_reference) {
    char path[1024], err[512];
    s_path(path, sizeof path, "tests/models_beam_cases.json");
    size_t n;
    unsigned char *txt = (unsigned char *)nr_harness_read_file(path, &n);
    cr_assert_not_null(txt, "cannot read %s", path);
    txt = realloc(txt, n + 1);
    txt[n] = 0;
    cJSON *root = cJSON_Parse((char *)txt);
    cr_assert_not_null(root);
    cJSON *sets = cJSON_GetObjectItem(root, "sets");
    const int nsets = cJSON_GetArraySize(sets);
    cr_assert_eq(nsets, 4);
    nr_captioner_t *caps[4] = {NULL};
    float *states[4] = {NULL};
    int images[4];
    for (int k = 0; k < nsets; k++) {
        cJSON *st = cJSON_GetArrayItem(sets, k);
        s_path(path, sizeof path, cJSON_GetObjectItem(st, "checkpoint")->valuestring);
        cr_assert_eq(nr_captioner_load(path, NULL, &caps[k], err, sizeof err), 0, "%s", err);
        states[k] = s_tensor_f32(cJSON_GetObjectItem(st, "states_file")->valuestring,
                                 cJSON_GetObjectItem(st, "states")->valuestring, NULL);
        images[k] = cJSON_GetObjectItem(st, "images")->valueint;
        cr_assert(images[k] >= 1 && images[k] <= 4);
    }
    int checked = 0, mismatched = 0, eos_cases = 0, eos_mismatched = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const int k = cJSON_GetObjectItem(c, "set")->valueint, ni = images[k];
        nr_gen_config_t g = nr_captioner_gen_defaults(caps[k]);
        g.num_beams = cJSON_GetObjectItem(c, "num_beams")->valueint;
        g.length_penalty = (float)cJSON_GetObjectItem(c, "length_penalty")->valuedouble;
        g.early_stopping = cJSON_GetObjectItem(c, "early_stopping")->valueint;
        g.max_length = cJSON_GetObjectItem(c, "max_length")->valueint;
        const int eos_steps = cJSON_GetObjectItem(c, "eos_best_steps")->valueint;
        int ids[4 * 16], lens[4], bad = 0;
        cr_assert_eq(nr_captioner_generate(caps[k], states[k], ni, &g, ids, lens, err, sizeof err), 0, "%s", err);
        cJSON *want = cJSON_GetObjectItem(c, "ids");
        for (int i = 0; i < ni; i++) {
            cJSON *w = cJSON_GetArrayItem(want, i);
            int wn = cJSON_GetArraySize(w), wv[16];
            cr_assert(wn <= 16);
            for (int q = 0; q < wn; q++) wv[q] = cJSON_GetArrayItem(w, q)->valueint;
            checked++;
            if (lens[i] == wn && memcmp(ids + i * g.max_length, wv, (size_t)wn * sizeof(int)) == 0) continue;
            bad = 1;
            if (mismatched++ < 5) {
                char got[256] = "", exp[256] = "";
                for (int q = 0; q < lens[i]; q++) snprintf(got + strlen(got), sizeof got - strlen(got), " %d", ids[i * g.max_length + q]);
                for (int q = 0; q < wn; q++) snprintf(exp + strlen(exp), sizeof exp - strlen(exp), " %d", wv[q]);
                fprintf(stderr, "set %d beams %d lp %g es %d max %d image %d: got%s, want%s\n", k, g.num_beams,
                        g.length_penalty, g.early_stopping, g.max_length, i, got, exp);
            }
        }
        eos_cases += eos_steps > 0;
        eos_mismatched += bad && eos_steps > 0;
    }
    fprintf(stderr, "beam search: %d id lists in %d cases; %d mismatched (%d of the %d cases with an eos best candidate)\n",
            checked, cJSON_GetArraySize(cJSON_GetObjectItem(root, "cases")), mismatched, eos_mismatched, eos_cases);
    cr_assert_eq(checked, 1008);
    cr_assert(eos_cases > 0, "no case exercises the stop rule");
    cr_assert_eq(mismatched, 0, "%d of %d id lists differ from the reference", mismatched, checked);
    for (int k = 0; k < nsets; k++) {
        nr_captioner_destroy(&caps[k]);
        free(states[k]);
    }
    cJSON_Delete(root);
    free(txt);
}

/* ------------------------------------------------------------------ */
/* The second fixture: encoder 48 wide (64x64 images), decoder 32 wide, */
/* joined by VisionEncoderDecoder's enc_to_dec_proj                     */
/* ------------------------------------------------------------------ */

#define S_PROJ_DIR "tests/fixtures/vit-gpt2-tiny-proj"
#define S_PROJ_REF "tests/fixtures/vit-gpt2-tiny-proj-reference.safetensors"

Test(models_config, enc_to_dec_proj_and_cross_attention_hidden_size) {
    char dir[1024], err[512];
    s_path(dir, sizeof dir, S_PROJ_DIR);
    nr_model_config_t c;
    cr_assert_eq(nr_model_config_load(dir, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.vit.hidden_size, 48);
    cr_assert_eq(c.vit.image_size, 64);
    cr_assert_eq(c.gpt2.n_embd, 32);
    cr_assert_eq(c.gpt2.vocab_size, 512);
    cr_assert_eq(c.enc_to_dec_proj, 1);
    cr_assert_eq(c.gen.eos_token_id, 511);
    s_path(dir, sizeof dir, "tests/fixtures/vit-gpt2-tiny");
    cr_assert_eq(nr_model_config_load(dir, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.enc_to_dec_proj, 0);
    /* cross_attention_hidden_size: transformers wants the encoder's width and
     * then adds no projection; GPT-2 reads only n_embd-wide states */
    const char *base = "{\"model_type\": \"vision-encoder-decoder\", \"decoder_start_token_id\": 0, "
                       "\"encoder\": {\"hidden_size\": %d, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
                       "\"intermediate_size\": 8, \"image_size\": 32, \"patch_size\": 16}, "
                       "\"decoder\": {\"n_embd\": 32, \"n_layer\": 1, \"n_head\": 4, \"n_positions\": 8, "
                       "\"vocab_size\": 10, \"add_cross_attention\": true%s}}";
    char js[1024];
    snprintf(js, sizeof js, base, 32, ", \"cross_attention_hidden_size\": 32");
    cr_assert_eq(nr_model_config_parse(js, NULL, "x", &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.enc_to_dec_proj, 0);
    snprintf(js, sizeof js, base, 48, ", \"cross_attention_hidden_size\": 48");
    cr_assert_eq(nr_model_config_parse(js, NULL, "x", &c, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "cross_attention_hidden_size 48") && strstr(err, "n_embd 32"), "%s", err);
    snprintf(js, sizeof js, base, 48, ", \"cross_attention_hidden_size\": 32");
    cr_assert_eq(nr_model_config_parse(js, NULL, "x", &c, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "encoder.hidden_size 48"), "%s", err);
    snprintf(js, sizeof js, base, 48, ", \"cross_attention_hidden_size\": null");
    cr_assert_eq(nr_model_config_parse(js, NULL, "x", &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.enc_to_dec_proj, 1);
}

/* A checkpoint whose config asks for the projection but whose file lacks it
 * is refused naming the tensor. */
Test(models_fixture, proj_missing_tensor_is_a_clear_error) {
    char dir[] = "/tmp/nr-proj-XXXXXX", src[1024], path[1200], err[1024];
    cr_assert_not_null(mkdtemp(dir));
    s_path(src, sizeof src, S_PROJ_DIR);
    const char *files[] = {"config.json", "generation_config.json", "preprocessor_config.json", "vocab.json",
                           "merges.txt"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char from[1200];
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        size_t n;
        char *b = nr_harness_read_file(from, &n);
        cr_assert_not_null(b, "%s", from);
        s_write(path, b, n);
        free(b);
    }
    /* model.safetensors with enc_to_dec_proj.weight renamed */
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    size_t n;
    char *b = nr_harness_read_file(path, &n);
    cr_assert_not_null(b);
    char *hit = NULL;
    for (size_t i = 0; !hit && i + 22 <= n; i++)
        if (memcmp(b + i, "enc_to_dec_proj.weight", 22) == 0) hit = b + i;
    cr_assert_not_null(hit);
    hit[0] = 'x';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    s_write(path, b, n);
    free(b);
    nr_captioner_t *cap = NULL;
    cr_assert_eq(nr_captioner_load(dir, NULL, &cap, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "enc_to_dec_proj.weight"), "%s", err);
    /* the vision side alone does not need it */
    nr_captioner_params_t p = nr_captioner_default_params();
    p.load_decoder = 0;
    cr_assert_eq(nr_captioner_load(dir, &p, &cap, err, sizeof err), 0, "%s", err);
    nr_captioner_destroy(&cap);
}

Test(models_fixture, proj_encoder_states_logits_and_ids) {
    char dir[1024], err[1024];
    s_path(dir, sizeof dir, S_PROJ_DIR);
    nr_captioner_t *cap = NULL;
    cr_assert_eq(nr_captioner_load(dir, NULL, &cap, err, sizeof err), 0, "%s", err);
    int C, H, W, S, D;
    nr_captioner_pixels_shape(cap, &C, &H, &W);
    nr_captioner_states_shape(cap, &S, &D);
    cr_assert(C == 3 && H == 64 && W == 64 && S == 17 && D == 48, "%d %d %d %d %d", C, H, W, S, D);
    size_t np, ns, nx, nl, nb;
    float *px = s_tensor_f32(S_PROJ_REF, "encoder.pixel_values", &np);
    float *want = s_tensor_f32(S_PROJ_REF, "encoder.hidden_states", &ns);
    float *xwant = s_tensor_f32(S_PROJ_REF, "decoder.encoder_hidden_states", &nx);
    float *lwant = s_tensor_f32(S_PROJ_REF, "decoder.logits", &nl);
    float *bpx = s_tensor_f32(S_PROJ_REF, "batch.pixel_values", NULL);
    float *bwant = s_tensor_f32(S_PROJ_REF, "batch.hidden_states", &nb);
    cr_assert(np == 3 * 64 * 64 && ns == 17 * 48 && nx == 17 * 32 && nb == 3 * ns);
    /* encoder states: the frame carries these (48 wide) */
    float *got = malloc(nb * sizeof(float));
    cr_assert_eq(nr_captioner_encode(cap, px, 1, got, err, sizeof err), 0, "%s", err);
    double e = s_err(got, want, ns, NULL);
    fprintf(stderr, "proj encoder.hidden_states: max normalized error %.3g\n", e);
    cr_assert_leq(e, 1.0);
    cr_assert_eq(nr_captioner_encode(cap, bpx, 3, got, err, sizeof err), 0, "%s", err);
    cr_assert_leq(s_err(got, bwant, nb, NULL), 1.0);
    unsigned char *fr = NULL;
    size_t fl = 0;
    cr_assert_eq(nr_captioner_states_to_frame(cap, want, &fr, &fl), 0);
    cr_assert_eq(nr_captioner_frame_to_states(cap, fr, fl, got, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(got, want, ns * sizeof(float)), 0);
    free(fr);
    /* what the decoder cross-attends: enc_to_dec_proj(states), 32 wide */
    float *x = malloc(nx * sizeof(float));
    cr_assert_eq(nr_captioner_project(cap, want, 1, x, err, sizeof err), 0, "%s", err);
    e = s_err(x, xwant, nx, NULL);
    fprintf(stderr, "proj decoder.encoder_hidden_states: max normalized error %.3g\n", e);
    cr_assert_leq(e, 1.0);
    /* per-step logits through the KV cache, cross-attending the projected states */
    nr_model_config_t cfg;
    cr_assert_eq(nr_model_config_load(dir, &cfg, err, sizeof err), 0, "%s", err);
    nr_checkpoint_t *ck = NULL;
    cr_assert_eq(nr_checkpoint_open_dir(dir, &ck, err, sizeof err), 0, "%s", err);
    nr_backend_t *be = s_cpu();
    nr_gpt2_t *m = NULL;
    cr_assert_eq(nr_gpt2_load(&cfg.gpt2, ck, "decoder.", be, &m, err, sizeof err), 0, "%s", err);
    const int V = 512, T = (int)(nl / V);
    cr_assert_eq((size_t)T * V, nl);
    size_t nid;
    float *idf = s_tensor_f32(S_PROJ_REF, "decoder.input_ids", &nid);
    cr_assert_eq((int)nid, T);
    int ids[16];
    for (int t = 0; t < T; t++) ids[t] = (int)idf[t];
    float *lg = malloc(nl * sizeof(float));
    nr_gpt2_state_t *s = nr_gpt2_state_new(m, 1, 16, 1, S);
    cr_assert_not_null(s);
    cr_assert_eq(nr_gpt2_set_encoder(m, s, x, NULL), 0);
    for (int t = 0; t < T; t++) cr_assert_eq(nr_gpt2_step(m, s, ids + t, 1, lg + (size_t)t * V, 0), 0);
    e = s_err(lg, lwant, nl, NULL);
    fprintf(stderr, "proj decoder.logits (KV cache, step by step): max normalized error %.3g\n", e);
    cr_assert_leq(e, 1.0);
    nr_gpt2_state_destroy(&s);
    /* greedy and beam ids from the encoder states (the projection applied inside) */
    int gn, bn;
    size_t cnt;
    float *gf = s_tensor_f32(S_PROJ_REF, "generate.greedy_ids", &cnt);
    gn = (int)cnt;
    float *bf = s_tensor_f32(S_PROJ_REF, "generate.beam4_ids", &cnt);
    bn = (int)cnt;
    int gi[16], bi[16], out[16], len;
    for (int i = 0; i < gn; i++) gi[i] = (int)gf[i];
    for (int i = 0; i < bn; i++) bi[i] = (int)bf[i];
    nr_gen_config_t g = nr_captioner_gen_defaults(cap);
    cr_assert_eq(g.num_beams, 4);
    cr_assert_eq(nr_captioner_generate(cap, want, 1, &g, out, &len, err, sizeof err), 0, "%s", err);
    s_check_ids(out, len, bi, bn, "proj beam4");
    g.num_beams = 1;
    cr_assert_eq(nr_captioner_generate(cap, want, 1, &g, out, &len, err, sizeof err), 0, "%s", err);
    s_check_ids(out, len, gi, gn, "proj greedy");
    /* from our own encoder's states too */
    cr_assert_eq(nr_captioner_encode(cap, px, 1, got, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_captioner_generate(cap, got, 1, &g, out, &len, err, sizeof err), 0, "%s", err);
    s_check_ids(out, len, gi, gn, "proj greedy from own encoder");
    g.num_beams = 4;
    cr_assert_eq(nr_captioner_generate(cap, got, 1, &g, out, &len, err, sizeof err), 0, "%s", err);
    s_check_ids(out, len, bi, bn, "proj beam4 from own encoder");
    free(gf);
    free(bf);
    free(idf);
    free(lg);
    nr_gpt2_destroy(&m);
    nr_backend_destroy(&be);
    nr_checkpoint_close(&ck);
    free(px);
    free(want);
    free(xwant);
    free(lwant);
    free(bpx);
    free(bwant);
    free(got);
    free(x);
    nr_captioner_destroy(&cap);
}

#include <pthread.h>

typedef struct {
    const nr_captioner_t *cap;
    const float *px, *enc;
    float states[197 * 32];
    int ids[16], len, rc;
} s_thr_t;

static void *s_thr(void *p) {
    s_thr_t *t = p;
    char err[256];
    for (int i = 0; i < 5 && t->rc == 0; i++) {
        t->rc = nr_captioner_encode(t->cap, t->px, 1, t->states, err, sizeof err);
        if (t->rc == 0) t->rc = nr_captioner_generate(t->cap, t->enc, 1, NULL, t->ids, &t->len, err, sizeof err);
    }
    return NULL;
}

/* One captioner, four threads at once: the same results as one thread
 * (bit for bit: the pool only splits output columns). */
Test(models_fixture, concurrent_calls_share_one_captioner) {
    s_fix_t f = s_fix();
    size_t np, ns;
    float *px = s_ref(&f, "encoder.pixel_values", &np), *enc = s_ref(&f, "encoder.hidden_states", &ns);
    s_thr_t one = {.cap = f.cap, .px = px, .enc = enc};
    s_thr(&one);
    cr_assert_eq(one.rc, 0);
    s_thr_t t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (s_thr_t){.cap = f.cap, .px = px, .enc = enc};
        cr_assert_eq(pthread_create(&th[i], NULL, s_thr, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(t[i].rc, 0);
        cr_assert_eq(memcmp(t[i].states, one.states, sizeof one.states), 0, "thread %d states differ", i);
        s_check_ids(t[i].ids, t[i].len, one.ids, one.len, "concurrent beam");
    }
    free(px);
    free(enc);
    s_fix_free(&f);
}
