/* GIT (models/git.h, models/clip.h, family "git") against the independent
 * PyTorch reference of tests/fixtures/reference_git.py on two tiny random
 * checkpoints in the published layout: git-tiny (F32 safetensors, 32 px)
 * and git-tiny-bin (F16 pytorch_model.bin, 48 px): image states after the
 * projection, per-step logits (whole, token by token through the cache,
 * chunked), greedy and beam ids, the CLIP preprocessing path, frames; a
 * BF16 copy of git-tiny (weights mapped) against its F32 twin. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/backend.h"
#include "models/captioner.h"
#include "models/config.h"
#include "models/git.h"
#include "models/io/checkpoint.h"
#include "models/io/safetensors.h"
#include "models/states.h"
#include "model_ref.h"

#define TOL_ABS 1e-4
#define TOL_REL 1e-4

typedef struct {
    const char *name;
    char dir[1024];
    nr_safetensors_t *ref;
    nr_captioner_t *cap;
    int max_length, num_beams;
} s_fix_t;

static s_fix_t s_fix(const char *name) {
    s_fix_t f = {.name = name};
    char path[1200], err[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s-reference.safetensors", nr_test_src(), name);
    cr_assert_eq(nr_safetensors_open(path, &f.ref, err, sizeof err), 0, "%s", err);
    snprintf(f.dir, sizeof f.dir, "%s/tests/fixtures/%s", nr_test_src(), name);
    cr_assert_eq(nr_captioner_load(f.dir, NULL, &f.cap, err, sizeof err), 0, "%s", err);
    f.max_length = strcmp(name, "git-tiny") == 0 ? 12 : 10; /* reference_git.py's FIXTURES */
    f.num_beams = 3;
    return f;
}

static void s_fix_free(s_fix_t *f) {
    nr_captioner_destroy(&f->cap);
    nr_safetensors_close(&f->ref);
}

static float *s_ref(const s_fix_t *f, const char *name, size_t *count) { return nr_test_ref(f->ref, name, count); }
static double s_close(const float *a, const float *b, size_t n, double *max_abs) {
    return nr_test_close(a, b, n, TOL_ABS, TOL_REL, max_abs);
}

static const char *s_fixtures[] = {"git-tiny", "git-tiny-bin"};

Test(git, config_and_shapes) {
    char path[1200], err[512];
    nr_model_config_t c;
    snprintf(path, sizeof path, "%s/tests/fixtures/git-tiny", nr_test_src());
    cr_assert_eq(nr_model_config_load(path, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.family, "git");
    cr_assert_eq(c.wordpiece, 1);
    cr_assert_eq(c.git.vision.hidden_act, NR_ACT_QUICK_GELU);
    cr_assert_float_eq(c.git.vision.layer_norm_eps, 1e-5f, 1e-12);
    cr_assert_float_eq(c.git.layer_norm_eps, 1e-12f, 1e-20);
    cr_assert_eq(c.states_seq, 17);
    cr_assert_eq(c.states_hidden, 36);
    cr_assert_eq(c.max_positions, 40);
    cr_assert_eq(c.gen.decoder_start_token_id, 101);
    cr_assert_eq(c.gen.eos_token_id, 102);
    cr_assert_eq(c.gen.pad_token_id, 0);
    cr_assert_eq(c.gen.max_length, 20);
    cr_assert_eq(c.gen.num_beams, 1);
    /* defaults are GitConfig's; video GIT and relative positions are refused */
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"git\"}", NULL, "x", &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.git.hidden_size, 768);
    cr_assert_eq(c.git.num_hidden_layers, 6);
    cr_assert_eq(c.git.vision.num_hidden_layers, 12);
    cr_assert_eq(c.states_seq, 197);
    cr_assert_eq(c.vocab_size, 30522);
    cr_assert_eq(c.git.tie_word_embeddings, 0);
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"git\",\"num_image_with_embedding\":6}", NULL, "x", &c, err,
                                       sizeof err),
                 NR_EMODEL);
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"git\",\"position_embedding_type\":\"relative_key\"}", NULL,
                                       "x", &c, err, sizeof err),
                 NR_EMODEL);
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"blip-2\"}", NULL, "x", &c, err, sizeof err), NR_EMODEL);
}

Test(git, image_states_against_reference) {
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        size_t np, ns;
        float *px = s_ref(&f, "pixel_values", &np), *want = s_ref(&f, "image_states", &ns);
        float *got = malloc(ns * sizeof(float)), *proj = malloc(ns * sizeof(float));
        int S, D;
        nr_captioner_states_shape(f.cap, &S, &D);
        cr_assert_eq((size_t)2 * S * D, ns);
        cr_assert_str_eq(nr_captioner_family(f.cap), "git");
        cr_assert_eq(nr_captioner_encode(f.cap, px, 2, got, err, sizeof err), 0, "%s", err);
        double ma, q = s_close(got, want, ns, &ma);
        fprintf(stderr, "%s: image states max abs error %.3g (%.3g of the bound)\n", f.name, ma, q);
        cr_assert(q <= 1.0, "%s: image states off by %.3g of the bound", f.name, q);
        /* one image alone gives the same */
        cr_assert_eq(nr_captioner_encode(f.cap, px + np / 2, 1, got, err, sizeof err), 0, "%s", err);
        cr_assert(s_close(got, want + ns / 2, ns / 2, NULL) <= 1.0);
        /* the text side reads the states as they are (the projection is the vision side's) */
        cr_assert_eq(nr_captioner_project(f.cap, want, 2, proj, err, sizeof err), 0, "%s", err);
        cr_assert_eq(memcmp(proj, want, ns * sizeof(float)), 0);
        free(px);
        free(want);
        free(got);
        free(proj);
        s_fix_free(&f);
    }
}

/* The decoder block directly: logits for the teacher text, whole, token by
 * token through the cache, and chunked (4 then 2). */
Test(git, logits_against_reference) {
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        nr_model_config_t cfg;
        cr_assert_eq(nr_model_config_load(f.dir, &cfg, err, sizeof err), 0, "%s", err);
        nr_checkpoint_t *ck = NULL;
        cr_assert_eq(nr_checkpoint_open_dir(f.dir, &ck, err, sizeof err), 0, "%s", err);
        nr_backend_t *be = nr_backend_new("cpu", 1, err, sizeof err);
        cr_assert_not_null(be, "%s", err);
        nr_git_decoder_t *m = NULL;
        cr_assert_eq(nr_git_decoder_load(&cfg.git, ck, be, &m, err, sizeof err), 0, "%s", err);
        nr_decoder_t d = nr_git_decoder(m);
        size_t ns, nl, ni;
        float *states = s_ref(&f, "image_states", &ns), *want = s_ref(&f, "logits", &nl);
        float *idf = s_ref(&f, "input_ids", &ni);
        const int T = (int)ni / 2, V = cfg.vocab_size, S = cfg.states_seq;
        cr_assert_eq(nl, (size_t)2 * T * V);
        int *ids = malloc(ni * sizeof(int));
        for (size_t i = 0; i < ni; i++) ids[i] = (int)idf[i];
        float *got = malloc(nl * sizeof(float)), *one = malloc((size_t)2 * V * sizeof(float));
        void *s = d.ops->state_new(d.model, 2, T, 2, S);
        cr_assert_not_null(s);
        /* whole text at once */
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, NULL), 0);
        cr_assert_eq(d.ops->step(d.model, s, ids, T, got, 1), 0);
        double ma, q = s_close(got, want, nl, &ma);
        fprintf(stderr, "%s: logits (whole) max abs error %.3g (%.3g of the bound)\n", f.name, ma, q);
        cr_assert(q <= 1.0, "%s: logits off by %.3g of the bound", f.name, q);
        /* token by token through the cache */
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, NULL), 0);
        double worst = 0;
        for (int t = 0; t < T; t++) {
            int cur[2] = {ids[t], ids[T + t]};
            cr_assert_eq(d.ops->step(d.model, s, cur, 1, one, 0), 0);
            for (int r = 0; r < 2; r++) {
                double qq = s_close(one + (size_t)r * V, want + ((size_t)r * T + t) * V, (size_t)V, &ma);
                if (qq > worst) worst = qq;
            }
        }
        fprintf(stderr, "%s: logits (cached steps) %.3g of the bound\n", f.name, worst);
        cr_assert(worst <= 1.0);
        /* chunked: 4 tokens, then the last 2 (last-token logits only) */
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, NULL), 0);
        int c4[8], c2[4];
        for (int r = 0; r < 2; r++) {
            memcpy(c4 + 4 * r, ids + r * T, 4 * sizeof(int));
            memcpy(c2 + 2 * r, ids + r * T + 4, 2 * sizeof(int));
        }
        cr_assert_eq(d.ops->step(d.model, s, c4, 4, one, 0), 0);
        for (int r = 0; r < 2; r++) cr_assert(s_close(one + (size_t)r * V, want + ((size_t)r * T + 3) * V, V, NULL) <= 1);
        cr_assert_eq(d.ops->step(d.model, s, c2, 2, one, 0), 0);
        for (int r = 0; r < 2; r++) cr_assert(s_close(one + (size_t)r * V, want + ((size_t)r * T + 5) * V, V, NULL) <= 1);
        /* beams reorder: row 0 takes row 1's place and back gives row 1's logits */
        cr_assert_eq(d.ops->step(d.model, s, c2, 1, one, 0), NR_EINVAL); /* full: max_len T */
        int bad = V;
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, NULL), 0);
        int two[2] = {bad, 0};
        cr_assert_eq(d.ops->step(d.model, s, two, 1, one, 0), NR_EINVAL);
        int unused[2] = {0, 0}; /* encoder output 1 used by no row */
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, unused), NR_EINVAL);
        d.ops->state_destroy(&s);
        cr_assert_null(s);
        free(ids);
        free(idf);
        free(got);
        free(one);
        free(states);
        free(want);
        nr_git_decoder_destroy(&m);
        nr_backend_destroy(&be);
        nr_checkpoint_close(&ck);
        s_fix_free(&f);
    }
}

static void s_check_ids(const s_fix_t *f, const char *what, int i, const int *ids, int len) {
    char name[64];
    snprintf(name, sizeof name, "%s.%d", what, i);
    size_t n;
    float *want = s_ref(f, name, &n);
    int same = (size_t)len == n;
    for (int t = 0; same && t < len; t++) same = ids[t] == (int)want[t];
    if (!same) {
        fprintf(stderr, "%s %s: got", f->name, name);
        for (int t = 0; t < len; t++) fprintf(stderr, " %d", ids[t]);
        fprintf(stderr, "\n");
    }
    cr_assert(same, "%s: %s differ from the reference", f->name, name);
    free(want);
}

/* Greedy and beam ids identical to the reference: from the reference
 * states and from our own encoder's, both images together and alone. */
Test(git, generation_against_reference) {
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        size_t ns, np;
        float *states = s_ref(&f, "image_states", &ns), *px = s_ref(&f, "pixel_values", &np);
        float *own = malloc(ns * sizeof(float));
        cr_assert_eq(nr_captioner_encode(f.cap, px, 2, own, err, sizeof err), 0, "%s", err);
        nr_gen_config_t g = nr_captioner_gen_defaults(f.cap);
        g.max_length = f.max_length;
        int ids[2 * 16], lens[2];
        const float *sources[2] = {states, own};
        for (int src = 0; src < 2; src++)
            for (int beams = 1; beams <= f.num_beams; beams += f.num_beams - 1) {
                g.num_beams = beams;
                const char *what = beams == 1 ? "greedy_ids" : "beam_ids";
                cr_assert_eq(nr_captioner_generate(f.cap, sources[src], 2, &g, ids, lens, err, sizeof err), 0, "%s",
                             err);
                for (int i = 0; i < 2; i++) s_check_ids(&f, what, i, ids + i * g.max_length, lens[i]);
                for (int i = 0; i < 2; i++) { /* alone */
                    cr_assert_eq(nr_captioner_generate(f.cap, sources[src] + (size_t)i * ns / 2, 1, &g, ids, lens,
                                                       err, sizeof err),
                                 0, "%s", err);
                    s_check_ids(&f, what, i, ids, lens[0]);
                }
            }
        char *caps[2] = {NULL, NULL};
        int nt[2];
        g.num_beams = 1;
        cr_assert_eq(nr_captioner_caption(f.cap, states, 2, &g, caps, nt, err, sizeof err), 0, "%s", err);
        for (int i = 0; i < 2; i++) {
            fprintf(stderr, "%s caption %d (%d tokens): \"%s\"\n", f.name, i, nt[i], caps[i]);
            cr_assert(strlen(caps[i]) > 0);
            free(caps[i]);
        }
        free(states);
        free(px);
        free(own);
        s_fix_free(&f);
    }
}

/* Image bytes through the checkpoint's CLIPImageProcessor config give the
 * reference's states (the processor is PIL-exact: models/preprocess.h). */
Test(git, images_and_frames) {
    static const char *images[2] = {"astronaut_rgba.png", "astronaut_50x40_up.jpg"};
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        size_t ns;
        float *want = s_ref(&f, "image_states", &ns), *got = malloc(ns * sizeof(float));
        void *bytes[2];
        size_t sizes[2];
        for (int i = 0; i < 2; i++) bytes[i] = nr_test_image(images[i], &sizes[i]);
        int status[2] = {-1, -1};
        int rc = nr_captioner_encode_images(f.cap, (const void *const *)bytes, sizes, 2, got, status, err, sizeof err);
        if (rc == NR_EUNSUPPORTED) {
            cr_log_warn("built without the image module: %s", err);
        } else {
            cr_assert_eq(rc, 0, "%s", err);
            cr_assert_eq(status[0], 0);
            cr_assert_eq(status[1], 0);
            double ma, q = s_close(got, want, ns, &ma);
            fprintf(stderr, "%s: states from image bytes max abs error %.3g\n", f.name, ma);
            cr_assert(q <= 1.0);
        }
        /* frames: git's own round-trip; vit-gpt2's (v1 or v2) and other shapes refused */
        unsigned char *fr = NULL, *bad = NULL;
        size_t fl = 0, bl = 0;
        cr_assert_eq(nr_captioner_states_to_frame(f.cap, want, &fr, &fl), 0);
        cr_assert_eq(memcmp(fr, "NRS2", 4), 0);
        cr_assert_eq(nr_captioner_frame_to_states(f.cap, fr, fl, got, err, sizeof err), 0, "%s", err);
        cr_assert_eq(memcmp(got, want, ns / 2 * sizeof(float)), 0);
        int S, D;
        nr_captioner_states_shape(f.cap, &S, &D);
        int64_t sh[2] = {S, D};
        cr_assert_eq(nr_states_encode(want, 2, sh, NR_DTYPE_F32, &bad, &bl), 0);
        cr_assert_eq(nr_captioner_frame_to_states(f.cap, bad, bl, got, err, sizeof err), NR_EPROTO);
        cr_assert(strstr(err, "vit-gpt2") && strstr(err, "git"), "%s", err);
        free(bad);
        sh[0] = S - 1;
        cr_assert_eq(nr_states_encode_family("git", want, 2, sh, NR_DTYPE_F32, &bad, &bl), 0);
        cr_assert_eq(nr_captioner_frame_to_states(f.cap, bad, bl, got, err, sizeof err), NR_EPROTO);
        free(bad);
        free(fr);
        for (int i = 0; i < 2; i++) free(bytes[i]);
        free(want);
        free(got);
        s_fix_free(&f);
    }
}

/* A BF16 checkpoint keeps the matmul weights of the vision tower, the
 * projection and the decoder mapped (models/weights.h): on every kernel path
 * and CPU precision it gives what the F32 checkpoint of the same values
 * gives. */
Test(git, bf16_checkpoint_stays_mapped) { nr_test_bf16_twins_agree("git-tiny", 12, 3); }
