/* bench_models: times the ViT-B/16 encoder (images/s) and the GPT-2
 * decoder with cross-attention (ms/token, greedy = 1 row, beam = 4 rows) at
 * the sizes of nlpconnect/vit-gpt2-image-captioning, with random weights
 * built in memory as a safetensors image (no file, no download).
 *   bench_models [--threads N] [--batch N] [--iters N] [--tokens N] [--precision f32,bf16,int8] [--blas] [--dump FILE]
 * One run measures each weight precision (devices cpu:f32, cpu:bf16,
 * cpu:int8) and the GEMM bounds (OpenBLAS sgemm, own F32 GEMM, BF16 GEMM)
 * at the encoder's MLP shape.
 * Compare with bench/bench_models_torch.py (same sizes, same steps). */
#include <cblas.h>
#include <math.h>
#undef I /* complex.h (via cblas.h) defines I; here it is the MLP width */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "models/backend.h"
#include "models/config.h"
#include "models/cpu/kernels.h"
#include "models/cpu/lowp.h"
#include "models/generate.h"
#include "models/gpt2.h"
#include "models/safetensors.h"
#include "models/tensor.h"
#include "models/vit.h"

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[4];
    float fill; /* 0: random N-ish(0, 0.02); else constant */
} s_spec_t;

char *openblas_get_corename(void);

static s_spec_t *s_specs;
static size_t s_n, s_cap;

static void s_add(const char *name, float fill, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    if (s_n == s_cap) {
        s_cap = s_cap ? 2 * s_cap : 512;
        s_specs = realloc(s_specs, s_cap * sizeof(*s_specs));
    }
    s_spec_t *s = &s_specs[s_n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ndim = ndim;
    s->shape[0] = a;
    s->shape[1] = b;
    s->shape[2] = c;
    s->shape[3] = d;
    s->fill = fill;
}

static uint64_t s_rng = 0x9E3779B97F4A7C15ull;
static float s_rand(void) {
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return ((float)(s_rng >> 40) * (1.0f / 16777216.0f) - 0.5f) * 0.07f; /* std ~0.02 */
}

/* Builds the safetensors bytes: header padded so the data is 64-byte aligned. */
static unsigned char *s_build(size_t *size) {
    size_t hcap = 1 << 20, hl = 0, off = 0;
    char *h = malloc(hcap);
    hl += (size_t)snprintf(h + hl, hcap - hl, "{");
    for (size_t i = 0; i < s_n; i++) {
        size_t n = 1;
        for (int d = 0; d < s_specs[i].ndim; d++) n *= (size_t)s_specs[i].shape[d];
        hl += (size_t)snprintf(h + hl, hcap - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "", s_specs[i].name);
        for (int d = 0; d < s_specs[i].ndim; d++)
            hl += (size_t)snprintf(h + hl, hcap - hl, "%s%lld", d ? "," : "", (long long)s_specs[i].shape[d]);
        hl += (size_t)snprintf(h + hl, hcap - hl, "],\"data_offsets\":[%zu,%zu]}", off, off + 4 * n);
        off += 4 * n;
    }
    hl += (size_t)snprintf(h + hl, hcap - hl, "}");
    size_t padded = ((8 + hl + 63) & ~(size_t)63) - 8;
    *size = 8 + padded + off;
    unsigned char *buf = nr_aligned_alloc(*size);
    if (!buf) return NULL;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, h, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    float *data = (float *)(buf + 8 + padded);
    size_t k = 0;
    for (size_t i = 0; i < s_n; i++) {
        size_t n = 1;
        for (int d = 0; d < s_specs[i].ndim; d++) n *= (size_t)s_specs[i].shape[d];
        for (size_t j = 0; j < n; j++) data[k++] = s_specs[i].fill != 0 ? s_specs[i].fill : s_rand();
    }
    free(h);
    return buf;
}

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ViT-B/16 forward FLOPs per image (multiply-add = 2): patch embedding,
 * per layer QKV, output, MLP and the two attention products. */
static double s_vit_flops(int S, int D, int I, int L) {
    double per_layer = 2.0 * S * D * (3.0 * D + D + 2.0 * I) + 2.0 * 2.0 * S * (double)S * D;
    return 2.0 * (S - 1) * (double)D * (3 * 16 * 16) + L * per_layer;
}

/* GFLOP/s of y[M,N] = x[M,K] W^T, best of 3: OpenBLAS sgemm (which 0),
 * the own F32 GEMM (1), the BF16 GEMM (2). */
static double s_gemm_gflops(int which, int M, int N, int K) {
    float *x = nr_aligned_alloc((size_t)M * K * sizeof(float)), *w = nr_aligned_alloc((size_t)N * K * sizeof(float));
    float *y = nr_aligned_alloc((size_t)M * N * sizeof(float));
    if (!x || !w || !y) return 0;
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = s_rand();
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = s_rand();
    nr_cpu_bf16w_t bw;
    if (which == 2 && nr_cpu_bf16w_make(&bw, w, NR_W_OUT_IN, N, K)) return 0;
    double best = 1e9;
    for (int rep = 0; rep < 4; rep++) {
        double t0 = s_now();
        if (which == 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
        else if (which == 1)
            nr_cpu_matmul(y, N, x, K, w, NR_W_OUT_IN, M, N, K, 0);
        else
            nr_cpu_matmul_bf16(y, N, x, K, &bw, M, 0);
        double dt = s_now() - t0;
        if (rep > 0 && dt < best) best = dt; /* rep 0 warms up */
    }
    if (which == 2) nr_cpu_bf16w_free(&bw);
    free(x);
    free(w);
    free(y);
    return 2.0 * M * N * (double)K / best / 1e9;
}

int main(int argc, char **argv) {
    int threads = 0, batch = 8, iters = 3, tokens = 16;
    char precs[64] = "f32,bf16,int8";
    const char *dump = NULL; /* --dump FILE: encoder states + one step's logits (to compare builds bit for bit) */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_models [--threads N] [--batch N] [--iters N] [--tokens N] [--precision LIST] [--blas]\n"
                   "                    [--dump FILE]  (encoder states + one decode step's logits, to compare builds)\n"
                   "  ViT-B/16 encoder images/s (batch 1 and --batch, default 8) with achieved GFLOP/s against\n"
                   "  the GEMMs measured in the same run, and GPT-2 decoder ms/token (1 row greedy, 4 rows beam,\n"
                   "  and per caption with 1, 4, 16 captions decoded together), random weights in memory,\n"
                   "  for each weight precision in LIST (comma-separated f32, bf16, int8; default all three:\n"
                   "  the devices cpu:f32, cpu:bf16, cpu:int8).\n");
            return 0;
        }
        if (!strcmp(argv[i], "--blas")) {
            nr_cpu_gemm_own = 0; /* OpenBLAS sgemm for every matmul above 32 rows */
            continue;
        }
        if (i + 1 >= argc) break;
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens")) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--precision")) snprintf(precs, sizeof precs, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--dump")) dump = argv[++i];
    }
    if (batch < 1 || iters < 1 || tokens < 1 || tokens > 1000) {
        fprintf(stderr, "bench: bad --batch/--iters/--tokens\n");
        return 2;
    }
    const char *cfg_json =
        "{\"model_type\":\"vision-encoder-decoder\",\"decoder_start_token_id\":50256,\"eos_token_id\":50256,"
        "\"encoder\":{\"model_type\":\"vit\",\"hidden_size\":768,\"num_hidden_layers\":12,\"num_attention_heads\":12,"
        "\"intermediate_size\":3072,\"image_size\":224,\"patch_size\":16,\"num_channels\":3,\"layer_norm_eps\":1e-12,"
        "\"hidden_act\":\"gelu\"},"
        "\"decoder\":{\"model_type\":\"gpt2\",\"n_embd\":768,\"n_layer\":12,\"n_head\":12,\"n_positions\":1024,"
        "\"vocab_size\":50257,\"layer_norm_epsilon\":1e-5,\"activation_function\":\"gelu_new\","
        "\"add_cross_attention\":true}}";
    char err[1024];
    nr_model_config_t cfg;
    if (nr_model_config_parse(cfg_json, NULL, "bench", &cfg, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const int D = 768, I = 3072, L = 12, V = 50257;
    char n[128];
    s_add("encoder.embeddings.patch_embeddings.projection.weight", 0, 4, D, 3, 16, 16);
    s_add("encoder.embeddings.patch_embeddings.projection.bias", 0, 1, D, 0, 0, 0);
    s_add("encoder.embeddings.cls_token", 0, 3, 1, 1, D, 0);
    s_add("encoder.embeddings.position_embeddings", 0, 3, 1, 197, D, 0);
    s_add("encoder.layernorm.weight", 1, 1, D, 0, 0, 0);
    s_add("encoder.layernorm.bias", 0, 1, D, 0, 0, 0);
    const char *vl[][3] = {{"attention.attention.query", "D", "D"}, {"attention.attention.key", "D", "D"},
                           {"attention.attention.value", "D", "D"}, {"attention.output.dense", "D", "D"},
                           {"intermediate.dense", "I", "D"},         {"output.dense", "D", "I"}};
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < 6; k++) {
            int64_t o = vl[k][1][0] == 'I' ? I : D, in = vl[k][2][0] == 'I' ? I : D;
            snprintf(n, sizeof n, "encoder.encoder.layer.%d.%s.weight", l, vl[k][0]);
            s_add(n, 0, 2, o, in, 0, 0);
            snprintf(n, sizeof n, "encoder.encoder.layer.%d.%s.bias", l, vl[k][0]);
            s_add(n, 0, 1, o, 0, 0, 0);
        }
        const char *lns[] = {"layernorm_before", "layernorm_after"};
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "encoder.encoder.layer.%d.%s.weight", l, lns[k]);
            s_add(n, 1, 1, D, 0, 0, 0);
            snprintf(n, sizeof n, "encoder.encoder.layer.%d.%s.bias", l, lns[k]);
            s_add(n, 0, 1, D, 0, 0, 0);
        }
    }
    s_add("decoder.transformer.wte.weight", 0, 2, V, D, 0, 0);
    s_add("decoder.transformer.wpe.weight", 0, 2, 1024, D, 0, 0);
    s_add("decoder.transformer.ln_f.weight", 1, 1, D, 0, 0, 0);
    s_add("decoder.transformer.ln_f.bias", 0, 1, D, 0, 0, 0);
    struct {
        const char *n;
        int64_t in, out;
    } gl[] = {{"attn.c_attn", D, 3 * D},         {"attn.c_proj", D, D},           {"crossattention.q_attn", D, D},
              {"crossattention.c_attn", D, 2 * D}, {"crossattention.c_proj", D, D}, {"mlp.c_fc", D, I},
              {"mlp.c_proj", I, D}};
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < 7; k++) {
            snprintf(n, sizeof n, "decoder.transformer.h.%d.%s.weight", l, gl[k].n);
            s_add(n, 0, 2, gl[k].in, gl[k].out, 0, 0);
            snprintf(n, sizeof n, "decoder.transformer.h.%d.%s.bias", l, gl[k].n);
            s_add(n, 0, 1, gl[k].out, 0, 0, 0);
        }
        const char *lns[] = {"ln_1", "ln_cross_attn", "ln_2"};
        for (int k = 0; k < 3; k++) {
            snprintf(n, sizeof n, "decoder.transformer.h.%d.%s.weight", l, lns[k]);
            s_add(n, 1, 1, D, 0, 0, 0);
            snprintf(n, sizeof n, "decoder.transformer.h.%d.%s.bias", l, lns[k]);
            s_add(n, 0, 1, D, 0, 0, 0);
        }
    }
    size_t size;
    unsigned char *buf = s_build(&size);
    nr_safetensors_t *st = NULL;
    if (!buf || nr_safetensors_open_memory(buf, size, "random-weights", &st, err, sizeof err)) {
        fprintf(stderr, "bench: %s\n", buf ? err : "out of memory");
        return 1;
    }
    const int S = 197;
    /* the GEMM bounds, measured in this run at the ViT MLP shape of the batch */
    nr_backend_t *be0 = nr_backend_new("cpu", threads, err, sizeof err);
    if (!be0) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    nr_cpu_lowp_init();
    const int gm = S * batch;
    double g_blas = s_gemm_gflops(0, gm, I, D), g_own = s_gemm_gflops(1, gm, I, D), g_bf = s_gemm_gflops(2, gm, I, D);
    nr_backend_destroy(&be0);
    printf("bench_models: weights %.0f MB F32, threads %d, large matmuls: %s (OpenBLAS kernels %s), AVX-512 BF16 %s\n",
           size / 1e6, threads, nr_cpu_gemm_own ? "own AVX-512 GEMM if built for it" : "OpenBLAS sgemm",
           openblas_get_corename(), nr_cpu_use_avx512bf16 ? "yes" : "no");
    printf("gemm %dx%dx%d: OpenBLAS sgemm %.1f GFLOP/s, own F32 GEMM %.1f GFLOP/s, BF16 GEMM %.1f GFLOP/s\n", gm, I, D,
           g_blas, g_own, g_bf);
    const double vflops = s_vit_flops(S, D, I, L);
    float *px = malloc((size_t)batch * 3 * 224 * 224 * sizeof(float));
    float *states = malloc((size_t)(batch > 16 ? batch : 16) * S * D * sizeof(float));
    float *logits = malloc((size_t)16 * V * sizeof(float));
    if (!px || !states || !logits) return 1;
    for (size_t i = 0; i < (size_t)batch * 3 * 224 * 224; i++) px[i] = s_rand() * 30;
    char plist[64];
    snprintf(plist, sizeof plist, "%s", precs);
    for (char *save = NULL, *prec = strtok_r(plist, ",", &save); prec; prec = strtok_r(NULL, ",", &save)) {
        char dev[32];
        snprintf(dev, sizeof dev, "cpu:%s", prec);
        double tl = s_now();
        nr_backend_t *be = nr_backend_new(dev, threads, err, sizeof err);
        nr_vit_t *vit = NULL;
        nr_gpt2_t *gpt2 = NULL;
        if (!be || nr_vit_load(&cfg.vit, st, "encoder.", be, &vit, err, sizeof err) ||
            nr_gpt2_load(&cfg.gpt2, st, "decoder.", be, &gpt2, err, sizeof err)) {
            fprintf(stderr, "bench: %s\n", err);
            return 1;
        }
        printf("== precision %s (device %s): load %.0f ms%s\n", prec, dev, (s_now() - tl) * 1e3,
               strcmp(prec, "f32") ? " (weights converted at load)" : "");
        /* ViT */
        int bs[2] = {1, batch};
        double bound = !strcmp(prec, "bf16") ? g_bf : (g_own > g_blas ? g_own : g_blas);
        for (int k = 0; k < 2; k++) {
            nr_vit_forward(vit, px, bs[k], states); /* warm-up (and the one-time weight conversion) */
            double best = 1e9;
            for (int it = 0; it < iters; it++) {
                double t0 = s_now();
                nr_vit_forward(vit, px, bs[k], states);
                double dt = s_now() - t0;
                best = dt < best ? dt : best;
            }
            double gf = vflops * bs[k] / best / 1e9;
            printf("vit-b16 encoder  batch %d: %8.1f ms/batch  %6.2f images/s  %6.1f GFLOP/s = %3.0f%% of the %s GEMM\n",
                   bs[k], best * 1e3, bs[k] / best, gf, 100.0 * gf / bound, !strcmp(prec, "bf16") ? "BF16" : "F32");
        }
        if (dump) {
            FILE *f = fopen(dump, "wb");
            nr_gpt2_state_t *s = nr_gpt2_state_new(gpt2, 4, 4, 4, S);
            int ids[4] = {50256, 50256, 50256, 50256}, eidx[4] = {0, 1 % batch, 2 % batch, 3 % batch};
            if (!f || !s || nr_gpt2_set_encoder(gpt2, s, states, eidx) || nr_gpt2_step(gpt2, s, ids, 1, logits, 0)) {
                fprintf(stderr, "bench: --dump failed\n");
                return 1;
            }
            fwrite(states, sizeof(float), (size_t)batch * S * D, f);
            fwrite(logits, sizeof(float), (size_t)4 * V, f);
            fclose(f);
            nr_gpt2_state_destroy(&s);
        }
        for (int i = 1; i < 16; i++)
            if (i >= batch) memcpy(states + (size_t)i * S * D, states + (size_t)(i % batch) * S * D, (size_t)S * D * sizeof(float));
        /* GPT-2 steps: 1 row (greedy), 4 rows (beam 4), and 1, 4, 16 captions
         * decoded together (one row each, each with its own image) */
        int rows_list[4][2] = {{1, 1}, {4, 1}, {4, 4}, {16, 16}}; /* rows, images */
        for (int k = 0; k < 4; k++) {
            int rows = rows_list[k][0], nimg = rows_list[k][1];
            nr_gpt2_state_t *s = nr_gpt2_state_new(gpt2, rows, tokens + 1, nimg, S);
            int ids[16], eidx[16];
            for (int r = 0; r < 16; r++) ids[r] = 50256, eidx[r] = r % nimg;
            double best = 1e9;
            for (int rep = 0; rep < 2; rep++) {
                nr_gpt2_set_encoder(gpt2, s, states, eidx);
                double t0 = s_now();
                for (int t = 0; t < tokens; t++) {
                    nr_gpt2_step(gpt2, s, ids, 1, logits, 0);
                    for (int r = 0; r < rows; r++) ids[r] = (int)((t * 7919 + r * 104729) % V);
                }
                double dt = (s_now() - t0) / tokens;
                best = dt < best ? dt : best;
                nr_gpt2_state_destroy(&s);
                s = nr_gpt2_state_new(gpt2, rows, tokens + 1, nimg, S);
            }
            double t0 = s_now();
            nr_gpt2_set_encoder(gpt2, s, states, eidx);
            double tx = s_now() - t0;
            if (nimg == 1)
                printf("gpt2 decoder     rows %2d (%s): %8.2f ms/token (step of all rows), cross K/V setup %.1f ms\n",
                       rows, rows == 1 ? "greedy" : "beam 4", best * 1e3, tx * 1e3);
            else
                printf("gpt2 decoder     captions %2d together: %8.2f ms/step, %6.2f ms/token per caption, cross K/V "
                       "setup %.1f ms\n",
                       rows, best * 1e3, best * 1e3 / rows, tx * 1e3);
            nr_gpt2_state_destroy(&s);
        }
        /* whole captions: greedy and beam 4 for one image, greedy for 4 and
         * 16 images at once; max_length 16 (random weights never say eos,
         * so every step runs) */
        int cases[4][2] = {{1, 1}, {4, 1}, {1, 4}, {1, 16}};
        for (int c = 0; c < 4; c++) {
            nr_gen_config_t g = cfg.gen;
            g.num_beams = cases[c][0];
            g.max_length = 16;
            g.early_stopping = 1;
            int n = cases[c][1], out_ids[16 * 16], out_len[16];
            double t0 = s_now();
            if (nr_generate(gpt2, states, n, S, &g, out_ids, out_len, err, sizeof err)) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
            }
            double dt = s_now() - t0;
            printf("captions %2d x beams %d: %8.1f ms (max_length 16, %d ids each, cross K/V included), %.2f ms/token "
                   "per caption\n",
                   n, cases[c][0], dt * 1e3, out_len[0], dt * 1e3 / n / (out_len[0] - 1));
        }
        nr_vit_destroy(&vit);
        nr_gpt2_destroy(&gpt2);
        nr_backend_destroy(&be);
    }
    free(logits);
    free(px);
    free(states);
    nr_safetensors_close(&st);
    free(buf);
    free(s_specs);
    return 0;
}
