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

#include "bench/random_weights.h"
#include "common/error.h"
#include "models/backend.h"
#include "models/config.h"
#include "models/cpu/kernels.h"
#include "models/cpu/lowp.h"
#include "models/generate.h"
#include "models/gpt2.h"
#include "models/io/checkpoint.h"
#include "models/tensor.h"
#include "models/vit.h"

char *openblas_get_corename(void);

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
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = nr_bench_rand();
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = nr_bench_rand();
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
    char err[1024];
    nr_model_config_t cfg;
    size_t size;
    unsigned char *buf = NULL;
    nr_checkpoint_t *ck = NULL;
    if (nr_bench_random_vit_gpt2(&cfg, &buf, &size, &ck, err, sizeof err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    const int D = 768, I = 3072, L = 12, V = 50257, S = 197;
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
    for (size_t i = 0; i < (size_t)batch * 3 * 224 * 224; i++) px[i] = nr_bench_rand() * 30;
    char plist[64];
    snprintf(plist, sizeof plist, "%s", precs);
    for (char *save = NULL, *prec = strtok_r(plist, ",", &save); prec; prec = strtok_r(NULL, ",", &save)) {
        char dev[32];
        snprintf(dev, sizeof dev, "cpu:%s", prec);
        double tl = s_now();
        nr_backend_t *be = nr_backend_new(dev, threads, err, sizeof err);
        nr_vit_t *vit = NULL;
        nr_gpt2_t *gpt2 = NULL;
        if (!be || nr_vit_load(&cfg.vit, ck, "encoder.", be, &vit, err, sizeof err) ||
            nr_gpt2_load(&cfg.gpt2, ck, "decoder.", be, &gpt2, err, sizeof err)) {
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
            nr_decoder_t dec = nr_gpt2_decoder(gpt2);
            double t0 = s_now();
            if (nr_generate(&dec, states, n, S, &g, out_ids, out_len, err, sizeof err)) {
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
    nr_checkpoint_close(&ck);
    free(buf);
    return 0;
}
