/* GPU tests of the GIT, BLIP and PaliGemma families on cuda:0 (part of
 * test_cuda, label gpu): each tiny checkpoint of tests/fixtures loaded as a
 * worker loads it (nr_captioner_load from config.json, device "cuda:0"),
 * checked against its independent PyTorch reference (reference_git.py,
 * reference_blip.py, reference_paligemma.py) and against the same
 * checkpoint on the CPU backend:
 *   - the vision side's states (image states / vision states / image
 *     features) of both reference images;
 *   - the text side's logits for the reference's teacher text: all of it in
 *     one step (PaliGemma: its bidirectional prefix), then token by token
 *     through the KV cache;
 *   - greedy and beam ids, for every prompt the reference has (BLIP: none
 *     and "There is a"; PaliGemma: "caption en|es|de"), from the reference's
 *     states and from the device's own, identical to the reference's.
 * F32 tolerance: |got - ref| <= 1e-4 + 1e-4 |ref| per element, the bound
 * tests/test_git.c, test_blip.c and test_paligemma.c hold the CPU to. The
 * CUDA backend's F32 path has the same arithmetic (cuBLAS F32 with TF32
 * off, accurate expf/erff/tanhf, F32 reductions); only the summation order
 * differs, a few ulp, far inside the bound.
 * cuda:0:bf16 (matmul weights and activations rounded to bfloat16, F32
 * accumulation): states and logits by relative L2 error; greedy ids by
 * agreement up to bfloat16's error: along the reference's greedy caption,
 * each reference token's bf16 logit must be within 4x the measured logit
 * error of the bf16 maximum (a token the F32 model prefers by more than the
 * rounding can move must stay first), and the exact agreement is printed.
 *
 * Every comparison is shown to be able to fail: the states of image 0 are
 * also compared with image 1's reference and must be outside the bound.
 * With no GPU each test skips; NR_CUDA_TEST_DEVICE=cpu runs the very same
 * checks on the CPU backend (cpu, cpu:bf16), which is how this file is
 * checked on a machine without a GPU. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/backend.h"
#include "models/captioner.h"
#include "models/config.h"
#include "models/cuda/backend_cuda.h"
#include "models/family.h"
#include "models/io/checkpoint.h"
#include "models/io/safetensors.h"
#include "tests/model_ref.h"

#define TOL_ABS 1e-4
#define TOL_REL 1e-4

/* One prompt of a fixture: the reference's prompt ids (NULL: none) and
 * the prefixes of its greedy / beam ids ("<prefix>.<image>"). */
typedef struct {
    const char *prompt, *greedy, *beam;
} s_variant_t;

typedef struct {
    const char *name;   /* tests/fixtures/<name> and <name>-reference.safetensors */
    const char *family; /* nr_captioner_family */
    const char *states; /* the reference's vision-side output */
    int max_length, num_beams; /* the reference script's FIXTURES */
    int n_var;
    s_variant_t var[3];
} s_fam_t;

static const s_fam_t s_fams[] = {
    {"git-tiny", "git", "image_states", 12, 3, 1, {{NULL, "greedy_ids", "beam_ids"}}},
    {"git-tiny-bin", "git", "image_states", 10, 3, 1, {{NULL, "greedy_ids", "beam_ids"}}},
    {"blip-tiny", "blip", "vision_states", 12, 3, 2,
     {{NULL, "greedy_ids", "beam_ids"}, {"prompt_ids", "prompt_greedy_ids", "prompt_beam_ids"}}},
    {"blip-tiny-bin", "blip", "vision_states", 10, 3, 2,
     {{NULL, "greedy_ids", "beam_ids"}, {"prompt_ids", "prompt_greedy_ids", "prompt_beam_ids"}}},
    {"paligemma-tiny", "paligemma", "image_features", 14, 3, 3,
     {{"prompt_ids.en", "greedy_ids.en", "beam_ids.en"},
      {"prompt_ids.es", "greedy_ids.es", "beam_ids.es"},
      {"prompt_ids.de", "greedy_ids.de", "beam_ids.de"}}},
    {"paligemma-tiny-bf16", "paligemma", "image_features", 12, 2, 3,
     {{"prompt_ids.en", "greedy_ids.en", "beam_ids.en"},
      {"prompt_ids.es", "greedy_ids.es", "beam_ids.es"},
      {"prompt_ids.de", "greedy_ids.de", "beam_ids.de"}}},
};

/* "cuda:0" (or NR_CUDA_TEST_DEVICE) with an optional precision suffix;
 * skips the test when that is a CUDA device and there is no GPU. */
static void s_device(char *buf, size_t n, const char *prec) {
    const char *base = getenv("NR_CUDA_TEST_DEVICE");
    if (!base || !*base) base = "cuda:0";
    if (strncmp(base, "cuda", 4) == 0) {
        char why[256] = "";
        if (nr_cuda_device_count(why, sizeof why) == 0) cr_skip_test("no CUDA device: %s", why);
    }
    snprintf(buf, n, "%s%s%s", base, prec ? ":" : "", prec ? prec : "");
}

static const s_fam_t *s_find(const char *name) {
    for (size_t i = 0; i < sizeof s_fams / sizeof *s_fams; i++)
        if (strcmp(s_fams[i].name, name) == 0) return &s_fams[i];
    cr_assert_fail("no fixture %s", name);
    return NULL;
}

static double s_close(const float *a, const float *b, size_t n, double *max_abs) {
    return nr_test_close(a, b, n, TOL_ABS, TOL_REL, max_abs);
}


typedef struct {
    const s_fam_t *fx;
    char dir[1024], dev[64];
    nr_safetensors_t *ref;
    nr_captioner_t *cap; /* on dev */
} s_run_t;

static s_run_t s_open(const char *name, const char *prec) {
    s_run_t r = {.fx = s_find(name)};
    s_device(r.dev, sizeof r.dev, prec);
    char path[1200], err[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s-reference.safetensors", nr_test_src(), name);
    cr_assert_eq(nr_safetensors_open(path, &r.ref, err, sizeof err), 0, "%s", err);
    snprintf(r.dir, sizeof r.dir, "%s/tests/fixtures/%s", nr_test_src(), name);
    nr_captioner_params_t p = nr_captioner_default_params();
    p.device = r.dev;
    p.num_threads = 2;
    cr_assert_eq(nr_captioner_load(r.dir, &p, &r.cap, err, sizeof err), 0, "%s on %s: %s", name, r.dev, err);
    cr_assert_str_eq(nr_captioner_family(r.cap), r.fx->family);
    return r;
}

static void s_close_run(s_run_t *r) {
    nr_captioner_destroy(&r->cap);
    nr_safetensors_close(&r->ref);
}

static nr_captioner_t *s_cpu_captioner(const s_run_t *r) {
    char err[1024];
    nr_captioner_params_t p = nr_captioner_default_params();
    p.device = "cpu";
    p.num_threads = 2;
    nr_captioner_t *c = NULL;
    cr_assert_eq(nr_captioner_load(r->dir, &p, &c, err, sizeof err), 0, "%s", err);
    return c;
}

/* The text side alone on the run's device (the family's own loader, decoder
 * only, as a text worker loads it), for logits. */
typedef struct {
    nr_model_config_t cfg;
    nr_checkpoint_t *ck;
    nr_backend_t *be;
    const nr_family_ops_t *F;
    void *fam;
    nr_decoder_t d;
} s_text_t;

static s_text_t s_text(const s_run_t *r) {
    s_text_t t = {0};
    char err[1024];
    cr_assert_eq(nr_model_config_load(r->dir, &t.cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_checkpoint_open_dir(r->dir, &t.ck, err, sizeof err), 0, "%s", err);
    t.be = nr_backend_new(r->dev, 2, err, sizeof err);
    cr_assert_not_null(t.be, "%s", err);
    t.F = nr_family_by_name(t.cfg.family);
    cr_assert_not_null(t.F, "%s", t.cfg.family);
    cr_assert_eq(t.F->load(&t.cfg, t.ck, t.be, 0, 1, &t.fam, err, sizeof err), 0, "%s", err);
    t.d = t.F->decoder(t.fam);
    cr_assert_not_null(t.d.ops);
    return t;
}

static void s_text_free(s_text_t *t) {
    t->F->destroy(&t->fam);
    nr_backend_destroy(&t->be);
    nr_checkpoint_close(&t->ck);
}

/* Host floats into the backend (a new buffer the caller frees with
 * nr_backend_free), or the host pointer itself on a host-memory backend. */
static float *s_up(nr_backend_t *be, float *host, size_t n) {
    if (be->host_memory) return host;
    float *d = nr_backend_upload_new(be, host, n * sizeof(float));
    cr_assert_not_null(d, "upload of %zu floats: %s", n, nr_backend_cuda_last_error(be));
    return d;
}
static void s_up_free(nr_backend_t *be, float *host, float *dev) {
    if (dev != host) nr_backend_free(be, dev);
}

/* The teacher text's logits [2, T, V]: the first `first` tokens in one step
 * (every position's logits), the rest one token per step. */
static float *s_teacher_logits(s_text_t *t, const float *dstates, const int *ids, int T, int first) {
    const int V = t->cfg.vocab_size, S = t->cfg.states_seq;
    float *all = malloc((size_t)2 * T * V * sizeof(float)), *part = malloc((size_t)2 * T * V * sizeof(float));
    void *s = t->d.ops->state_new(t->d.model, 2, T, 2, S);
    cr_assert_not_null(s);
    cr_assert_eq(t->d.ops->set_encoder(t->d.model, s, dstates, NULL), 0, "%s", nr_backend_cuda_last_error(t->be));
    int chunk[64];
    cr_assert(first <= 32 && T <= 32);
    for (int r = 0; r < 2; r++) memcpy(chunk + r * first, ids + r * T, (size_t)first * sizeof(int));
    cr_assert_eq(t->d.ops->step(t->d.model, s, chunk, first, part, 1), 0, "%s", nr_backend_cuda_last_error(t->be));
    for (int r = 0; r < 2; r++)
        memcpy(all + (size_t)r * T * V, part + (size_t)r * first * V, (size_t)first * V * sizeof(float));
    for (int i = first; i < T; i++) {
        int cur[2] = {ids[i], ids[T + i]};
        cr_assert_eq(t->d.ops->step(t->d.model, s, cur, 1, part, 0), 0, "%s", nr_backend_cuda_last_error(t->be));
        for (int r = 0; r < 2; r++)
            memcpy(all + ((size_t)r * T + i) * V, part + (size_t)r * V, (size_t)V * sizeof(float));
    }
    t->d.ops->state_destroy(&s);
    free(part);
    return all;
}

/* Tokens of the first chunk: PaliGemma's prefix (<bos> + "caption en\n",
 * bidirectional, so it must be one step); the others, all of it. */
static int s_first_chunk(const s_run_t *r, int T) {
    if (strcmp(r->fx->family, "paligemma")) return T;
    int plen = 0;
    free(nr_test_ref_ids(r->ref, "prompt_ids.en", &plen));
    return 1 + plen;
}

static void s_ids_equal(const s_run_t *r, const char *name, const int *ids, int len, const char *what) {
    int n = 0, *want = nr_test_ref_ids(r->ref, name, &n);
    cr_assert_gt(n, 1, "%s: reference %s is empty", r->fx->name, name);
    int same = len == n;
    for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        fprintf(stderr, "%s %s (%s) on %s: got", r->fx->name, name, what, r->dev);
        for (int i = 0; i < len; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "; want");
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
    free(want);
    cr_assert(same, "%s: %s (%s) on %s differ from the reference", r->fx->name, name, what, r->dev);
}

/* ---- F32: states, logits, ids ---- */

static void s_f32_case(const char *name) {
    s_run_t r = s_open(name, NULL);
    nr_captioner_t *cpu = s_cpu_captioner(&r);
    char err[1024];
    /* vision side */
    size_t np, ns;
    float *px = nr_test_ref(r.ref, "pixel_values", &np), *want = nr_test_ref(r.ref, r.fx->states, &ns);
    int S, D;
    nr_captioner_states_shape(r.cap, &S, &D);
    cr_assert_eq(ns, (size_t)2 * S * D);
    float *got = malloc(ns * sizeof(float)), *cgot = malloc(ns * sizeof(float));
    cr_assert_eq(nr_captioner_encode(r.cap, px, 2, got, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_captioner_encode(cpu, px, 2, cgot, err, sizeof err), 0, "%s", err);
    double ma, q = s_close(got, want, ns, &ma), qc = s_close(got, cgot, ns, NULL);
    fprintf(stderr, "%s on %s: %s max abs error %.3g (%.3g of the bound), %.3g of the bound vs the CPU\n", name,
            r.dev, r.fx->states, ma, q, qc);
    cr_assert_leq(q, 1.0, "%s: %s off by %.3g of the bound", name, r.fx->states, q);
    cr_assert_leq(qc, 1.0, "%s: %s differ from the CPU's by %.3g of the bound", name, r.fx->states, qc);
    /* the check can fail: image 0's states are not image 1's */
    cr_assert_gt(s_close(got, want + ns / 2, ns / 2, NULL), 1.0, "%s: the two reference images agree", name);
    /* one image alone: the same */
    cr_assert_eq(nr_captioner_encode(r.cap, px + np / 2, 1, got, err, sizeof err), 0, "%s", err);
    cr_assert_leq(s_close(got, want + ns / 2, ns / 2, NULL), 1.0, "%s: image 1 alone", name);
    cr_assert_eq(nr_captioner_encode(r.cap, px, 2, got, err, sizeof err), 0, "%s", err);

    /* text side: the teacher text's logits, reference states in */
    s_text_t t = s_text(&r);
    size_t nl;
    int ni;
    float *lwant = nr_test_ref(r.ref, "logits", &nl);
    int *ids = nr_test_ref_ids(r.ref, "input_ids", &ni);
    const int T = ni / 2, V = t.cfg.vocab_size;
    cr_assert_eq(nl, (size_t)2 * T * V);
    float *dstates = s_up(t.be, want, ns);
    const int firsts[2] = {s_first_chunk(&r, T), 1};
    for (int k = 0; k < 2; k++) {
        if (k == 1 && firsts[0] != T) break; /* PaliGemma: the prefix is one step */
        float *lg = s_teacher_logits(&t, dstates, ids, T, firsts[k]);
        q = s_close(lg, lwant, nl, &ma);
        fprintf(stderr, "%s on %s: logits (%d tokens in the first step, then one per step) max abs error %.3g "
                "(%.3g of the bound)\n", name, r.dev, firsts[k], ma, q);
        cr_assert_leq(q, 1.0, "%s: logits (first step %d tokens) off by %.3g of the bound", name, firsts[k], q);
        cr_assert_gt(s_close(lg, lwant + nl / 2, nl / 2, NULL), 1.0, "%s: the two rows' logits agree", name);
        free(lg);
    }
    s_up_free(t.be, want, dstates);
    s_text_free(&t);

    /* generation: every prompt, greedy and beam, reference and own states */
    const float *sources[2] = {want, got};
    for (int v = 0; v < r.fx->n_var; v++) {
        const s_variant_t *var = &r.fx->var[v];
        int plen = 0, *prompt = var->prompt ? nr_test_ref_ids(r.ref, var->prompt, &plen) : NULL;
        nr_gen_config_t g = nr_captioner_gen_defaults(r.cap);
        g.max_length = r.fx->max_length;
        g.prompt_ids = prompt;
        g.prompt_len = plen;
        int out[2 * 32], lens[2], cout[2 * 32], clens[2];
        cr_assert_leq(g.max_length, 32);
        for (int src = 0; src < 2; src++)
            for (int beams = 1; beams <= r.fx->num_beams; beams += r.fx->num_beams - 1) {
                g.num_beams = beams;
                char nm[64], what[96];
                snprintf(what, sizeof what, "%s states, prompt %s, beams %d", src ? "own" : "reference",
                         var->prompt ? var->prompt : "none", beams);
                cr_assert_eq(nr_captioner_generate(r.cap, sources[src], 2, &g, out, lens, err, sizeof err), 0, "%s",
                             err);
                cr_assert_eq(nr_captioner_generate(cpu, sources[src], 2, &g, cout, clens, err, sizeof err), 0, "%s",
                             err);
                for (int i = 0; i < 2; i++) {
                    snprintf(nm, sizeof nm, "%s.%d", beams == 1 ? var->greedy : var->beam, i);
                    s_ids_equal(&r, nm, out + i * g.max_length, lens[i], what);
                    cr_assert(lens[i] == clens[i] &&
                                  !memcmp(out + i * g.max_length, cout + i * g.max_length, (size_t)lens[i] * sizeof(int)),
                              "%s %s: device and CPU ids differ", name, what);
                }
                int alone[32], len1 = 0; /* image 1 alone */
                cr_assert_eq(nr_captioner_generate(r.cap, sources[src] + ns / 2, 1, &g, alone, &len1, err, sizeof err),
                             0, "%s", err);
                snprintf(nm, sizeof nm, "%s.1", beams == 1 ? var->greedy : var->beam);
                s_ids_equal(&r, nm, alone, len1, "image 1 alone");
            }
        free(prompt);
    }
    free(ids);
    free(lwant);
    free(px);
    free(want);
    free(got);
    free(cgot);
    nr_captioner_destroy(&cpu);
    s_close_run(&r);
}

Test(cuda_families, git_tiny_f32) { s_f32_case("git-tiny"); }
Test(cuda_families, git_tiny_bin_f32) { s_f32_case("git-tiny-bin"); }
Test(cuda_families, blip_tiny_f32) { s_f32_case("blip-tiny"); }
Test(cuda_families, blip_tiny_bin_f32) { s_f32_case("blip-tiny-bin"); }
Test(cuda_families, paligemma_tiny_f32) { s_f32_case("paligemma-tiny"); }
Test(cuda_families, paligemma_tiny_bf16_checkpoint_f32) { s_f32_case("paligemma-tiny-bf16"); }

/* ---- BF16 matmuls (cuda:0:bf16) ---- */

/* Bounds on the relative L2 error of a tiny model in BF16: one rounding of
 * 8 significant bits (relative 2^-9 = 2e-3) per matmul operand, a few
 * layers deep; measured far below on the CPU's BF16 path. */
#define BF16_STATES_L2 2e-2
#define BF16_LOGITS_L2 5e-2

static void s_bf16_case(const char *name) {
    s_run_t r = s_open(name, "bf16");
    char err[1024];
    size_t np, ns;
    float *px = nr_test_ref(r.ref, "pixel_values", &np), *want = nr_test_ref(r.ref, r.fx->states, &ns);
    float *got = malloc(ns * sizeof(float));
    cr_assert_eq(nr_captioner_encode(r.cap, px, 2, got, err, sizeof err), 0, "%s", err);
    const double es = nr_test_rel_l2(got, want, ns);
    /* teacher text logits: their error sets the tie margin below */
    s_text_t t = s_text(&r);
    size_t nl;
    int ni;
    float *lwant = nr_test_ref(r.ref, "logits", &nl);
    int *ids = nr_test_ref_ids(r.ref, "input_ids", &ni);
    const int T = ni / 2, V = t.cfg.vocab_size;
    float *dstates = s_up(t.be, want, ns);
    float *lg = s_teacher_logits(&t, dstates, ids, T, s_first_chunk(&r, T));
    const double el = nr_test_rel_l2(lg, lwant, nl);
    double margin = 0;
    for (size_t i = 0; i < nl; i++) margin = fmax(margin, fabs((double)lg[i] - lwant[i]));
    margin *= 4;
    fprintf(stderr, "%s on %s: %s relative L2 error %.3g, logits %.3g (max abs %.3g)\n", name, r.dev, r.fx->states, es,
            el, margin / 4);
    cr_assert_leq(es, BF16_STATES_L2, "%s: %s relative L2 error %g", name, r.fx->states, es);
    cr_assert_leq(el, BF16_LOGITS_L2, "%s: logits relative L2 error %g", name, el);
    free(lg);
    /* the reference's greedy captions, teacher-forced on the device: each
     * token within `margin` of the device's best */
    nr_gen_config_t g0 = nr_captioner_gen_defaults(r.cap);
    int agree = 0, total = 0;
    for (int v = 0; v < r.fx->n_var; v++) {
        const s_variant_t *var = &r.fx->var[v];
        int plen = 0, *prompt = var->prompt ? nr_test_ref_ids(r.ref, var->prompt, &plen) : NULL;
        int n0 = 0, n1 = 0;
        char nm[64];
        snprintf(nm, sizeof nm, "%s.0", var->greedy);
        int *w0 = nr_test_ref_ids(r.ref, nm, &n0);
        snprintf(nm, sizeof nm, "%s.1", var->greedy);
        int *w1 = nr_test_ref_ids(r.ref, nm, &n1);
        const int n = n0 < n1 ? n0 : n1; /* both rows as far as both go */
        const int first = 1 + plen;      /* start token + prompt: given, not predicted */
        cr_assert_gt(n, first);
        int tf[64];
        memcpy(tf, w0, (size_t)n * sizeof(int));
        memcpy(tf + n, w1, (size_t)n * sizeof(int));
        /* PaliGemma's state takes the prefix as its first step */
        float *tl = s_teacher_logits(&t, dstates, tf, n, strcmp(r.fx->family, "paligemma") ? 1 : first);
        for (int row = 0; row < 2; row++)
            for (int i = first - 1; i + 1 < n; i++) {
                const float *l = tl + ((size_t)row * n + i) * V;
                float best = l[0];
                for (int j = 1; j < V; j++) best = fmaxf(best, l[j]);
                const int tok = tf[row * n + i + 1];
                cr_assert_geq((double)l[tok], best - margin,
                              "%s %s row %d step %d: the reference's token %d is %.4g below the best logit "
                              "(bf16 margin %.4g)",
                              name, var->greedy, row, i, tok, best - l[tok], margin);
            }
        free(tl);
        /* free-running greedy ids: valid captions; agreement reported */
        nr_gen_config_t g = g0;
        g.max_length = r.fx->max_length;
        g.num_beams = 1;
        g.prompt_ids = prompt;
        g.prompt_len = plen;
        int out[2 * 32], lens[2];
        cr_assert_eq(nr_captioner_generate(r.cap, got, 2, &g, out, lens, err, sizeof err), 0, "%s", err);
        for (int row = 0; row < 2; row++) {
            const int *o = out + row * g.max_length, *w = row ? w1 : w0, wn = row ? n1 : n0;
            cr_assert(lens[row] > first && lens[row] <= g.max_length, "%s: caption length %d", name, lens[row]);
            cr_assert_eq(o[0], w[0]);
            for (int i = 0; i < lens[row]; i++) cr_assert(o[i] >= 0 && o[i] < V);
            for (int i = first; i < wn && i < lens[row] && o[i] == w[i]; i++) agree++;
            total += wn - first;
        }
        free(w0);
        free(w1);
        free(prompt);
    }
    fprintf(stderr, "%s on %s: %d of %d reference greedy tokens reproduced before the first difference\n", name, r.dev,
            agree, total);
    s_up_free(t.be, want, dstates);
    s_text_free(&t);
    free(ids);
    free(lwant);
    free(px);
    free(want);
    free(got);
    s_close_run(&r);
}

Test(cuda_families, git_bf16) {
    s_bf16_case("git-tiny");
    s_bf16_case("git-tiny-bin");
}
Test(cuda_families, blip_bf16) {
    s_bf16_case("blip-tiny");
    s_bf16_case("blip-tiny-bin");
}
Test(cuda_families, paligemma_bf16) {
    s_bf16_case("paligemma-tiny");
    s_bf16_case("paligemma-tiny-bf16");
}
