/* BLIP (models/blip.h, models/clip.h NR_VISION_BLIP, family "blip") against
 * the independent PyTorch reference of tests/fixtures/reference_blip.py on
 * two tiny random checkpoints in the published layout: blip-tiny (F32
 * safetensors without the tied decoder copies, 40 px) and blip-tiny-bin (F16
 * pytorch_model.bin with them, 48 px): vision states, per-step logits
 * (whole, token by token through the cache, chunked), greedy and beam ids
 * with and without a text prompt, the BlipImageProcessor path, frames; a
 * BF16 copy of blip-tiny (weights mapped) against its F32 twin. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/backend.h"
#include "models/blip.h"
#include "models/captioner.h"
#include "models/config.h"
#include "models/io/checkpoint.h"
#include "models/io/safetensors.h"
#include "models/states.h"
#include "model_ref.h"
#include "models/text/wordpiece.h"

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
    f.max_length = strcmp(name, "blip-tiny") == 0 ? 12 : 10; /* reference_blip.py's FIXTURES */
    f.num_beams = 3;
    return f;
}

static void s_fix_free(s_fix_t *f) {
    nr_captioner_destroy(&f->cap);
    nr_safetensors_close(&f->ref);
}

static float *s_ref(const s_fix_t *f, const char *name, size_t *count) { return nr_test_ref(f->ref, name, count); }
static int *s_ref_ids(const s_fix_t *f, const char *name, int *count) { return nr_test_ref_ids(f->ref, name, count); }
static double s_close(const float *a, const float *b, size_t n, double *max_abs) {
    return nr_test_close(a, b, n, TOL_ABS, TOL_REL, max_abs);
}

static const char *s_fixtures[] = {"blip-tiny", "blip-tiny-bin"};

Test(blip, config_and_shapes) {
    char path[1200], err[512];
    nr_model_config_t c;
    snprintf(path, sizeof path, "%s/tests/fixtures/blip-tiny", nr_test_src());
    cr_assert_eq(nr_model_config_load(path, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.family, "blip");
    cr_assert_eq(c.wordpiece, 1);
    cr_assert_eq(c.blip.vision.hidden_act, NR_ACT_GELU);
    cr_assert_float_eq(c.blip.vision.layer_norm_eps, 1e-5f, 1e-12);
    cr_assert_float_eq(c.blip.layer_norm_eps, 1e-12f, 1e-20);
    cr_assert_eq(c.states_seq, 26);
    cr_assert_eq(c.states_hidden, 24);
    cr_assert_eq(c.dec_hidden, 24);
    cr_assert_eq(c.blip.hidden_size, 32);
    cr_assert_eq(c.max_positions, 40);
    cr_assert_eq(c.vocab_size, 2102);
    /* generate(): [DEC] first, eos = sep_token_id (not text_config.eos_token_id 2), pad 0 */
    cr_assert_eq(c.gen.decoder_start_token_id, 2100);
    cr_assert_eq(c.gen.eos_token_id, 102);
    cr_assert_eq(c.gen.pad_token_id, 0);
    cr_assert_eq(c.gen.max_length, 20);
    cr_assert_eq(c.gen.num_beams, 1);
    cr_assert_eq(c.gen.prompt_len, 0);
    /* defaults are BlipVisionConfig's / BlipTextConfig's: blip-image-captioning-base sizes */
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"blip\"}", NULL, "x", &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.blip.vision.image_size, 384);
    cr_assert_eq(c.states_seq, 577);
    cr_assert_eq(c.states_hidden, 768);
    cr_assert_eq(c.blip.num_attention_heads, 8);
    cr_assert_eq(c.vocab_size, 30524);
    cr_assert_eq(c.max_positions, 512);
    cr_assert_eq(c.gen.decoder_start_token_id, 30522);
    cr_assert_eq(c.gen.eos_token_id, 102);
    cr_assert_eq(c.blip.tie_word_embeddings, 1);
    /* generation settings are text_config's; generation_config.json is not
     * what text_decoder.generate() reads */
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"blip\",\"text_config\":{\"max_length\":30,\"num_beams\":3}}",
                                       "{\"max_length\":5}", "x", &c, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(c.gen.max_length, 30);
    cr_assert_eq(c.gen.num_beams, 3);
    /* refused: an encoder-only text model, relative positions, bad sizes */
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"blip\",\"text_config\":{\"is_decoder\":false}}", NULL, "x",
                                       &c, err, sizeof err),
                 NR_EMODEL);
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"blip\",\"text_config\":{\"position_embedding_type\":"
                                       "\"relative_key\"}}",
                                       NULL, "x", &c, err, sizeof err),
                 NR_EMODEL);
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"blip\",\"vision_config\":{\"patch_size\":7}}", NULL, "x", &c,
                                       err, sizeof err),
                 NR_EMODEL);
    cr_assert_eq(nr_model_config_parse("{\"model_type\":\"blip\",\"text_config\":{\"sep_token_id\":40000}}", NULL, "x",
                                       &c, err, sizeof err),
                 NR_EMODEL);
}

Test(blip, vision_states_against_reference) {
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        size_t np, ns;
        float *px = s_ref(&f, "pixel_values", &np), *want = s_ref(&f, "vision_states", &ns);
        float *got = malloc(ns * sizeof(float)), *proj = malloc(ns * sizeof(float));
        int S, D;
        nr_captioner_states_shape(f.cap, &S, &D);
        cr_assert_eq((size_t)2 * S * D, ns);
        cr_assert_str_eq(nr_captioner_family(f.cap), "blip");
        cr_assert_eq(nr_captioner_encode(f.cap, px, 2, got, err, sizeof err), 0, "%s", err);
        double ma, q = s_close(got, want, ns, &ma);
        fprintf(stderr, "%s: vision states max abs error %.3g (%.3g of the bound)\n", f.name, ma, q);
        cr_assert(q <= 1.0, "%s: vision states off by %.3g of the bound", f.name, q);
        cr_assert_eq(nr_captioner_encode(f.cap, px + np / 2, 1, got, err, sizeof err), 0, "%s", err);
        cr_assert(s_close(got, want + ns / 2, ns / 2, NULL) <= 1.0);
        /* the decoder reads the states as they are */
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
 * token through the cache, and chunked (4 then 3); misuse refused. */
Test(blip, logits_against_reference) {
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        nr_model_config_t cfg;
        cr_assert_eq(nr_model_config_load(f.dir, &cfg, err, sizeof err), 0, "%s", err);
        nr_checkpoint_t *ck = NULL;
        cr_assert_eq(nr_checkpoint_open_dir(f.dir, &ck, err, sizeof err), 0, "%s", err);
        nr_backend_t *be = nr_backend_new("cpu", 1, err, sizeof err);
        cr_assert_not_null(be, "%s", err);
        nr_blip_decoder_t *m = NULL;
        cr_assert_eq(nr_blip_decoder_load(&cfg.blip, ck, be, &m, err, sizeof err), 0, "%s", err);
        nr_decoder_t d = nr_blip_decoder(m);
        size_t ns, nl;
        int ni;
        float *states = s_ref(&f, "vision_states", &ns), *want = s_ref(&f, "logits", &nl);
        int *ids = s_ref_ids(&f, "input_ids", &ni);
        const int T = ni / 2, V = cfg.vocab_size, S = cfg.states_seq;
        cr_assert_eq(nl, (size_t)2 * T * V);
        float *got = malloc(nl * sizeof(float)), *one = malloc((size_t)2 * V * sizeof(float));
        void *s = d.ops->state_new(d.model, 2, T, 2, S);
        cr_assert_not_null(s);
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, NULL), 0);
        cr_assert_eq(d.ops->step(d.model, s, ids, T, got, 1), 0);
        double ma, q = s_close(got, want, nl, &ma);
        fprintf(stderr, "%s: logits (whole) max abs error %.3g (%.3g of the bound)\n", f.name, ma, q);
        cr_assert(q <= 1.0, "%s: logits off by %.3g of the bound", f.name, q);
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
        /* chunked: 4 tokens, then the last 3 (last-token logits only) */
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, NULL), 0);
        int c4[8], c3[6];
        for (int r = 0; r < 2; r++) {
            memcpy(c4 + 4 * r, ids + r * T, 4 * sizeof(int));
            memcpy(c3 + 3 * r, ids + r * T + 4, 3 * sizeof(int));
        }
        cr_assert_eq(d.ops->step(d.model, s, c4, 4, one, 0), 0);
        for (int r = 0; r < 2; r++) cr_assert(s_close(one + (size_t)r * V, want + ((size_t)r * T + 3) * V, V, NULL) <= 1);
        cr_assert_eq(d.ops->step(d.model, s, c3, 3, one, 0), 0);
        for (int r = 0; r < 2; r++) cr_assert(s_close(one + (size_t)r * V, want + ((size_t)r * T + 6) * V, V, NULL) <= 1);
        cr_assert_eq(d.ops->step(d.model, s, c3, 1, one, 0), NR_EINVAL); /* full: max_len T */
        /* rows swapped after 3 tokens: each keeps its cache, the next step matches the other row's reference */
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, NULL), 0);
        int c3a[6];
        for (int r = 0; r < 2; r++) memcpy(c3a + 3 * r, ids + r * T, 3 * sizeof(int));
        cr_assert_eq(d.ops->step(d.model, s, c3a, 3, one, 0), 0);
        int swap[2] = {1, 0}, nx[2] = {ids[T + 3], ids[3]};
        cr_assert_eq(d.ops->select(d.model, s, swap, 2), 0);
        cr_assert_eq(d.ops->step(d.model, s, nx, 1, one, 0), 0);
        cr_assert(s_close(one, want + ((size_t)1 * T + 3) * V, V, NULL) <= 1);
        cr_assert(s_close(one + V, want + (size_t)3 * V, V, NULL) <= 1);
        /* bad ids and encoder indices */
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, NULL), 0);
        int two[2] = {V, 0};
        cr_assert_eq(d.ops->step(d.model, s, two, 1, one, 0), NR_EINVAL);
        int bad[2] = {0, 2};
        cr_assert_eq(d.ops->set_encoder(d.model, s, states, bad), NR_EINVAL);
        cr_assert_null(d.ops->state_new(d.model, 1, cfg.max_positions + 1, 1, S));
        d.ops->state_destroy(&s);
        cr_assert_null(s);
        free(ids);
        free(got);
        free(one);
        free(states);
        free(want);
        nr_blip_decoder_destroy(&m);
        nr_backend_destroy(&be);
        nr_checkpoint_close(&ck);
        s_fix_free(&f);
    }
}

static void s_check_ids(const s_fix_t *f, const char *what, int i, const int *ids, int len) {
    char name[64];
    snprintf(name, sizeof name, "%s.%d", what, i);
    int n;
    int *want = s_ref_ids(f, name, &n);
    int same = len == n;
    for (int t = 0; same && t < len; t++) same = ids[t] == want[t];
    if (!same) {
        fprintf(stderr, "%s %s: got", f->name, name);
        for (int t = 0; t < len; t++) fprintf(stderr, " %d", ids[t]);
        fprintf(stderr, "\n");
    }
    cr_assert(same, "%s: %s differ from the reference", f->name, name);
    free(want);
}

/* Greedy and beam ids identical to the reference, without and with the
 * prompt: from the reference states and from our own encoder's, both
 * images together and alone. */
Test(blip, generation_against_reference) {
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        size_t ns, np;
        int npr;
        float *states = s_ref(&f, "vision_states", &ns), *px = s_ref(&f, "pixel_values", &np);
        int *prompt = s_ref_ids(&f, "prompt_ids", &npr);
        float *own = malloc(ns * sizeof(float));
        cr_assert_eq(nr_captioner_encode(f.cap, px, 2, own, err, sizeof err), 0, "%s", err);
        /* the text prompt encodes to the reference's ids */
        int *pids = NULL, pn = 0;
        cr_assert_eq(nr_captioner_prompt_ids(f.cap, "There is a", &pids, &pn, err, sizeof err), 0, "%s", err);
        cr_assert_eq(pn, npr);
        cr_assert_eq(memcmp(pids, prompt, (size_t)pn * sizeof(int)), 0);
        nr_gen_config_t g = nr_captioner_gen_defaults(f.cap);
        g.max_length = f.max_length;
        int ids[2 * 16], lens[2];
        const float *sources[2] = {states, own};
        for (int pr = 0; pr < 2; pr++) {
            g.prompt_ids = pr ? pids : NULL;
            g.prompt_len = pr ? pn : 0;
            for (int src = 0; src < 2; src++)
                for (int beams = 1; beams <= f.num_beams; beams += f.num_beams - 1) {
                    g.num_beams = beams;
                    const char *what = beams == 1 ? (pr ? "prompt_greedy_ids" : "greedy_ids")
                                                  : (pr ? "prompt_beam_ids" : "beam_ids");
                    cr_assert_eq(nr_captioner_generate(f.cap, sources[src], 2, &g, ids, lens, err, sizeof err), 0,
                                 "%s", err);
                    for (int i = 0; i < 2; i++) s_check_ids(&f, what, i, ids + i * g.max_length, lens[i]);
                    for (int i = 0; i < 2; i++) {
                        cr_assert_eq(nr_captioner_generate(f.cap, sources[src] + (size_t)i * ns / 2, 1, &g, ids, lens,
                                                           err, sizeof err),
                                     0, "%s", err);
                        s_check_ids(&f, what, i, ids, lens[0]);
                    }
                }
        }
        /* captions: transformers decodes the prompt with the caption */
        char *caps[2] = {NULL, NULL};
        int nt[2];
        g.num_beams = 1;
        cr_assert_eq(nr_captioner_caption(f.cap, states, 2, &g, caps, nt, err, sizeof err), 0, "%s", err);
        for (int i = 0; i < 2; i++) {
            fprintf(stderr, "%s caption %d (%d tokens): \"%s\"\n", f.name, i, nt[i], caps[i]);
            cr_assert_eq(strncmp(caps[i], "there is a", 10), 0, "%s", caps[i]);
            int n;
            char name[64];
            snprintf(name, sizeof name, "prompt_greedy_ids.%d", i);
            int *w = s_ref_ids(&f, name, &n);
            cr_assert_eq(nt[i], n - 1 - pn - (w[n - 1] == 102));
            free(w);
            free(caps[i]);
        }
        /* no room after the prompt */
        g.max_length = 1 + pn;
        cr_assert_eq(nr_captioner_generate(f.cap, states, 1, &g, ids, lens, err, sizeof err), NR_EOPTION);
        g.max_length = f.max_length;
        int badp[1] = {nr_captioner_config(f.cap)->vocab_size};
        g.prompt_ids = badp;
        g.prompt_len = 1;
        cr_assert_eq(nr_captioner_generate(f.cap, states, 1, &g, ids, lens, err, sizeof err), NR_EOPTION);
        free(pids);
        free(prompt);
        free(states);
        free(px);
        free(own);
        s_fix_free(&f);
    }
}

/* The prompt of the model card ("a picture of") on BLIP's own tokenizer
 * files: [CLS] a picture of [SEP] with the specials off, [DEC] = 30522; and
 * families without prompts refuse one. */
Test(blip, prompt_tokens) {
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/blip-tokenizer", nr_test_src());
    nr_wordpiece_t *wp = NULL;
    cr_assert_eq(nr_wordpiece_load(path, &wp, err, sizeof err), 0, "%s", err);
    cr_assert_eq(nr_wordpiece_special_id(wp, NR_WORDPIECE_BOS), 30522);
    int *ids = NULL;
    size_t n = 0;
    cr_assert_eq(nr_wordpiece_encode(wp, "A picture of", 12, 0, &ids, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_assert_eq(ids[0], 1037);
    cr_assert_eq(ids[1], 3861);
    cr_assert_eq(ids[2], 1997);
    free(ids);
    nr_wordpiece_destroy(&wp);
    snprintf(path, sizeof path, "%s/tests/fixtures/git-tiny", nr_test_src());
    nr_captioner_t *git = NULL;
    cr_assert_eq(nr_captioner_load(path, NULL, &git, err, sizeof err), 0, "%s", err);
    int *p = NULL, pn = 0;
    cr_assert_eq(nr_captioner_prompt_ids(git, "a picture of", &p, &pn, err, sizeof err), NR_EUNSUPPORTED);
    cr_assert_null(p);
    nr_captioner_destroy(&git);
}

/* Image bytes through the checkpoint's BlipImageProcessor config give the
 * reference's states; frames name the family. */
Test(blip, images_and_frames) {
    static const char *images[2] = {"astronaut_rgba.png", "astronaut_50x40_up.jpg"};
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        size_t ns;
        float *want = s_ref(&f, "vision_states", &ns), *got = malloc(ns * sizeof(float));
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
        unsigned char *fr = NULL, *bad = NULL;
        size_t fl = 0, bl = 0;
        cr_assert_eq(nr_captioner_states_to_frame(f.cap, want, &fr, &fl), 0);
        cr_assert_eq(nr_captioner_frame_to_states(f.cap, fr, fl, got, err, sizeof err), 0, "%s", err);
        cr_assert_eq(memcmp(got, want, ns / 2 * sizeof(float)), 0);
        int S, D;
        nr_captioner_states_shape(f.cap, &S, &D);
        int64_t sh[2] = {S, D};
        cr_assert_eq(nr_states_encode_family("git", want, 2, sh, NR_DTYPE_F32, &bad, &bl), 0);
        cr_assert_eq(nr_captioner_frame_to_states(f.cap, bad, bl, got, err, sizeof err), NR_EPROTO);
        cr_assert(strstr(err, "git") && strstr(err, "blip"), "%s", err);
        free(bad);
        free(fr);
        for (int i = 0; i < 2; i++) free(bytes[i]);
        free(want);
        free(got);
        s_fix_free(&f);
    }
}

/* A BF16 checkpoint keeps the matmul weights of the vision tower, the
 * prediction head and the decoder mapped (models/weights.h): on every kernel path
 * and CPU precision it gives what the F32 checkpoint of the same values
 * gives. */
Test(blip, bf16_checkpoint_stays_mapped) { nr_test_bf16_twins_agree("blip-tiny", 12, 3); }
