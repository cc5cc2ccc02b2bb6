/* bench_cuda: the ViT-B/16 encoder (images/s) and the GPT-2 decoder with
 * cross-attention (ms per decode step, tokens/s) on a GPU through the CUDA
 * backend, at batch 1..64, with the sizes of
 * nlpconnect/vit-gpt2-image-captioning and random weights built in memory
 * (no file, no download). Compare with bench/bench_cuda_torch.py on the
 * same GPU (same sizes, same steps; PyTorch eager and torch.compile).
 *
 *   bench_cuda [--device cuda:0] [--batches 1,2,4,8,16,32,64] [--iters N]
 *              [--warmup N] [--tokens N] [--json FILE]
 *
 * Encoder: pixels and states stay in device memory; one timed call is one
 * nr_vit_forward (it ends with a stream synchronize). Decoder: per batch B,
 * "greedy" = B rows each cross-attending its own image, "beam4" = 4B rows
 * sharing B images' encoder K/V (kv_index); one step = nr_gpt2_step of all
 * rows, including the download of the rows' logits to the host (as
 * generate.c uses them). Times are medians over --iters. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/random_weights.h"
#include "common/error.h"
#include "models/backend.h"
#include "models/config.h"
#include "models/gpt2.h"
#include "models/io/checkpoint.h"
#include "models/tensor.h"
#include "models/vit.h"
#ifdef NR_HAVE_CUDA
#include "models/cuda/backend_cuda.h"
#endif

#define S_D 768
#define S_V 50257
#define S_SEQ 197

/* ---- timing ---- */

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int s_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double s_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, s_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void s_usage(void) {
    printf("usage: bench_cuda [--device cuda:0] [--batches 1,2,4,8,16,32,64] [--iters N] [--warmup N]\n"
           "                  [--tokens N] [--json FILE]\n"
           "  ViT-B/16 encoder images/s and GPT-2 decoder ms/step (greedy: B rows, beam4: 4B rows)\n"
           "  through the narrator backend on --device, random weights in memory.\n"
           "  Compare: /usr/bin/python3 bench/bench_cuda_torch.py (same GPU).\n");
}

int main(int argc, char **argv) {
    const char *device = "cuda:0", *json_path = NULL;
    char batches_s[256] = "1,2,4,8,16,32,64";
    int iters = 10, warmup = 3, tokens = 16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            s_usage();
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_cuda: %s needs a value (see --help)\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--device")) device = argv[++i];
        else if (!strcmp(argv[i], "--batches")) snprintf(batches_s, sizeof batches_s, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens")) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json_path = argv[++i];
        else {
            fprintf(stderr, "bench_cuda: unknown option %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    int batches[32], nb = 0, maxb = 1;
    for (char *t = strtok(batches_s, ","); t && nb < 32; t = strtok(NULL, ",")) {
        int b = atoi(t);
        if (b < 1 || b > 256) {
            fprintf(stderr, "bench_cuda: batch %s outside 1..256\n", t);
            return 2;
        }
        batches[nb++] = b;
        maxb = b > maxb ? b : maxb;
    }
    if (nb == 0 || iters < 1 || warmup < 0 || tokens < 1 || tokens > 1000) {
        fprintf(stderr, "bench_cuda: bad --batches, --iters, --warmup or --tokens\n");
        return 2;
    }
    char err[1024];
    nr_model_config_t cfg;
    size_t size = 0;
    unsigned char *buf = NULL;
    nr_checkpoint_t *ck = NULL;
    if (nr_bench_random_vit_gpt2(&cfg, &buf, &size, &ck, err, sizeof err)) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    nr_backend_t *be = nr_backend_new(device, 0, err, sizeof err);
    if (!be) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    nr_vit_t *vit = NULL;
    nr_gpt2_t *gpt2 = NULL;
    if (nr_vit_load(&cfg.vit, ck, "encoder.", be, &vit, err, sizeof err) ||
        nr_gpt2_load(&cfg.gpt2, ck, "decoder.", be, &gpt2, err, sizeof err)) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    char desc[256] = "";
#ifdef NR_HAVE_CUDA
    if (!be->host_memory) {
        int idx = strncmp(device, "cuda:", 5) == 0 ? atoi(device + 5) : 0;
        nr_cuda_device_describe(idx, desc, sizeof desc);
    }
#endif
    printf("bench_cuda: device %s %s, weights %.0f MB F32, iters %d (median), warmup %d, tokens %d\n", device, desc,
           (double)size / 1e6, iters, warmup, tokens);
    FILE *js = json_path ? fopen(json_path, "w") : NULL;
    if (json_path && !js) {
        fprintf(stderr, "bench_cuda: cannot write %s\n", json_path);
        return 1;
    }
    if (js) fprintf(js, "{\"impl\":\"narrator\",\"device\":\"%s\",\"gpu\":\"%s\",\"vit\":[", device, desc);

    /* Encoder inputs for the largest batch, in backend memory. */
    const size_t in1 = (size_t)3 * 224 * 224, out1 = (size_t)S_SEQ * S_D;
    float *px = malloc((size_t)maxb * in1 * sizeof(float));
    if (!px) return 1;
    for (size_t i = 0; i < (size_t)maxb * in1; i++) px[i] = nr_bench_rand() * 30;
    float *dpx = nr_backend_upload_new(be, px, (size_t)maxb * in1 * sizeof(float));
    float *dstates = be->ops->alloc(be->ctx, (size_t)maxb * out1 * sizeof(float));
    double *t = malloc((size_t)(iters > tokens ? iters : tokens) * sizeof(double));
    if (!dpx || !dstates || !t) {
        fprintf(stderr, "bench_cuda: out of device memory for batch %d\n", maxb);
        return 1;
    }
    int rc = 0;
    for (int k = 0; k < nb && rc == 0; k++) {
        const int B = batches[k];
        for (int w = 0; w < warmup && rc == 0; w++) rc = nr_vit_forward(vit, dpx, B, dstates);
        for (int it = 0; it < iters && rc == 0; it++) {
            double t0 = s_now();
            rc = nr_vit_forward(vit, dpx, B, dstates);
            t[it] = s_now() - t0;
        }
        if (rc) break;
        double ms = s_median(t, iters) * 1e3;
        printf("vit-b16 encoder  batch %3d: %9.2f ms/batch  %9.1f images/s\n", B, ms, B / ms * 1e3);
        if (js) fprintf(js, "%s{\"batch\":%d,\"ms\":%.4f,\"images_per_s\":%.2f}", k ? "," : "", B, ms, B / ms * 1e3);
    }
    if (js) fprintf(js, "],\"gpt2\":[");
    /* Decoder: states of maxb images are in dstates (the last encoder run). */
    float *logits = malloc((size_t)4 * maxb * S_V * sizeof(float));
    int *ids = malloc((size_t)4 * maxb * sizeof(int)), *encix = malloc((size_t)4 * maxb * sizeof(int));
    if (!logits || !ids || !encix) return 1;
    int first = 1;
    for (int k = 0; k < nb && rc == 0; k++) {
        for (int beam = 0; beam < 2 && rc == 0; beam++) {
            const int B = batches[k], R = beam ? 4 * B : B;
            nr_gpt2_state_t *s = nr_gpt2_state_new(gpt2, R, tokens + 1, B, S_SEQ);
            if (!s) {
                fprintf(stderr, "bench_cuda: no memory for %d decoder rows\n", R);
                rc = NR_ENOMEM;
                break;
            }
            for (int r = 0; r < R; r++) encix[r] = beam ? r / 4 : r;
            double tx = 0;
            for (int rep = 0; rep <= warmup && rc == 0; rep++) { /* rep 0..warmup-1 warm, last timed */
                double t0 = s_now();
                rc = nr_gpt2_set_encoder(gpt2, s, dstates, encix);
                if (rc == 0) rc = be->ops->synchronize(be->ctx);
                tx = s_now() - t0;
                for (int r = 0; r < R; r++) ids[r] = 50256;
                for (int j = 0; j < tokens && rc == 0; j++) {
                    double t1 = s_now();
                    rc = nr_gpt2_step(gpt2, s, ids, 1, logits, 0);
                    t[j] = s_now() - t1;
                    for (int r = 0; r < R; r++) ids[r] = (int)(((long)j * 7919 + (long)r * 104729) % S_V);
                }
            }
            nr_gpt2_state_destroy(&s);
            if (rc) break;
            double ms = s_median(t, tokens) * 1e3;
            printf("gpt2 decoder %-6s batch %3d (rows %3d): %8.3f ms/step  %9.1f tokens/s  cross K/V %.2f ms\n",
                   beam ? "beam4" : "greedy", B, R, ms, R / ms * 1e3, tx * 1e3);
            if (js)
                fprintf(js, "%s{\"mode\":\"%s\",\"batch\":%d,\"rows\":%d,\"ms_per_step\":%.4f,\"tokens_per_s\":%.2f,"
                            "\"cross_kv_ms\":%.4f}",
                        first ? "" : ",", beam ? "beam4" : "greedy", B, R, ms, R / ms * 1e3, tx * 1e3);
            first = 0;
        }
    }
    if (js) {
        fprintf(js, "]}\n");
        fclose(js);
    }
    if (rc) {
#ifdef NR_HAVE_CUDA
        fprintf(stderr, "bench_cuda: %s %s\n", nr_strerror(rc), nr_backend_cuda_last_error(be));
#else
        fprintf(stderr, "bench_cuda: %s\n", nr_strerror(rc));
#endif
    }
    be->ops->free(be->ctx, dpx);
    be->ops->free(be->ctx, dstates);
    free(px);
    free(t);
    free(logits);
    free(ids);
    free(encix);
    nr_vit_destroy(&vit);
    nr_gpt2_destroy(&gpt2);
    nr_backend_destroy(&be);
    nr_checkpoint_close(&ck);
    free(buf);
    return rc ? 1 : 0;
}
