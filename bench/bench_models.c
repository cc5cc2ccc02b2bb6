/* bench_models: times the ViT-B/16 encoder (images/s) and the GPT-2
 * decoder with cross-attention (ms/token, greedy = 1 row, beam = 4 rows) at
 * the sizes of nlpconnect/vit-gpt2-image-captioning, with random weights
 * built in memory as a safetensors image (no file, no download).
 *   bench_models [--threads N] [--batch N] [--iters N] [--tokens N] [--precision f32,bf16,int8]
 *                [--paths LIST|all] [--no-gemm] [--blas] [--dump FILE]
 * First a GEMM table: for every CPU kernel path this CPU runs (dispatch.h),
 * F32, BF16 and INT8 GFLOP/s at the encoder's MLP shape and at decode
 * shapes, against the path's peak (cores x GHz x FLOP/cycle). Then, for
 * each path in --paths (default: the one in use, NR_CPU_PATH or the best),
 * each weight precision (devices cpu:f32, cpu:bf16, cpu:int8) on the model.
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
#include "models/cpu/dispatch.h"
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

/* GFLOP/s of y[M,N] = x[M,K] W^T on the path in use, best of at least 3
 * timed runs (and 50 ms): OpenBLAS sgemm (which 0), nr_cpu_matmul (1), the
 * BF16 matmul (2), the INT8 matmul (3). */
static double s_gemm_gflops(int which, int M, int N, int K) {
    float *x = nr_aligned_alloc((size_t)M * K * sizeof(float)), *w = nr_aligned_alloc((size_t)N * K * sizeof(float));
    float *y = nr_aligned_alloc((size_t)M * N * sizeof(float));
    if (!x || !w || !y) return 0;
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = nr_bench_rand();
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = nr_bench_rand();
    nr_cpu_bf16w_t bw;
    nr_cpu_i8w_t qw;
    if (which == 2 && nr_cpu_bf16w_make(&bw, w, NR_W_OUT_IN, N, K)) return 0;
    if (which == 3 && nr_cpu_i8w_make(&qw, w, NR_W_OUT_IN, N, K)) return 0;
    double best = 1e9, spent = 0;
    for (int rep = 0; rep < 4 || (spent < 0.05 && rep < 1000); rep++) {
        double t0 = s_now();
        if (which == 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
        else if (which == 1)
            nr_cpu_matmul(y, N, x, K, w, NR_W_OUT_IN, M, N, K, 0);
        else if (which == 2)
            nr_cpu_matmul_bf16(y, N, x, K, &bw, M, 0);
        else
            nr_cpu_matmul_i8(y, N, x, K, &qw, M, 0);
        double dt = s_now() - t0;
        spent += dt;
        if (rep > 0 && dt < best) best = dt; /* rep 0 warms up */
    }
    if (which == 2) nr_cpu_bf16w_free(&bw);
    if (which == 3) nr_cpu_i8w_free(&qw);
    free(x);
    free(w);
    free(y);
    return 2.0 * M * N * (double)K / best / 1e9;
}

/* Nominal clock from /proc/cpuinfo ("cpu MHz" of the first CPU), GHz; 0 if unknown. */
static double s_ghz(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    double mhz = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "cpu MHz : %lf", &mhz) == 1) break;
    if (f) fclose(f);
    return mhz / 1e3;
}

/* FLOP per cycle per core of a path's widest instruction for a precision:
 * two FMA units (2 x lanes x 2) for F32 and INT8 (widened to F32); one
 * vdpbf16ps zmm per cycle (16 lanes x 2 products x 2); AMX: one 16x16x32
 * TDPBF16PS (16384 FLOP) per 16 cycles. Generic: SSE2, 4 lanes, a multiply
 * and an add per cycle. */
static double s_flop_cycle(nr_cpu_path_t p, int bf16) {
    if (bf16 && p == NR_CPU_PATH_AMX) return 1024;
    if (bf16 && p == NR_CPU_PATH_AVX512BF16) return 64;
    return p >= NR_CPU_PATH_AVX512 ? 64 : p == NR_CPU_PATH_AVX2 ? 32 : 8;
}

/* The GEMM table for every path this CPU runs. bound[p][0|1]: the best F32
 * and BF16 GFLOP/s at the encoder's MLP shape (for the model lines). */
static void s_gemm_table(int threads, int gm, int I, int D, double bound[NR_CPU_PATH_COUNT][2]) {
    const double ghz = s_ghz();
    printf("GEMM GFLOP/s per path; peak = %d cores x %.2f GHz (nominal, /proc/cpuinfo) x FLOP/cycle of the path\n"
           "(F32/INT8: 2 FMA units; BF16: 1 vdpbf16ps/cycle; AMX: 1024). Matmuls above 32 rows on the generic and\n"
           "avx2 paths are OpenBLAS sgemm, which picks its own kernels for the CPU.\n",
           threads, ghz);
    const int shapes[4][3] = {{gm, I, D}, {1, 3 * D, D}, {4, 3 * D, D}, {16, 3 * D, D}};
    const char *what[4] = {"ViT MLP", "decode 1 row, GPT-2 c_attn", "decode 4 rows (beam 4)", "decode 16 rows"};
    const nr_cpu_path_t keep = nr_cpu_path();
    for (int p = 0; p < NR_CPU_PATH_COUNT; p++) {
        if (!nr_cpu_path_supported((nr_cpu_path_t)p)) {
            printf("path %-10s: not on this CPU\n", nr_cpu_path_name((nr_cpu_path_t)p));
            continue;
        }
        nr_cpu_path_set((nr_cpu_path_t)p);
        const double pk32 = threads * ghz * s_flop_cycle((nr_cpu_path_t)p, 0),
                     pk16 = threads * ghz * s_flop_cycle((nr_cpu_path_t)p, 1);
        for (int s = 0; s < 4; s++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            double f = s_gemm_gflops(1, M, N, K), b = s_gemm_gflops(2, M, N, K), q = s == 0 ? 0 : s_gemm_gflops(3, M, N, K);
            if (s == 0) {
                bound[p][0] = f;
                bound[p][1] = b;
            }
            printf("path %-10s %5dx%4dx%3d %-27s f32 %7.1f (%3.0f%% of %5.0f)  bf16 %7.1f (%3.0f%% of %5.0f)", nr_cpu_path_name((nr_cpu_path_t)p),
                   M, N, K, what[s], f, 100 * f / pk32, pk32, b, 100 * b / pk16, pk16);
            if (s) printf("  int8 %6.1f", q);
            printf("\n");
        }
    }
    nr_cpu_path_set(keep);
}

int main(int argc, char **argv) {
    int threads = 0, batch = 8, iters = 3, tokens = 16;
    char precs[64] = "f32,bf16,int8", paths[96] = "";
    int gemm_table = 1; /* --no-gemm: the model runs only */
    const char *dump = NULL; /* --dump FILE: encoder states + one step's logits (to compare builds bit for bit) */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_models [--threads N] [--batch N] [--iters N] [--tokens N] [--precision LIST] [--blas]\n"
                   "                    [--paths LIST|all] [--no-gemm] [--dump FILE]  (encoder states + one decode step's logits)\n"
                   "  A GEMM table per CPU kernel path, then the model on each path in --paths (default: the one\n"
                   "  in use: NR_CPU_PATH or the best; generic, avx2, avx512, avx512bf16, amx).\n"
                   "  ViT-B/16 encoder images/s (batch 1 and --batch, default 8) with achieved GFLOP/s against\n"
                   "  the GEMMs measured in the same run, and GPT-2 decoder ms/token (1 row greedy, 4 rows beam,\n"
                   "  and per caption with 1, 4, 16 captions decoded together), random weights in memory,\n"
                   "  for each weight precision in LIST (comma-separated f32, bf16, int8; default all three:\n"
                   "  the devices cpu:f32, cpu:bf16, cpu:int8).\n");
            return 0;
        }
        if (!strcmp(argv[i], "--no-gemm")) {
            gemm_table = 0;
            continue;
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
        else if (!strcmp(argv[i], "--paths")) snprintf(paths, sizeof paths, "%s", argv[++i]);
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
    if (threads <= 0) threads = nr_cpu_pool_size();
    char desc[256];
    nr_cpu_describe(desc, sizeof desc);
    printf("bench_models: CPU %s\nweights %.0f MB F32, threads %d, large F32 matmuls: %s (OpenBLAS kernels %s)\n", desc,
           size / 1e6, threads, nr_cpu_gemm_own ? "own AVX-512 GEMM on the avx512 paths" : "OpenBLAS sgemm",
           openblas_get_corename());
    const int gm = S * batch;
    double bound[NR_CPU_PATH_COUNT][2] = {{0}};
    if (gemm_table) {
        printf("gemm %dx%dx%d: OpenBLAS sgemm %.1f GFLOP/s\n", gm, I, D, s_gemm_gflops(0, gm, I, D));
        s_gemm_table(threads, gm, I, D, bound);
    }
    nr_backend_destroy(&be0);
    const double vflops = s_vit_flops(S, D, I, L);
    float *px = malloc((size_t)batch * 3 * 224 * 224 * sizeof(float));
    float *states = malloc((size_t)(batch > 16 ? batch : 16) * S * D * sizeof(float));
    float *logits = malloc((size_t)16 * V * sizeof(float));
    if (!px || !states || !logits) return 1;
    for (size_t i = 0; i < (size_t)batch * 3 * 224 * 224; i++) px[i] = nr_bench_rand() * 30;
    if (!paths[0] || !strcmp(paths, "all")) {
        int n = 0;
        for (int p = 0; p < NR_CPU_PATH_COUNT; p++)
            if (paths[0] ? nr_cpu_path_supported((nr_cpu_path_t)p) : p == (int)nr_cpu_path())
                n += snprintf(paths + n, sizeof paths - (size_t)n, "%s%s", n ? "," : "", nr_cpu_path_name((nr_cpu_path_t)p));
    }
    char pathlist[96];
    snprintf(pathlist, sizeof pathlist, "%s", paths);
    for (char *psave = NULL, *pname = strtok_r(pathlist, ",", &psave); pname; pname = strtok_r(NULL, ",", &psave)) {
    const int path = nr_cpu_path_from_name(pname);
    if (path < 0 || nr_cpu_path_set((nr_cpu_path_t)path)) {
        fprintf(stderr, "bench: path %s: unknown or not on this CPU\n", pname);
        return 1;
    }
    const double *pb = bound[path];
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
        printf("== path %s, precision %s (device %s): load %.0f ms%s\n", pname, prec, dev, (s_now() - tl) * 1e3,
               strcmp(prec, "f32") ? " (weights converted at load)" : "");
        /* ViT */
        int bs[2] = {1, batch};
        /* the GEMM the encoder runs: BF16 on the amx path only (models/cpu/cpu.c s_lowp_rows) */
        const int bf = !strcmp(prec, "bf16") && path == NR_CPU_PATH_AMX;
        double bound = bf ? pb[1] : pb[0];
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
            printf("vit-b16 encoder  batch %d: %8.1f ms/batch  %6.2f images/s  %6.1f GFLOP/s", bs[k], best * 1e3,
                   bs[k] / best, gf);
            if (bound > 0) printf(" = %3.0f%% of the %s GEMM", 100.0 * gf / bound, bf ? "BF16" : "F32");
            printf("\n");
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
    }
    free(logits);
    free(px);
    free(states);
    nr_checkpoint_close(&ck);
    free(buf);
    return 0;
}
