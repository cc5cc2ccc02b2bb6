/* bench_git: GIT-base (microsoft/git-base-coco sizes) or, with --family blip
 * (the target bench_blip defaults to it), BLIP-base
 * (Salesforce/blip-image-captioning-base sizes), random weights built in
 * memory, through the family "git" / "blip" as the workers run it:
 *   - vision: GIT's CLIP ViT-B/16 + visual projection (224 px, 197 tokens),
 *     BLIP's ViT-B/16 (384 px, 577 tokens); images/s at batch 1 and B
 *   - text: set_encoder once per caption (GIT: the image tokens' K/V through
 *     the 6 decoder layers; BLIP: the cross-attention K/V of the 12 layers
 *     from the 577 image states), then decode steps over the text tokens:
 *     ms/token greedy (1 row) and beam 4 (4 rows, one image)
 *   - a whole caption per image: encode + generate (max_length 20 = the
 *     start token + 19 tokens; beam 4 and greedy)
 * for each weight precision (devices cpu:f32, cpu:bf16, cpu:int8), or for
 * each device of --device LIST instead (cuda:0, cuda:0:bf16, cpu ...: the
 * GPU runs, against bench_git_torch.py / bench_blip_torch.py --device cuda;
 * images and states then live in the device's memory, as in a worker).
 *   bench_git [--family git|blip] [--threads N] [--batch N] [--iters N] [--tokens N] [--precision f32,bf16,int8]
 *             [--device LIST] [--only encoder|decoder|caption] [--cpu-time] [--dir DIR [--load-only]]
 *             [--write-bf16 DIR]
 * --write-bf16 DIR writes the random checkpoint as a BF16 one (config.json,
 * model.safetensors) and stops; --dir DIR maps a checkpoint folder instead
 * of building the weights in memory; --load-only reports, per precision,
 * the load time and the resident memory after it (VmRSS, of it RssFile:
 * pages of the mapped file; VmHWM the peak), and stops there.
 * Every figure is the median of --iters timed runs after one warm-up; the
 * last lines ("result PREC KEY VALUE", the device name for PREC with
 * --device) are for bench/bench_git.sh and bench/gpu_compare.py.
 * PyTorch counterparts: bench/bench_git_torch.py, bench/bench_blip_torch.py. */
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
#include "models/generate.h"
#include "models/io/checkpoint.h"
#include "models/tensor.h"

/* --cpu-time: the process's CPU time instead of the wall clock, for A/B
 * runs with --threads 1 on a machine other work shares (a loaded core
 * stretches the wall clock, much less the CPU time). */
static clockid_t s_clock = CLOCK_MONOTONIC;

static double s_now(void) {
    struct timespec ts;
    clock_gettime(s_clock, &ts);
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

#define MAXIT 64


#ifndef NR_BENCH_FAMILY
#define NR_BENCH_FAMILY "git"
#endif

int main(int argc, char **argv) {
    int threads = 0, batch = 8, iters = 3, tokens = 19;
    char precs[64] = "f32,bf16,int8", devices[128] = "";
    const char *only = NULL; /* one part of the bench (quick A/B runs); every part by default */
    const char *family = NR_BENCH_FAMILY;
    const char *dir = NULL, *write_dir = NULL;
    int load_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_git [--family git|blip] [--threads N] [--batch N] [--iters N] [--tokens N] [--precision LIST]\n"
                   "                 [--device LIST] [--only PART] [--cpu-time] [--dir DIR [--load-only]] [--write-bf16 DIR]\n"
                   "  GIT-base (default of bench_git) or BLIP-base (--family blip, default of bench_blip) sizes,\n"
                   "  random weights: vision images/s at batch 1 and --batch (default 8); set_encoder (GIT: image\n"
                   "  K/V, BLIP: cross K/V); decode ms/token greedy and beam 4 over --tokens\n"
                   "  steps (default 19); a whole caption (encode + max_length 20, beam 4 and greedy) per image.\n"
                   "  Medians of --iters (default 3) runs, for each precision in LIST (f32, bf16, int8), or for\n"
                   "  each device of --device LIST instead (e.g. cuda:0,cuda:0:bf16 or cpu).\n"
                   "  --only encoder|decoder|caption runs that part alone (no result lines); --cpu-time times\n"
                   "  with the process's CPU time (for A/B runs with --threads 1 on a shared machine).\n"
                   "  --write-bf16 DIR writes the weights as a BF16 checkpoint and stops; --dir DIR maps a\n"
                   "  checkpoint folder instead; --load-only reports load time and resident memory, then stops.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--cpu-time")) {
            s_clock = CLOCK_PROCESS_CPUTIME_ID;
            continue;
        }
        if (!strcmp(argv[i], "--load-only")) {
            load_only = 1;
            continue;
        }
        if (i + 1 >= argc) break;
        if (!strcmp(argv[i], "--family")) family = argv[++i];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens")) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--precision")) snprintf(precs, sizeof precs, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--device")) snprintf(devices, sizeof devices, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--only")) only = argv[++i];
        else if (!strcmp(argv[i], "--dir")) dir = argv[++i];
        else if (!strcmp(argv[i], "--write-bf16")) write_dir = argv[++i];
    }
    if (only && strcmp(only, "encoder") && strcmp(only, "decoder") && strcmp(only, "caption")) {
        fprintf(stderr, "bench_git: --only takes encoder, decoder or caption\n");
        return 2;
    }
    if (batch < 1 || iters < 1 || iters > MAXIT || tokens < 1 || tokens > 1000) {
        fprintf(stderr, "bench_git: bad --batch/--iters/--tokens\n");
        return 2;
    }
    const int blip = !strcmp(family, "blip");
    if (!blip && strcmp(family, "git")) {
        fprintf(stderr, "bench_git: --family must be git or blip\n");
        return 2;
    }
    const nr_family_ops_t *F = blip ? &nr_family_blip : &nr_family_git;
    char err[1024];
    if (write_dir) {
        const int rc = nr_bench_write_bf16(family, write_dir, err, sizeof err);
        if (rc) fprintf(stderr, "bench_git: %s\n", err);
        return rc ? 1 : 0;
    }
    nr_model_config_t cfg;
    size_t size = 0;
    unsigned char *buf = NULL;
    nr_checkpoint_t *ck = NULL;
    if (dir ? (nr_model_config_load(dir, &cfg, err, sizeof err) || nr_checkpoint_open_dir(dir, &ck, err, sizeof err))
            : (blip ? nr_bench_random_blip : nr_bench_random_git)(&cfg, &buf, &size, &ck, err, sizeof err)) {
        fprintf(stderr, "bench_git: %s\n", err);
        return 1;
    }
    const int S = cfg.states_seq, D = cfg.states_hidden, V = cfg.vocab_size, IMG = cfg.image_size;
    char wdesc[1100];
    if (dir) snprintf(wdesc, sizeof wdesc, "from %s", dir);
    else snprintf(wdesc, sizeof wdesc, "%.0f MB F32", size / 1e6);
    if (blip)
        printf("bench_git: BLIP-base sizes (ViT-B/16 %d px, %d image tokens, text decoder %d layers x %d with "
               "cross-attention, vocab %d), weights %s, threads %d, CPU kernel path %s\n",
               IMG, S, cfg.blip.num_hidden_layers, cfg.blip.hidden_size, V, wdesc, threads,
               nr_cpu_path_name(nr_cpu_path()));
    else
        printf("bench_git: GIT-base sizes (CLIP ViT-B/16 %d px, %d image tokens, decoder %d layers x %d, vocab %d), "
               "weights %s, threads %d, CPU kernel path %s\n",
               IMG, S, cfg.git.num_hidden_layers, cfg.git.hidden_size, V, wdesc, threads,
               nr_cpu_path_name(nr_cpu_path()));
    const char *vname = blip ? "ViT-B/16 384 px" : "CLIP ViT-B/16 + projection";
    const size_t npx = (size_t)3 * IMG * IMG;
    float *px = malloc((size_t)batch * npx * sizeof(float));
    float *states = nr_aligned_alloc((size_t)batch * S * D * sizeof(float));
    float *logits = malloc((size_t)4 * V * sizeof(float));
    if (!px || !states || !logits) return 1;
    for (size_t i = 0; i < (size_t)batch * npx; i++) px[i] = nr_bench_rand() * 30;
    for (size_t i = 0; i < (size_t)batch * S * D; i++) states[i] = nr_bench_rand(); /* until an encode writes them */
    char plist[128];
    snprintf(plist, sizeof plist, "%s", devices[0] ? devices : precs);
    for (char *save = NULL, *prec = strtok_r(plist, ",", &save); prec; prec = strtok_r(NULL, ",", &save)) {
        char dev[64];
        snprintf(dev, sizeof dev, devices[0] ? "%s" : "cpu:%s", prec);
        double tl = s_now();
        nr_backend_t *be = nr_backend_new(dev, threads, err, sizeof err);
        void *fam = NULL;
        if (!be || F->load(&cfg, ck, be, 1, 1, &fam, err, sizeof err)) {
            fprintf(stderr, "bench_git: %s\n", err);
            return 1;
        }
        /* images and states in the backend's memory (the same buffers on the CPU) */
        float *dpx = be->host_memory ? px : nr_backend_upload_new(be, px, (size_t)batch * npx * sizeof(float));
        float *dst = be->host_memory ? states : nr_backend_upload_new(be, states, (size_t)batch * S * D * sizeof(float));
        if (!dpx || !dst) {
            fprintf(stderr, "bench_git: %s: cannot place the images and states\n", dev);
            return 1;
        }
        printf("== precision %s (device %s): load %.0f ms, resident %ld MB (%ld MB of it mapped files, peak %ld MB)\n",
               prec, dev, (s_now() - tl) * 1e3, nr_bench_status_mb("VmRSS"), nr_bench_status_mb("RssFile"), nr_bench_status_mb("VmHWM"));
        if (load_only) {
            F->destroy(&fam);
            nr_backend_destroy(&be);
            continue;
        }
        double t[MAXIT];
        /* vision: CLIP + projection */
        int bs[2] = {1, batch};
        double ips[2];
        for (int k = 0; k < 2 && (!only || !strcmp(only, "encoder")); k++) {
            F->encode(fam, dpx, bs[k], dst); /* warm-up (and lazy weight conversions) */
            for (int it = 0; it < iters; it++) {
                double t0 = s_now();
                if (F->encode(fam, dpx, bs[k], dst)) return 1;
                t[it] = s_now() - t0;
            }
            double md = s_median(t, iters);
            ips[k] = bs[k] / md;
            printf("encoder (%s) batch %d: %8.1f ms/batch  %6.2f images/s (fastest %.1f ms)\n", vname, bs[k], md * 1e3,
                   ips[k], t[0] * 1e3); /* t sorted by s_median */
        }
        nr_decoder_t dec = F->decoder(fam);
        /* decode steps: greedy (1 row) and beam 4 (4 rows, one image) */
        double setup = 0, msg[2];
        int rows_list[2] = {1, 4};
        for (int k = 0; k < 2 && (!only || !strcmp(only, "decoder")); k++) {
            int rows = rows_list[k];
            void *s = dec.ops->state_new(dec.model, rows, tokens + 1, 1, S);
            if (!s) return 1;
            int ids[4], eidx[4] = {0, 0, 0, 0};
            double ts[MAXIT], tx[MAXIT];
            for (int it = -1; it < iters; it++) { /* it -1 warms up */
                double t0 = s_now();
                if (dec.ops->set_encoder(dec.model, s, dst, eidx)) return 1;
                double t1 = s_now();
                for (int r = 0; r < rows; r++) ids[r] = cfg.gen.decoder_start_token_id;
                for (int st = 0; st < tokens; st++) {
                    if (dec.ops->step(dec.model, s, ids, 1, logits, 0)) return 1;
                    for (int r = 0; r < rows; r++) ids[r] = 1000 + (int)((st * 7919 + r * 104729) % (V - 1000));
                }
                if (it >= 0) tx[it] = t1 - t0, ts[it] = (s_now() - t1) / tokens;
            }
            dec.ops->state_destroy(&s);
            msg[k] = s_median(ts, iters);
            if (k == 0) setup = s_median(tx, iters);
            const double setup_k = s_median(tx, iters);
            printf("decoder %s: %8.2f ms/token (step of %d row%s, %d steps; fastest %.2f), %s K/V setup %.1f ms "
                   "(fastest %.1f)\n",
                   rows == 1 ? "greedy" : "beam 4", msg[k] * 1e3, rows, rows > 1 ? "s" : "", tokens, ts[0] * 1e3,
                   blip ? "cross" : "image", setup_k * 1e3, tx[0] * 1e3);
        }
        /* a whole caption per image: encode + generate, max_length 20 */
        double cap[2];
        int beams_list[2] = {4, 1};
        for (int k = 0; k < 2 && (!only || !strcmp(only, "caption")); k++) {
            nr_gen_config_t g = cfg.gen;
            g.num_beams = beams_list[k];
            g.max_length = 20;
            g.early_stopping = 1;
            int out_ids[20], out_len[1];
            for (int it = -1; it < iters; it++) {
                double t0 = s_now();
                if (F->encode(fam, dpx, 1, dst) ||
                    nr_generate(&dec, dst, 1, S, &g, out_ids, out_len, err, sizeof err)) {
                    fprintf(stderr, "bench_git: %s\n", err);
                    return 1;
                }
                if (it >= 0) t[it] = s_now() - t0;
            }
            cap[k] = s_median(t, iters);
            printf("caption (encode + generate), beams %d, max_length 20: %8.1f ms per image (%d ids; fastest %.1f)\n",
                   g.num_beams, cap[k] * 1e3, out_len[0], t[0] * 1e3);
        }
        if (!only)
            printf("result %s enc_b1_ips %.3f\nresult %s enc_b%d_ips %.3f\nresult %s kv_setup_ms %.2f\n"
               "result %s greedy_ms_tok %.3f\nresult %s beam4_ms_step %.3f\nresult %s caption_beam4_ms %.1f\n"
               "result %s caption_greedy_ms %.1f\n",
               prec, ips[0], prec, batch, ips[1], prec, setup * 1e3, prec, msg[0] * 1e3, prec, msg[1] * 1e3, prec,
               cap[0] * 1e3, prec, cap[1] * 1e3);
        fflush(stdout);
        F->destroy(&fam);
        if (dpx != px) nr_backend_free(be, dpx);
        if (dst != states) nr_backend_free(be, dst);
        nr_backend_destroy(&be);
    }
    free(logits);
    free(px);
    free(states);
    nr_checkpoint_close(&ck);
    free(buf);
    return 0;
}
