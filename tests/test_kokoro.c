/* Tests for the Kokoro engine (models/speech/kokoro.c) on the tiny random
 * checkpoint of tests/fixtures/reference_kokoro.py (published layout:
 * config.json, kokoro-v1_0.pth with "module." names and weight_norm pairs,
 * voices/NAME.pt): durations equal the reference's exactly; intermediates and
 * audio agree within a tolerance relative to each tensor's peak; bad
 * voices, phonemes, speeds and files give clear errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "models/io/safetensors.h"
#include "models/nn/conv1d.h"
#include "models/nn/lstm.h"
#include "models/speech/kokoro.h"
#include "models/speech/kokoro_internal.h"

/* Max |c - ref| / max |ref|, per tensor. The float32 reference and this
 * engine sum in different orders (~1e-7 apart). End to end, the sine
 * source integrates F0 into a phase of up to ~1e4 rad, so F0's 1e-7
 * becomes ~3e-4 in the harmonic source (TOL_PHASE) and in the audio; run
 * on the reference's own F0 (decoder_matches_...) the audio agrees to
 * ~1e-6. */
#define TOL_INTER 1e-4
#define TOL_PHASE 2e-3
#define TOL_AUDIO 1e-3

static void s_path(char *buf, size_t n, const char *name) {
    const char *s = getenv("NR_SOURCE_DIR");
    snprintf(buf, n, "%s/tests/fixtures/%s", s ? s : ".", name);
}

static nr_kokoro_t *s_load(void) {
    char dir[512], err[512] = "";
    s_path(dir, sizeof dir, "kokoro-tiny");
    nr_kokoro_params_t p = nr_kokoro_default_params();
    nr_kokoro_t *k = NULL;
    cr_assert_eq(nr_kokoro_load(dir, &p, &k, err, sizeof err), 0, "%s", err);
    return k;
}

/* Max |a - r| / max |r| over n values. */
static double s_rel(const float *a, const float *r, size_t n, const char *what) {
    double peak = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(a[i]), "%s[%zu] is not finite", what, i);
        peak = fmax(peak, fabs(r[i]));
        d = fmax(d, fabs((double)a[i] - r[i]));
    }
    return peak > 0 ? d / peak : d;
}

static double s_rel_diff(const float *a, const nr_named_tensor_t *ref, size_t n) {
    cr_assert_eq(ref->nbytes, n * sizeof(float), "%s: %zu values, reference has %zu", ref->name, n, ref->nbytes / 4);
    return s_rel(a, ref->data, n, ref->name);
}

static const struct {
    const char *ph, *voice;
    float speed;
    uint64_t seed;
} s_cases[] = {
    {"həlˈoʊ wˈɜːld", "af_test", 1.0f, 1},
    {"ðə kˈæt sˈæt.", "bm_test", 1.3f, 2},
    {"ˈɑ, ˈi; ˈu!", "af_test", 0.8f, 3},
};

Test(kokoro, matches_the_reference) {
    nr_kokoro_t *k = s_load();
    char path[512], err[512] = "";
    s_path(path, sizeof path, "kokoro-tiny-reference.safetensors");
    nr_safetensors_t *ref = NULL;
    cr_assert_eq(nr_safetensors_open(path, &ref, err, sizeof err), 0, "%s", err);
    for (size_t c = 0; c < sizeof s_cases / sizeof s_cases[0]; c++) {
        float *pcm = NULL;
        size_t n = 0;
        nr_ko_trace_t tr = {0};
        int rc = nr_kokoro_synthesize_ex(k, s_cases[c].ph, strlen(s_cases[c].ph), s_cases[c].voice, s_cases[c].speed,
                                         s_cases[c].seed, &pcm, &n, &tr, err, sizeof err);
        cr_assert_eq(rc, 0, "case %zu: %s", c, err);
        char name[64];
#define S_REF(what) (snprintf(name, sizeof name, "case%zu.%s", c, what), nr_safetensors_find(ref, name))
        const nr_named_tensor_t *dur = S_REF("durations");
        cr_assert_not_null(dur);
        cr_assert_eq(dur->shape[0], tr.T, "case %zu: %d tokens, reference %lld", c, tr.T, (long long)dur->shape[0]);
        cr_assert_eq(memcmp(dur->data, tr.durations, (size_t)tr.T * sizeof(int64_t)), 0, "case %zu: durations differ",
                     c);
        int H = 16, S = 8, Hb = 24;
        struct {
            const char *what;
            const float *v;
            size_t n;
        } cmp[] = {
            {"bert", tr.bert, (size_t)tr.T * Hb}, {"d", tr.d, (size_t)tr.T * (H + S)}, {"t_en", tr.t_en, (size_t)tr.T * H},
            {"f0", tr.f0, 2 * (size_t)tr.frames}, {"n", tr.n, 2 * (size_t)tr.frames}, {"har", tr.har, n},
        };
        for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
            const nr_named_tensor_t *t = S_REF(cmp[i].what);
            cr_assert_not_null(t, "%s", name);
            double d = s_rel_diff(cmp[i].v, t, cmp[i].n);
            cr_log_info("case %zu %s: max diff / peak %.3g", c, cmp[i].what, d);
            double tol = strcmp(cmp[i].what, "har") ? TOL_INTER : TOL_PHASE;
            cr_assert(d <= tol, "case %zu %s: max diff / peak %.3g over %.0e", c, cmp[i].what, d, tol);
        }
        const nr_named_tensor_t *au = S_REF("audio");
        cr_assert_not_null(au);
        cr_assert_eq((size_t)au->shape[0], n, "case %zu: %zu samples, reference %lld", c, n, (long long)au->shape[0]);
        double d = s_rel_diff(pcm, au, n);
        cr_log_info("case %zu audio: %zu samples, max diff / peak %.3g", c, n, d);
        cr_assert(d <= TOL_PHASE, "case %zu audio: max diff / peak %.3g over %.0e", c, d, TOL_PHASE);
        free(pcm);
        free(tr.bert);
        free(tr.d);
        free(tr.t_en);
        free(tr.f0);
        free(tr.n);
        free(tr.durations);
        free(tr.har);

    }
    nr_safetensors_close(&ref);
    nr_kokoro_destroy(&k);
    nr_kokoro_destroy(&k); /* safe twice */
    cr_assert_null(k);
}

/* The decoder and generator alone, on the reference's own inputs (its
 * text encoder output expanded by its durations, its F0 and energy): the
 * sine source's phase reaches ~1e4 rad, so the end-to-end audio can only
 * match where F0 is bitwise the reference's. */
Test(kokoro, decoder_matches_the_reference_on_its_inputs) {
    nr_kokoro_t *k = s_load();
    char path[512], err[512] = "";
    s_path(path, sizeof path, "kokoro-tiny-reference.safetensors");
    nr_safetensors_t *ref = NULL;
    cr_assert_eq(nr_safetensors_open(path, &ref, err, sizeof err), 0, "%s", err);
    const nr_ko_net_t *m = nr_kokoro_net(k);
    for (size_t c = 0; c < sizeof s_cases / sizeof s_cases[0]; c++) {
        char name[64];
        const nr_named_tensor_t *dur = S_REF("durations"), *te = S_REF("t_en"), *f0 = S_REF("f0"), *nn = S_REF("n"),
                                *au = S_REF("audio"), *har = S_REF("har");
        cr_assert(dur && te && f0 && nn && au && har);
        int T = (int)dur->shape[0], H = (int)te->shape[0], F = 0;
        const int64_t *d = dur->data;
        for (int t = 0; t < T; t++) F += (int)d[t];
        cr_assert_eq(f0->shape[0], 2 * F);
        float *asr = malloc((size_t)H * F * sizeof(float));
        const float *tev = te->data;
        for (int h = 0; h < H; h++)
            for (int t = 0, f = 0; t < T; t++)
                for (int64_t r = 0; r < d[t]; r++, f++) asr[(size_t)h * F + f] = tev[(size_t)h * T + t];
        const float *st = nr_kokoro_style(k, s_cases[c].voice, (int)strlen(s_cases[c].ph) ? T - 2 : 0);
        cr_assert_not_null(st);
        float *pcm = NULL, *h = NULL, *spec = NULL;
        size_t n = 0;
        cr_assert_eq(nr_ko_decode(m, asr, F, f0->data, nn->data, st, s_cases[c].seed, &pcm, &n, &h, &spec), 0);
        cr_assert_eq((size_t)au->shape[0], n);
        double dh = s_rel_diff(h, har, n), da = s_rel_diff(pcm, au, n);
        cr_log_info("case %zu decoder: har %.3g, audio %.3g (max diff / peak)", c, dh, da);
        cr_assert(dh <= TOL_INTER, "case %zu har: %.3g", c, dh);
        cr_assert(da <= TOL_AUDIO, "case %zu audio: %.3g", c, da);
        /* The harmonic source's STFT: magnitudes, then angles compared on
         * the circle where the bin holds at least 1e-3 of the peak (the
         * angle of a near-empty bin is noise in any implementation). */
        const nr_named_tensor_t *sp = S_REF("har_spec");
        if (sp) { /* stored for one case only, to keep the fixture small */
        int bins = (int)sp->shape[0] / 2, fr = (int)sp->shape[1];
        cr_assert_eq(fr, (int)(n / 5) + 1);
        cr_assert_eq(sp->nbytes, (size_t)2 * bins * fr * sizeof(float));
        double dm = s_rel(spec, sp->data, (size_t)bins * fr, "har_spec"), peak = 0, da = 0;
        const float *rs = sp->data;
        for (size_t i = 0; i < (size_t)bins * fr; i++) peak = fmax(peak, rs[i]);
        for (size_t i = 0; i < (size_t)bins * fr; i++) {
            if (rs[i] < 1e-3 * peak) continue;
            double a = fabs((double)spec[(size_t)bins * fr + i] - rs[(size_t)bins * fr + i]);
            da = fmax(da, fmin(a, 2 * M_PI - a));
        }
        cr_log_info("case %zu har_spec: magnitudes %.3g, angles %.3g rad", c, dm, da);
        cr_assert(dm <= TOL_INTER && da <= 1e-4, "case %zu har_spec: magnitudes %.3g, angles %.3g rad", c, dm, da);
        }
        free(asr);
        free(pcm);
        free(h);
        free(spec);
    }
    nr_safetensors_close(&ref);
    nr_kokoro_destroy(&k);
}

Test(kokoro, voices_rate_and_limits) {
    nr_kokoro_t *k = s_load();
    cr_assert_eq(nr_kokoro_sample_rate(k), 24000);
    cr_assert_eq(nr_kokoro_max_phonemes(k), 510);
    cr_assert_eq(nr_kokoro_voice_count(k), 2);
    cr_assert_str_eq(nr_kokoro_voice_name(k, 0), "af_test");
    cr_assert_str_eq(nr_kokoro_voice_name(k, 1), "bm_test");
    cr_assert_null(nr_kokoro_voice_name(k, 2));
    cr_assert_eq(nr_kokoro_phonemes_valid(k, "hə", strlen("hə")), 1);
    cr_assert_eq(nr_kokoro_phonemes_valid(k, "hə", 2), 0, "a cut UTF-8 sequence");
    cr_assert_eq(nr_kokoro_phonemes_valid(k, "hx", 2), 0, "x is not in the tiny vocab");
    nr_kokoro_destroy(&k);
}

Test(kokoro, unknown_voice_lists_the_voices) {
    nr_kokoro_t *k = s_load();
    char err[512] = "";
    float *pcm = (float *)1;
    size_t n = 7;
    cr_assert_eq(nr_kokoro_synthesize(k, "hə", strlen("hə"), "af_nope", 1.f, &pcm, &n, err, sizeof err), NR_EVOICE);
    cr_assert_null(pcm);
    cr_assert_eq(n, 0);
    cr_assert(strstr(err, "af_nope") && strstr(err, "af_test") && strstr(err, "bm_test"), "%s", err);
    cr_assert_eq(nr_kokoro_synthesize(k, "hə", strlen("hə"), NULL, 1.f, &pcm, &n, err, sizeof err), NR_EVOICE);
    nr_kokoro_destroy(&k);
}

Test(kokoro, bad_phonemes_and_speeds) {
    nr_kokoro_t *k = s_load();
    char err[512] = "";
    float *pcm = NULL;
    size_t n = 0;
    cr_assert_eq(nr_kokoro_synthesize(k, "", 0, "af_test", 1.f, &pcm, &n, err, sizeof err), NR_ETEXT);
    cr_assert_eq(nr_kokoro_synthesize(k, "hxa", 3, "af_test", 1.f, &pcm, &n, err, sizeof err), NR_ETEXT);
    cr_assert(strstr(err, "byte 1"), "%s", err);
    cr_assert_eq(nr_kokoro_synthesize(k, "h\xff", 2, "af_test", 1.f, &pcm, &n, err, sizeof err), NR_ETEXT);
    char longp[600];
    memset(longp, 'a', 511);
    cr_assert_eq(nr_kokoro_synthesize(k, longp, 511, "af_test", 1.f, &pcm, &n, err, sizeof err), NR_ETEXT);
    cr_assert(strstr(err, "510"), "%s", err);
    const float bad[] = {0.49f, 2.01f, NAN, -1.f, INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(nr_kokoro_synthesize(k, "hə", strlen("hə"), "af_test", bad[i], &pcm, &n, err, sizeof err),
                     NR_EOPTION, "speed %g", (double)bad[i]);
    cr_assert_null(pcm);
    /* The bounds themselves are fine, and the longest input works. */
    cr_assert_eq(nr_kokoro_synthesize(k, "hə", strlen("hə"), "af_test", 2.f, &pcm, &n, err, sizeof err), 0, "%s", err);
    cr_assert_gt(n, 0);
    free(pcm);
    cr_assert_eq(nr_kokoro_synthesize(k, longp, 510, "bm_test", 2.f, &pcm, &n, err, sizeof err), 0, "%s", err);
    cr_assert_gt(n, 0);
    free(pcm);
    nr_kokoro_destroy(&k);
}

typedef struct {
    const nr_kokoro_t *k;
    float *pcm;
    size_t n;
    int rc;
} s_job_t;

static void *s_run(void *arg) {
    s_job_t *j = arg;
    char err[256];
    const char *ph = "ðə kˈæt sˈæt.";
    j->rc = nr_kokoro_synthesize(j->k, ph, strlen(ph), "bm_test", 1.f, &j->pcm, &j->n, err, sizeof err);
    return NULL;
}

Test(kokoro, threads_share_one_model_and_get_the_same_audio) {
    nr_kokoro_t *k = s_load();
    s_job_t j[3] = {{k, NULL, 0, -1}, {k, NULL, 0, -1}, {k, NULL, 0, -1}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, s_run, &j[i]);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++) cr_assert_eq(j[i].rc, 0);
    for (int i = 1; i < 3; i++) {
        cr_assert_eq(j[i].n, j[0].n);
        cr_assert_eq(memcmp(j[i].pcm, j[0].pcm, j[0].n * sizeof(float)), 0, "thread %d differs", i);
    }
    for (int i = 0; i < 3; i++) free(j[i].pcm);
    nr_kokoro_destroy(&k);
}

/* A folder with the tiny config, the voices and the given .pth (or voice). */
static void s_hostile_dir(char *dir, size_t n, const char *pth, const char *voice) {
    char src[512], cmd[2048];
    snprintf(dir, n, "/tmp/nr_kokoro_hostile_%d", (int)getpid());
    s_path(src, sizeof src, "");
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && mkdir -p %s/voices && cp %s/kokoro-tiny/config.json %s/ && cp %s/kokoro-tiny/voices/*.pt "
             "%s/voices/ && cp %s/kokoro-tiny-hostile/%s %s/%s",
             dir, dir, src, dir, src, dir, src, pth ? pth : voice, dir, pth ? "kokoro-v1_0.pth" : "voices/xx_bad.pt");
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    if (!pth) {
        snprintf(cmd, sizeof cmd, "cp %s/kokoro-tiny/kokoro-v1_0.pth %s/", src, dir);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
    }
}

Test(kokoro, hostile_files_are_bad_model_naming_the_tensor) {
    static const struct {
        const char *pth, *voice, *why;
    } cases[] = {
        {"missing.pth", NULL, "tensor bert.embeddings.word_embeddings.weight missing"},
        {"wrong_shape.pth", NULL, "bert.module.embeddings.word_embeddings.weight"},
        {NULL, "bad_voice.pt", "xx_bad.pt: not one tensor [rows, 1, 16]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[256], err[512] = "", cmd[300];
        s_hostile_dir(dir, sizeof dir, cases[i].pth, cases[i].voice);
        nr_kokoro_t *k = NULL;
        int rc = nr_kokoro_load(dir, NULL, &k, err, sizeof err);
        cr_assert_eq(rc, NR_EMODEL, "case %zu: rc %d (%s)", i, rc, err);
        cr_assert_null(k);
        cr_assert(strstr(err, cases[i].why), "case %zu: '%s' does not say '%s'", i, err, cases[i].why);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        cr_assert_eq(system(cmd), 0);
    }
    /* config.json without the sub-objects, then with a bad size. */
    static const char *configs[][2] = {
        {"{\"n_token\": 178}", "\"plbert\", \"istftnet\" and \"vocab\" objects required"},
        {"[1, 2]", "not a JSON object"},
        {NULL, "inconsistent sizes"}, /* the tiny config, one upsampling kernel changed */
    };
    for (size_t i = 0; i < 3; i++) {
        char dir[256], err[512] = "", path[300], cmd[300];
        s_hostile_dir(dir, sizeof dir, "missing.pth", NULL);
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (configs[i][0]) {
            FILE *f = fopen(path, "w");
            cr_assert_not_null(f);
            fputs(configs[i][0], f);
            fclose(f);
        } else {
            char sed[512]; /* upsample_kernel_sizes [20, 12] -> [21, 12]: 21 - 10 is odd */
            snprintf(sed, sizeof sed, "sed -i 's/^\\( *\\)20,$/\\121,/' %s && grep -q '^ *21,$' %s", path, path);
            cr_assert_eq(system(sed), 0, "%s", sed);
        }
        nr_kokoro_t *k = NULL;
        cr_assert_eq(nr_kokoro_load(dir, NULL, &k, err, sizeof err), NR_EMODEL, "%s", err);
        cr_assert(strstr(err, "config.json") && strstr(err, configs[i][1]), "%s", err);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        cr_assert_eq(system(cmd), 0);
    }
    char err[256];
    nr_kokoro_t *k = NULL;
    cr_assert_eq(nr_kokoro_load("/nonexistent/kokoro", NULL, &k, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "/nonexistent/kokoro"), "%s", err);
}

/* The blocks under models/nn/ against direct double-precision loops. */
static float s_rnd(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.f - 1.f;
}

Test(kokoro, conv_blocks_match_direct_loops) {
    unsigned seed = 7;
    /* Conv1d: stride 1 and 2, padding, dilation, more columns than one im2col chunk. */
    static const int cfg[][6] = {{3, 5, 2500, 3, 1, 1}, {4, 2, 301, 7, 2, 3}, {2, 3, 50, 5, 3, 2}, {5, 4, 9, 1, 1, 0}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        int cin = cfg[c][0], cout = cfg[c][1], t = cfg[c][2], k = cfg[c][3], st = cfg[c][4], pad = cfg[c][5];
        int dil = c == 1 ? 2 : 1, tout = nr_conv1d_out_len(t, k, st, pad, dil);
        cr_assert_gt(tout, 0);
        float *x = malloc(sizeof(float) * cin * t), *w = malloc(sizeof(float) * cout * cin * k),
              *b = malloc(sizeof(float) * cout), *y = malloc(sizeof(float) * cout * tout);
        for (int i = 0; i < cin * t; i++) x[i] = s_rnd(&seed);
        for (int i = 0; i < cout * cin * k; i++) w[i] = s_rnd(&seed);
        for (int i = 0; i < cout; i++) b[i] = s_rnd(&seed);
        cr_assert_eq(nr_conv1d(x, cin, t, w, b, cout, k, st, pad, dil, y), 0);
        double worst = 0;
        for (int o = 0; o < cout; o++)
            for (int j = 0; j < tout; j++) {
                double acc = b[o];
                for (int i = 0; i < cin; i++)
                    for (int q = 0; q < k; q++) {
                        long src = (long)j * st - pad + (long)q * dil;
                        if (src >= 0 && src < t) acc += (double)w[(o * cin + i) * k + q] * x[i * t + src];
                    }
                worst = fmax(worst, fabs(acc - y[o * tout + j]));
            }
        cr_assert_lt(worst, 1e-4, "conv1d case %zu: %g", c, worst);
        free(x);
        free(w);
        free(b);
        free(y);
    }
    /* ConvTranspose1d, dense and depthwise. */
    int cin = 3, cout = 4, t = 17, k = 12, st = 6, pad = 3, tout = (t - 1) * st - 2 * pad + k;
    float *x = malloc(sizeof(float) * cin * t), *w = malloc(sizeof(float) * cin * cout * k),
          *b = malloc(sizeof(float) * cout), *y = malloc(sizeof(float) * cout * tout);
    for (int i = 0; i < cin * t; i++) x[i] = s_rnd(&seed);
    for (int i = 0; i < cin * cout * k; i++) w[i] = s_rnd(&seed);
    for (int i = 0; i < cout; i++) b[i] = s_rnd(&seed);
    cr_assert_eq(nr_conv_transpose1d(x, cin, t, w, b, cout, k, st, pad, 0, y), 0);
    double worst = 0;
    for (int o = 0; o < cout; o++)
        for (int j = 0; j < tout; j++) {
            double acc = b[o];
            for (int i = 0; i < cin; i++)
                for (int s = 0; s < t; s++) {
                    int q = j + pad - s * st;
                    if (q >= 0 && q < k) acc += (double)w[(i * cout + o) * k + q] * x[i * t + s];
                }
            worst = fmax(worst, fabs(acc - y[o * tout + j]));
        }
    cr_assert_lt(worst, 1e-4, "conv_transpose1d: %g", worst);
    int tdw = 2 * t; /* depthwise k 3, stride 2, pad 1, output_padding 1: twice the length */
    nr_conv_transpose1d_dw(x, cin, t, w, b, 3, 2, 1, 1, y);
    worst = 0;
    for (int c = 0; c < cin; c++)
        for (int j = 0; j < tdw; j++) {
            double acc = b[c];
            for (int s = 0; s < t; s++) {
                int q = j + 1 - 2 * s;
                if (q >= 0 && q < 3) acc += (double)w[c * 3 + q] * x[c * t + s];
            }
            worst = fmax(worst, fabs(acc - y[c * tdw + j]));
        }
    cr_assert_lt(worst, 1e-5, "depthwise conv_transpose1d: %g", worst);
    free(x);
    free(w);
    free(b);
    free(y);
}

Test(kokoro, lstm_matches_a_direct_loop) {
    unsigned seed = 9;
    int in = 5, h = 3, T = 7;
    float *wih[2], *whh[2], *bias[2], x[35], y[42];
    for (int d = 0; d < 2; d++) {
        wih[d] = malloc(sizeof(float) * 4 * h * in);
        whh[d] = malloc(sizeof(float) * 4 * h * h);
        bias[d] = malloc(sizeof(float) * 4 * h);
        for (int i = 0; i < 4 * h * in; i++) wih[d][i] = s_rnd(&seed);
        for (int i = 0; i < 4 * h * h; i++) whh[d][i] = s_rnd(&seed);
        for (int i = 0; i < 4 * h; i++) bias[d][i] = s_rnd(&seed);
    }
    for (int i = 0; i < T * in; i++) x[i] = s_rnd(&seed);
    nr_lstm_t l = {in, h, {wih[0], wih[1]}, {whh[0], whh[1]}, {bias[0], bias[1]}};
    cr_assert_eq(nr_lstm_bidir(&l, x, T, y), 0);
    double worst = 0;
    for (int d = 0; d < 2; d++) {
        double hs[3] = {0}, cs[3] = {0};
        for (int s = 0; s < T; s++) {
            int t = d ? T - 1 - s : s;
            double g[12];
            for (int r = 0; r < 4 * h; r++) {
                g[r] = bias[d][r];
                for (int i = 0; i < in; i++) g[r] += (double)wih[d][r * in + i] * x[t * in + i];
                for (int i = 0; i < h; i++) g[r] += (double)whh[d][r * h + i] * hs[i];
            }
            for (int i = 0; i < h; i++) {
                double ig = 1 / (1 + exp(-g[i])), fg = 1 / (1 + exp(-g[h + i])), gg = tanh(g[2 * h + i]),
                       og = 1 / (1 + exp(-g[3 * h + i]));
                cs[i] = fg * cs[i] + ig * gg;
                hs[i] = og * tanh(cs[i]);
                worst = fmax(worst, fabs(hs[i] - y[t * 2 * h + d * h + i]));
            }
        }
    }
    cr_assert_lt(worst, 1e-5, "lstm: %g", worst);
    for (int d = 0; d < 2; d++) {
        free(wih[d]);
        free(whh[d]);
        free(bias[d]);
    }
}
