/* bench_paligemma: PaliGemma-3B-224 shapes (random weights built in memory)
 * through the family "paligemma" as the workers run it:
 *   - vision: SigLIP-So400m/14 at 224 px (27 layers of 1152, 256 image
 *     tokens) + projector: ms per image (batch 1)
 *   - text: the prefix step (256 image tokens + <bos> "caption en\n", 6
 *     text tokens, bidirectional) and greedy decode steps (1 row) over
 *     Gemma-2B layers (hidden 2048, 8 heads of 256, 1 KV head, MLP 16384)
 * for each weight precision (cpu:f32, cpu:bf16, cpu:int8), or each device
 * of --device LIST instead (cuda:0, cuda:0:bf16 ...: against
 * bench_paligemma_torch.py --device cuda). The real text
 * side has 18 layers and 257216 ids (10 GB in F32): --layers (default 4)
 * and --vocab (default 32768) scale it to what the machine holds; the
 * per-layer cost is printed so the full model can be estimated. --dir DIR
 * reads a checkpoint folder instead (bench/make_paligemma_checkpoint.py:
 * the full 3B shape in BF16, sharded safetensors, mapped as the workers
 * map it) and reports the load time, the resident memory after load (and
 * how much of it is mapped files) and the process's peak; --load-only stops
 * there.
 *   bench_paligemma [--threads N] [--iters N] [--tokens N] [--layers N] [--vocab N] [--precision LIST] [--dir DIR]
 *                   [--device LIST] [--load-only]
 * Medians of --iters runs after one warm-up; "result PREC KEY VALUE" lines
 * for bench/bench_paligemma.sh. PyTorch counterpart: bench_paligemma_torch.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/random_weights.h"
#include "common/error.h"
#include "models/backend.h"
#include "models/config.h"
#include "models/cpu/dispatch.h"
#include "models/cpu/lowp.h"
#include "models/decoder.h"
#include "models/family.h"
#include "models/io/checkpoint.h"
#include "models/tensor.h"

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int s_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), s_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}


#define MAXIT 32

int main(int argc, char **argv) {
    int threads = 0, iters = 3, tokens = 16, layers = 4, vocab = 32768;
    char precs[64] = "f32,bf16,int8", devices[128] = "";
    const char *dir = NULL;
    int load_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_paligemma [--threads N] [--iters N] [--tokens N] [--layers N] [--vocab N] "
                   "[--precision LIST] [--dir DIR] [--device LIST] [--load-only]\n"
                   "  --device LIST: these devices (cuda:0,cuda:0:bf16, cpu ...) instead of cpu:PREC per precision\n");
            return 0;
        }
        if (!strcmp(argv[i], "--load-only")) {
            load_only = 1;
            continue;
        }
        if (i + 1 >= argc) break;
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens")) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--layers")) layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--vocab")) vocab = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--precision")) snprintf(precs, sizeof precs, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--dir")) dir = argv[++i];
        else if (!strcmp(argv[i], "--device")) snprintf(devices, sizeof devices, "%s", argv[++i]);
    }
    if (iters < 1 || iters > MAXIT || tokens < 1 || tokens > 200) {
        fprintf(stderr, "bench_paligemma: bad --iters/--tokens\n");
        return 2;
    }
    char err[1024];
    nr_model_config_t cfg;
    size_t size;
    unsigned char *buf = NULL;
    nr_checkpoint_t *ck = NULL;
    if (dir ? (nr_model_config_load(dir, &cfg, err, sizeof err) || nr_checkpoint_open_dir(dir, &ck, err, sizeof err))
            : nr_bench_random_paligemma(layers, vocab, &cfg, &buf, &size, &ck, err, sizeof err)) {
        fprintf(stderr, "bench_paligemma: %s\n", err);
        return 1;
    }
    const nr_family_ops_t *F = &nr_family_paligemma;
    const int S = cfg.states_seq, D = cfg.states_hidden, V = cfg.vocab_size, IMG = cfg.image_size;
    if (dir) layers = cfg.paligemma.num_hidden_layers;
    printf("bench_paligemma: SigLIP-So400m/14 %d px (%d image tokens) + Gemma-2B layers x %d (of 18), vocab %d "
           "(of 257216), weights %s, threads %d, CPU kernel path %s\n",
           IMG, S, layers, V, dir ? dir : "random F32 in memory", threads, nr_cpu_path_name(nr_cpu_path()));
    const size_t npx = (size_t)3 * IMG * IMG;
    float *px = malloc(npx * sizeof(float));
    float *states = nr_aligned_alloc((size_t)S * D * sizeof(float));
    float *logits = malloc((size_t)V * sizeof(float));
    if (!px || !states || !logits) return 1;
    for (size_t i = 0; i < npx; i++) px[i] = nr_bench_rand() * 30;
    int prompt[5] = {2, 303, 5765, 1149, 108}; /* stand-ins for <bos> "caption en" "\n" */
    for (int k = 0; k < 5; k++) prompt[k] %= V;
    char plist[128];
    snprintf(plist, sizeof plist, "%s", devices[0] ? devices : precs);
    for (char *save = NULL, *prec = strtok_r(plist, ",", &save); prec; prec = strtok_r(NULL, ",", &save)) {
        char dev[64];
        snprintf(dev, sizeof dev, devices[0] ? "%s" : "cpu:%s", prec);
        double tl = s_now();
        nr_backend_t *be = nr_backend_new(dev, threads, err, sizeof err);
        void *fam = NULL;
        if (!be || F->load(&cfg, ck, be, 1, 1, &fam, err, sizeof err)) {
            fprintf(stderr, "bench_paligemma: %s\n", err);
            return 1;
        }
        /* the image and the states in the backend's memory (the same buffers on the CPU) */
        float *dpx = be->host_memory ? px : nr_backend_upload_new(be, px, npx * sizeof(float));
        float *dst = be->host_memory ? states : be->ops->alloc(be->ctx, (size_t)S * D * sizeof(float));
        if (!dpx || !dst) {
            fprintf(stderr, "bench_paligemma: %s: cannot place the image and states\n", dev);
            return 1;
        }
        const double load = s_now() - tl;
        const long rss = nr_bench_status_mb("VmRSS"), file = nr_bench_status_mb("RssFile");
        printf("== precision %s (device %s): load %.0f ms, resident %ld MB (%ld MB of it mapped files)\n", prec, dev,
               load * 1e3, rss, file);
        printf("result %s load_s %.2f\nresult %s rss_load_mb %ld\nresult %s rss_file_mb %ld\n", prec, load, prec, rss,
               prec, file);
        if (load_only) {
            printf("result %s rss_peak_mb %ld\n", prec, nr_bench_status_mb("VmHWM"));
            F->destroy(&fam);
            if (dpx != px) nr_backend_free(be, dpx);
            if (dst != states) nr_backend_free(be, dst);
            nr_backend_destroy(&be);
            continue;
        }
        double t[MAXIT], tp[MAXIT], ts[MAXIT];
        F->encode(fam, dpx, 1, dst); /* warm-up (and lazy weight conversions) */
        for (int it = 0; it < iters; it++) {
            double t0 = s_now();
            int rc = F->encode(fam, dpx, 1, dst);
            if (rc) {
                fprintf(stderr, "bench_paligemma: encode: %s\n", nr_strerror(rc));
                return 1;
            }
            t[it] = s_now() - t0;
        }
        const double enc = s_median(t, iters);
        printf("SigLIP-So400m + projector, 1 image: %8.1f ms\n", enc * 1e3);
        nr_decoder_t dec = F->decoder(fam);
        void *s = dec.ops->state_new(dec.model, 1, 5 + tokens + 1, 1, S);
        if (!s) {
            fprintf(stderr, "bench_paligemma: no decoder state\n");
            return 1;
        }
        for (int it = -1; it < iters; it++) {
            double t0 = s_now();
            int rc = dec.ops->set_encoder(dec.model, s, dst, NULL);
            if (rc == 0) rc = dec.ops->step(dec.model, s, prompt, 5, logits, 0);
            if (rc) {
                fprintf(stderr, "bench_paligemma: the prefix step: %s\n", nr_strerror(rc));
                return 1;
            }
            double t1 = s_now();
            int id = 1000 % V;
            for (int st = 0; st < tokens; st++) {
                if ((rc = dec.ops->step(dec.model, s, &id, 1, logits, 0))) {
                    fprintf(stderr, "bench_paligemma: a decode step: %s\n", nr_strerror(rc));
                    return 1;
                }
                id = (1000 + st * 7919) % V;
            }
            if (it >= 0) tp[it] = t1 - t0, ts[it] = (s_now() - t1) / tokens;
        }
        dec.ops->state_destroy(&s);
        const double pre = s_median(tp, iters), step = s_median(ts, iters);
        printf("prefix step (%d image + 5 text tokens): %8.1f ms; decode %8.2f ms/token (greedy, %d steps)\n", S,
               pre * 1e3, step * 1e3, tokens);
        printf("result %s siglip_ms %.1f\nresult %s prefix_ms %.1f\nresult %s decode_ms_tok %.2f\n", prec, enc * 1e3,
               prec, pre * 1e3, prec, step * 1e3);
        printf("result %s rss_peak_mb %ld\n", prec, nr_bench_status_mb("VmHWM"));
        fflush(stdout);
        F->destroy(&fam);
        if (dpx != px) nr_backend_free(be, dpx);
        if (dst != states) nr_backend_free(be, dst);
        nr_backend_destroy(&be);
    }
    nr_checkpoint_close(&ck);
    free(buf);
    free(px);
    free(states);
    free(logits);
    return 0;
}
