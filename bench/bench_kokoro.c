/* bench_kokoro: Kokoro real-time factor (synthesis time / audio length) of
 * models/speech/kokoro.c on a model folder (bench/bench_kokoro.sh makes one
 * with Kokoro-82M's sizes and random weights) for the phonemes in
 * DIR/phonemes.txt; best of --iters runs. Prints one "result" line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/speech/kokoro.h"

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *voice = "af_bench";
    int iters = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--voice") && i + 1 < argc) voice = argv[++i];
        else dir = argv[i];
    }
    if (!dir || iters < 1) {
        fprintf(stderr, "usage: bench_kokoro DIR [--iters N] [--voice NAME]\n");
        return 2;
    }
    char path[4096], err[512], ph[4096];
    snprintf(path, sizeof path, "%s/phonemes.txt", dir);
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(ph, 1, sizeof ph - 1, f) : 0;
    if (f) fclose(f);
    if (!n) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    ph[n] = 0;
    nr_kokoro_t *k = NULL;
    double t0 = s_now();
    if (nr_kokoro_load(dir, NULL, &k, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double load = s_now() - t0, best = 1e30;
    size_t samples = 0;
    for (int i = 0; i < iters; i++) {
        float *pcm = NULL;
        t0 = s_now();
        if (nr_kokoro_synthesize(k, ph, n, voice, 1.f, &pcm, &samples, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        double dt = s_now() - t0;
        best = dt < best ? dt : best;
        free(pcm);
    }
    double secs = (double)samples / nr_kokoro_sample_rate(k);
    printf("result narrator load_s=%.2f audio_s=%.3f best_s=%.3f rtf=%.4f\n", load, secs, best, best / secs);
    nr_kokoro_destroy(&k);
    return 0;
}
