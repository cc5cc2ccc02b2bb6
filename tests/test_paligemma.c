/* PaliGemma (models/paligemma.c, models/gemma.h, SigLIP in models/clip.h,
 * family "paligemma") against the independent PyTorch reference of
 * tests/fixtures/reference_paligemma.py on two tiny random checkpoints in
 * the published layout (sharded safetensors with an index):
 * paligemma-tiny (F32, one KV head, head_dim 10 over hidden 32) and
 * paligemma-tiny-bf16 (BF16, two KV heads of six query heads): image
 * features, teacher-forced logits (prefix at once, then through the
 * cache), greedy and beam ids for three prompts, the SigLIP preprocessing
 * path from image bytes, frames, config defaults and refusals. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "models/backend.h"
#include "models/captioner.h"
#include "models/config.h"
#include "models/cpu/dispatch.h"
#include "models/gemma.h"
#include "models/io/checkpoint.h"
#include "models/io/safetensors.h"
#include "models/states.h"
#include "models/tensor.h"
#include "models/weights.h"
#include "model_ref.h"

/* float32 engine against the float64 reference: accumulated rounding only */
#define TOL_ABS 1e-4
#define TOL_REL 1e-4

typedef struct {
    const char *name;
    char dir[1024];
    nr_safetensors_t *ref;
    nr_captioner_t *cap;
    int max_length, num_beams;
} s_fix_t;

static const char *s_fixtures[] = {"paligemma-tiny", "paligemma-tiny-bf16"};
static const char *s_prompts[] = {"en", "es", "de"}; /* "caption <language>" */

static s_fix_t s_fix(const char *name) {
    s_fix_t f = {.name = name};
    char path[1200], err[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s-reference.safetensors", nr_test_src(), name);
    cr_assert_eq(nr_safetensors_open(path, &f.ref, err, sizeof err), 0, "%s", err);
    snprintf(f.dir, sizeof f.dir, "%s/tests/fixtures/%s", nr_test_src(), name);
    cr_assert_eq(nr_captioner_load(f.dir, NULL, &f.cap, err, sizeof err), 0, "%s", err);
    const int tiny = strcmp(name, "paligemma-tiny") == 0; /* reference_paligemma.py's FIXTURES */
    f.max_length = tiny ? 14 : 12;
    f.num_beams = tiny ? 3 : 2;
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

/* paligemma-3b-mix-224's config.json as the Hub publishes it (keys that
 * keep their defaults are absent) */
static const char s_published[] =
    "{\"architectures\":[\"PaliGemmaForConditionalGeneration\"],\"bos_token_id\":2,\"eos_token_id\":1,"
    "\"hidden_size\":2048,\"ignore_index\":-100,\"image_token_index\":257152,\"model_type\":\"paligemma\","
    "\"pad_token_id\":0,\"projection_dim\":2048,\"text_config\":{\"hidden_size\":2048,\"intermediate_size\":16384,"
    "\"model_type\":\"gemma\",\"num_attention_heads\":8,\"num_hidden_layers\":18,\"num_image_tokens\":256,"
    "\"num_key_value_heads\":1,\"torch_dtype\":\"float32\",\"vocab_size\":257216},\"torch_dtype\":\"float32\","
    "\"transformers_version\":\"4.41.0.dev0\",\"vision_config\":{\"hidden_size\":1152,\"intermediate_size\":4304,"
    "\"model_type\":\"siglip_vision_model\",\"num_attention_heads\":16,\"num_hidden_layers\":27,"
    "\"num_image_tokens\":256,\"patch_size\":14,\"projection_dim\":2048,\"projector_hidden_act\":\"gelu_fast\","
    "\"vision_use_head\":false},\"vocab_size\":257216}";

Test(paligemma, config_and_shapes) {
    char path[1200], err[512];
    nr_model_config_t c;
    snprintf(path, sizeof path, "%s/tests/fixtures/paligemma-tiny", nr_test_src());
    cr_assert_eq(nr_model_config_load(path, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.family, "paligemma");
    cr_assert_eq(c.gemma_tokenizer, 1);
    cr_assert_eq(c.wordpiece, 0);
    cr_assert_eq(c.states_seq, 16);
    cr_assert_eq(c.states_hidden, 32);
    cr_assert_eq(c.paligemma.head_dim, 10);
    cr_assert_eq(c.paligemma.num_key_value_heads, 1);
    cr_assert_eq(c.paligemma.vision.hidden_act, NR_ACT_GELU_TANH);
    cr_assert_float_eq(c.paligemma.vision.layer_norm_eps, 1e-6f, 1e-12);
    cr_assert_eq(c.max_positions, 8192 - 16);
    cr_assert_eq(c.gen.max_length, 14); /* generation_config's 30 less 16 image tokens */
    cr_assert_eq(c.gen.decoder_start_token_id, 2);
    cr_assert_eq(c.gen.eos_token_id, 1);
    cr_assert_eq(c.gen.pad_token_id, 0);
    cr_assert_eq(c.gen.num_beams, 1);
    /* the published config: SigLIP-So400m at 224 px and Gemma-2B by their defaults */
    cr_assert_eq(nr_model_config_parse(s_published, NULL, "x", &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.image_size, 224);
    cr_assert_eq(c.states_seq, 256);
    cr_assert_eq(c.states_hidden, 2048);
    cr_assert_eq(c.vocab_size, 257216);
    cr_assert_eq(c.paligemma.head_dim, 256);
    cr_assert_eq(c.paligemma.num_attention_heads, 8);
    cr_assert_float_eq(c.paligemma.rope_theta, 10000.0f, 1e-3);
    cr_assert_float_eq(c.paligemma.rms_norm_eps, 1e-6f, 1e-12);
    cr_assert_eq(c.paligemma.image_token_index, 257152);
    cr_assert_eq(c.gen.max_length, 32); /* none in the files */
    /* refused: heads that do not group, biases, a projection of another width, no room */
    static const char heads[] = "{\"model_type\":\"paligemma\",\"vision_config\":{},\"text_config\":{"
                                "\"num_attention_heads\":6,\"num_key_value_heads\":4}}";
    static const char bias[] = "{\"model_type\":\"paligemma\",\"vision_config\":{},\"text_config\":{"
                               "\"attention_bias\":true}}";
    static const char proj[] = "{\"model_type\":\"paligemma\",\"vision_config\":{\"projection_dim\":7},"
                               "\"text_config\":{}}";
    static const char room[] = "{\"model_type\":\"paligemma\",\"vision_config\":{},\"text_config\":{"
                               "\"max_position_embeddings\":190}}";
    static const char notext[] = "{\"model_type\":\"paligemma\",\"vision_config\":{}}";
    static const char odd[] = "{\"model_type\":\"paligemma\",\"vision_config\":{},\"text_config\":{"
                              "\"head_dim\":7}}";
    const char *bad[] = {heads, bias, proj, room, notext, odd};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(nr_model_config_parse(bad[i], NULL, "x", &c, err, sizeof err), NR_EMODEL, "%s", bad[i]);
    /* a max_length that the image tokens use up */
    cr_assert_eq(nr_model_config_parse(s_published, "{\"max_length\":20}", "x", &c, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "image tokens"), "%s", err);
}

Test(paligemma, image_features_against_reference) {
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        size_t np, ns;
        float *px = s_ref(&f, "pixel_values", &np), *want = s_ref(&f, "image_features", &ns);
        float *got = malloc(ns * sizeof(float));
        int S, D;
        nr_captioner_states_shape(f.cap, &S, &D);
        cr_assert_eq((size_t)2 * S * D, ns);
        cr_assert_str_eq(nr_captioner_family(f.cap), "paligemma");
        cr_assert_eq(nr_captioner_encode(f.cap, px, 2, got, err, sizeof err), 0, "%s", err);
        double ma, q = s_close(got, want, ns, &ma);
        fprintf(stderr, "%s: image features max abs error %.3g (%.3g of the bound)\n", f.name, ma, q);
        cr_assert(q <= 1.0, "%s: image features off by %.3g of the bound", f.name, q);
        cr_assert_eq(nr_captioner_encode(f.cap, px + np / 2, 1, got, err, sizeof err), 0, "%s", err);
        cr_assert(s_close(got, want + ns / 2, ns / 2, NULL) <= 1.0);
        free(px);
        free(want);
        free(got);
        s_fix_free(&f);
    }
}

/* The decoder directly: the teacher text's logits with its first tokens
 * (<bos>, "caption en", "\n") as the prefix step, then token by token. */
Test(paligemma, logits_against_reference) {
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        nr_model_config_t cfg;
        cr_assert_eq(nr_model_config_load(f.dir, &cfg, err, sizeof err), 0, "%s", err);
        nr_checkpoint_t *ck = NULL;
        cr_assert_eq(nr_checkpoint_open_dir(f.dir, &ck, err, sizeof err), 0, "%s", err);
        nr_backend_t *be = nr_backend_new("cpu", 1, err, sizeof err);
        cr_assert_not_null(be, "%s", err);
        nr_gemma_t *m = NULL;
        cr_assert_eq(nr_gemma_load(&cfg.paligemma, ck, "language_model.", be, &m, err, sizeof err), 0, "%s", err);
        nr_decoder_t d = nr_gemma_decoder(m);
        size_t ns, nl, ni;
        float *feats = s_ref(&f, "image_features", &ns), *want = s_ref(&f, "logits", &nl);
        float *idf = s_ref(&f, "input_ids", &ni);
        int plen = 0;
        free(nr_test_ref_ids(f.ref, "prompt_ids.en", &plen)); /* the teacher text starts <bos> "caption en\n" */
        const int T = (int)ni / 2, V = cfg.vocab_size, S = cfg.states_seq, P = 1 + plen;
        cr_assert(P < T && T <= 16);
        cr_assert_eq(nl, (size_t)2 * T * V);
        int *ids = malloc(ni * sizeof(int));
        for (size_t i = 0; i < ni; i++) ids[i] = (int)idf[i];
        float *got = malloc(nl * sizeof(float)), *one = malloc((size_t)2 * V * sizeof(float));
        cr_assert_null(d.ops->state_new(d.model, 2, T, 2, S + 1)); /* not this model's image tokens */
        void *s = d.ops->state_new(d.model, 2, T, 2, S);
        cr_assert_not_null(s);
        int pre[32];
        for (int r = 0; r < 2; r++) memcpy(pre + r * P, ids + r * T, P * sizeof(int));
        /* the prefix at once, every position's logits */
        cr_assert_eq(d.ops->set_encoder(d.model, s, feats, NULL), 0);
        cr_assert_eq(d.ops->step(d.model, s, pre, P, got, 1), 0);
        double worst = 0, ma;
        for (int r = 0; r < 2; r++) {
            double q = s_close(got + (size_t)r * P * V, want + (size_t)r * T * V, (size_t)P * V, &ma);
            worst = q > worst ? q : worst;
        }
        /* then token by token through the cache (causal) */
        for (int t = P; t < T; t++) {
            int cur[2] = {ids[t], ids[T + t]};
            cr_assert_eq(d.ops->step(d.model, s, cur, 1, one, 0), 0);
            for (int r = 0; r < 2; r++) {
                double q = s_close(one + (size_t)r * V, want + ((size_t)r * T + t) * V, (size_t)V, &ma);
                worst = q > worst ? q : worst;
            }
        }
        fprintf(stderr, "%s: logits %.3g of the bound\n", f.name, worst);
        cr_assert(worst <= 1.0, "%s: logits off by %.3g of the bound", f.name, worst);
        /* the prefix step's last-token logits; then the rest as one causal chunk */
        cr_assert_eq(d.ops->set_encoder(d.model, s, feats, NULL), 0);
        cr_assert_eq(d.ops->step(d.model, s, pre, P, one, 0), 0);
        for (int r = 0; r < 2; r++)
            cr_assert(s_close(one + (size_t)r * V, want + ((size_t)r * T + P - 1) * V, V, NULL) <= 1);
        int rest[32];
        const int nr = T - P;
        for (int r = 0; r < 2; r++) memcpy(rest + r * nr, ids + r * T + P, (size_t)nr * sizeof(int));
        cr_assert_eq(d.ops->step(d.model, s, rest, nr, got, 1), 0);
        for (int r = 0; r < 2; r++)
            cr_assert(s_close(got + (size_t)r * nr * V, want + ((size_t)r * T + P) * V, (size_t)nr * V, NULL) <= 1);
        cr_assert_eq(d.ops->step(d.model, s, rest, 1, one, 0), NR_EINVAL); /* full: max_len T */
        /* rows swap their places: each then continues as the other */
        cr_assert_eq(d.ops->set_encoder(d.model, s, feats, NULL), 0);
        cr_assert_eq(d.ops->step(d.model, s, pre, P, one, 0), 0);
        int swap[2] = {1, 0};
        cr_assert_eq(d.ops->select(d.model, s, swap, 2), 0);
        int cur[2] = {ids[T + P], ids[P]};
        cr_assert_eq(d.ops->step(d.model, s, cur, 1, one, 0), 0);
        cr_assert(s_close(one, want + ((size_t)T + P) * V, V, NULL) <= 1);
        cr_assert(s_close(one + V, want + (size_t)P * V, V, NULL) <= 1);
        int badid[2] = {V, 0}, badenc[2] = {0, 2};
        cr_assert_eq(d.ops->set_encoder(d.model, s, feats, NULL), 0);
        cr_assert_eq(d.ops->step(d.model, s, badid, 1, one, 0), NR_EINVAL);
        cr_assert_eq(d.ops->set_encoder(d.model, s, feats, badenc), NR_EINVAL);
        d.ops->state_destroy(&s);
        cr_assert_null(s);
        free(ids);
        free(idf);
        free(got);
        free(one);
        free(feats);
        free(want);
        nr_gemma_destroy(&m);
        nr_backend_destroy(&be);
        nr_checkpoint_close(&ck);
        s_fix_free(&f);
    }
}

static void s_check_ids(const s_fix_t *f, const char *name, const int *ids, int len) {
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

/* Greedy and beam ids identical to the reference for every prompt: from
 * the reference features and from our own encoder's, both images together
 * and alone. */
Test(paligemma, generation_against_reference) {
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512], name[64];
        size_t ns, np;
        float *feats = s_ref(&f, "image_features", &ns), *px = s_ref(&f, "pixel_values", &np);
        float *own = malloc(ns * sizeof(float));
        cr_assert_eq(nr_captioner_encode(f.cap, px, 2, own, err, sizeof err), 0, "%s", err);
        const float *sources[2] = {feats, own};
        for (size_t p = 0; p < sizeof s_prompts / sizeof *s_prompts; p++) {
            snprintf(name, sizeof name, "prompt_ids.%s", s_prompts[p]);
            int plen = 0, *prompt = nr_test_ref_ids(f.ref, name, &plen), *mine = NULL, nm = 0;
            /* the language's prompt through the Gemma tokenizer: the reference's ids */
            char text[64];
            cr_assert_eq(nr_captioner_job_prompt(f.cap, NULL, s_prompts[p], text, sizeof text, err, sizeof err), 0,
                         "%s", err);
            cr_assert_eq(nr_captioner_prompt_ids(f.cap, text, &mine, &nm, err, sizeof err), 0, "%s", err);
            cr_assert_eq(nm, plen);
            cr_assert_eq(memcmp(mine, prompt, (size_t)plen * sizeof(int)), 0, "%s: ids of \"%s\"", f.name, text);
            free(mine);
            nr_gen_config_t g = nr_captioner_gen_defaults(f.cap);
            cr_assert_eq(g.max_length, f.max_length);
            g.prompt_ids = prompt;
            g.prompt_len = plen;
            int ids[2 * 16], alone[16], lens[2];
            for (int src = 0; src < 2; src++)
                for (int beams = 1; beams <= f.num_beams; beams += f.num_beams - 1) {
                    g.num_beams = beams;
                    const char *what = beams == 1 ? "greedy_ids" : "beam_ids";
                    cr_assert_eq(nr_captioner_generate(f.cap, sources[src], 2, &g, ids, lens, err, sizeof err), 0,
                                 "%s", err);
                    for (int i = 0; i < 2; i++) {
                        snprintf(name, sizeof name, "%s.%s.%d", what, s_prompts[p], i);
                        s_check_ids(&f, name, ids + i * g.max_length, lens[i]);
                    }
                    for (int i = 0; i < 2; i++) {
                        snprintf(name, sizeof name, "%s.%s.%d", what, s_prompts[p], i);
                        int len1 = 0;
                        cr_assert_eq(nr_captioner_generate(f.cap, sources[src] + (size_t)i * ns / 2, 1, &g, alone,
                                                           &len1, err, sizeof err),
                                     0, "%s", err);
                        s_check_ids(&f, name, alone, len1);
                    }
                }
            /* the greedy captions: decoded after the prompt, special tokens skipped */
            char *caps[2] = {NULL, NULL};
            int nt[2];
            g.num_beams = 1;
            cr_assert_eq(nr_captioner_caption(f.cap, feats, 2, &g, caps, nt, err, sizeof err), 0, "%s", err);
            for (int i = 0; i < 2; i++) {
                snprintf(name, sizeof name, "greedy_caption.%s.%d", s_prompts[p], i);
                size_t n = 0;
                float *want = s_ref(&f, name, &n);
                char *w = calloc(n + 1, 1);
                for (size_t j = 0; j < n; j++) w[j] = (char)(unsigned char)want[j];
                cr_assert_str_eq(caps[i], w, "%s %s", f.name, name);
                fprintf(stderr, "%s %s: \"%s\" (%d tokens)\n", f.name, name, caps[i], nt[i]);
                free(w);
                free(want);
                free(caps[i]);
            }
            free(prompt);
        }
        free(feats);
        free(px);
        free(own);
        s_fix_free(&f);
    }
}

/* A BF16 checkpoint keeps its matmul weights in the mapping (Gemma's,
 * SigLIP's fused q|k|v, out_proj and MLP, the projector, the tied
 * embeddings) on every CPU precision and kernel path, packed or widened to
 * F32 per block where the path runs a precision as F32; encoded from its
 * own pixels that way, it gives the reference's greedy ids. */
Test(paligemma, bf16_weights_stay_in_the_mapping) {
    s_fix_t f = s_fix("paligemma-tiny-bf16");
    char err[512];
    nr_checkpoint_t *ck = NULL;
    cr_assert_eq(nr_checkpoint_open_dir(f.dir, &ck, err, sizeof err), 0, "%s", err);
    const char *one[] = {"language_model.model.layers.0.mlp.gate_proj.weight", "language_model.model.embed_tokens.weight",
                         "vision_tower.vision_model.encoder.layers.0.mlp.fc2.weight", "multi_modal_projector.linear.weight"};
    const char *qkv[3] = {"encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.self_attn.k_proj.weight",
                          "encoder.layers.0.self_attn.v_proj.weight"};
    size_t np;
    float *px = s_ref(&f, "pixel_values", &np);
    int plen = 0, *prompt = nr_test_ref_ids(f.ref, "prompt_ids.en", &plen);
    const nr_cpu_path_t was = nr_cpu_path();
    const char *devs[3] = {"cpu", "cpu:bf16", "cpu:int8"};
    int runs = 0;
    for (int path = 0; path < NR_CPU_PATH_COUNT; path++) {
        if (!nr_cpu_path_supported((nr_cpu_path_t)path)) continue;
        cr_assert_eq(nr_cpu_path_set((nr_cpu_path_t)path), 0);
        for (int k = 0; k < 3; k++) {
            nr_backend_t *be = nr_backend_new(devs[k], 1, err, sizeof err);
            cr_assert_not_null(be, "%s", err);
            for (size_t i = 0; i < sizeof one / sizeof *one; i++) {
                const nr_named_tensor_t *t = nr_checkpoint_find(ck, one[i]);
                cr_assert(t && t->dtype == NR_DTYPE_BF16 && t->ndim == 2);
                nr_wstore_t ws = {.be = be, .ck = ck, .prefix = ""};
                float *w = NULL;
                cr_assert_eq(nr_wstore_get_matmul(&ws, one[i], &w, err, sizeof err, t->shape[0], t->shape[1], 1), 0,
                             "%s", err);
                cr_assert_eq((const void *)w, t->data, "%s: %s made a copy", devs[k], one[i]);
                nr_wstore_free(&ws);
            }
            nr_wstore_t ws = {.be = be, .ck = ck, .prefix = "vision_tower.vision_model."};
            const nr_named_tensor_t *q = nr_checkpoint_find(ck, "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight");
            cr_assert_not_null(q);
            int64_t rows[3] = {q->shape[0], q->shape[0], q->shape[0]};
            float *w = NULL;
            cr_assert_eq(nr_wstore_concat_matmul(&ws, qkv, rows, 3, q->shape[1], 9, &w, err, sizeof err), 0, "%s", err);
            cr_assert_eq((const void *)w, q->data, "%s: q|k|v not keyed by the mapping", devs[k]);
            nr_wstore_free(&ws);
            nr_backend_destroy(&be);
            /* the whole model, from its own pixels */
            nr_captioner_params_t p = nr_captioner_default_params();
            p.device = devs[k];
            p.num_threads = 1;
            nr_captioner_t *cap = NULL;
            cr_assert_eq(nr_captioner_load(f.dir, &p, &cap, err, sizeof err), 0, "%s", err);
            int S, D;
            nr_captioner_states_shape(cap, &S, &D);
            float *feats = malloc((size_t)2 * S * D * sizeof(float));
            cr_assert_eq(nr_captioner_encode(cap, px, 2, feats, err, sizeof err), 0, "%s", err);
            nr_gen_config_t g = nr_captioner_gen_defaults(cap);
            g.prompt_ids = prompt;
            g.prompt_len = plen;
            int ids[2 * 16], lens[2];
            cr_assert_eq(nr_captioner_generate(cap, feats, 2, &g, ids, lens, err, sizeof err), 0, "%s", err);
            fprintf(stderr, "%s mapped, %s on %s:\n", f.name, devs[k], nr_cpu_path_name((nr_cpu_path_t)path));
            for (int i = 0; i < 2; i++) {
                char name[64];
                snprintf(name, sizeof name, "greedy_ids.en.%d", i);
                s_check_ids(&f, name, ids + i * g.max_length, lens[i]);
            }
            free(feats);
            nr_captioner_destroy(&cap);
            runs++;
        }
    }
    cr_assert_eq(nr_cpu_path_set(was), 0);
    cr_assert_geq(runs, 3);
    free(prompt);
    free(px);
    nr_checkpoint_close(&ck);
    s_fix_free(&f);
}

/* A mapped BF16 weight too large for one block of the F32 widening (8 MB)
 * multiplies as the F32 matmul of the same values, on every precision
 * where these rows run as F32: decode-sized (each pool part its own
 * blocks) and prefix-sized (blocks shared by the parts). */
static void s_widened(int M) {
    const int N = 2100, K = 1100; /* 9.2 MB of F32: two blocks and a tail */
    uint16_t *w16 = malloc((size_t)N * K * sizeof(uint16_t));
    float *w = malloc((size_t)N * K * sizeof(float)), *x = malloc((size_t)M * K * sizeof(float));
    float *want = malloc((size_t)M * N * sizeof(float)), *got = malloc((size_t)M * N * sizeof(float));
    uint32_t r = 12345;
    for (size_t i = 0; i < (size_t)N * K; i++) {
        r = r * 1664525u + 1013904223u;
        w16[i] = nr_f32_to_bf16(((float)(r >> 8) / 16777216.0f - 0.5f) * 0.1f);
        w[i] = nr_bf16_to_f32(w16[i]);
    }
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = (float)((i * 7919) % 101) / 50.0f - 1.0f;
    char err[256];
    nr_backend_t *ref = nr_backend_new("cpu", 2, err, sizeof err); /* the first: a pool of two, parts split W */
    cr_assert_not_null(ref, "%s", err);
    cr_assert_eq(ref->ops->matmul(ref->ctx, want, N, x, K, w, NR_W_OUT_IN, M, N, K, 0), 0);
    const char *devs[3] = {"cpu", "cpu:bf16", "cpu:int8"};
    for (int k = 0; k < 3; k++) {
        nr_backend_t *be = nr_backend_new(devs[k], 1, err, sizeof err);
        cr_assert_not_null(be, "%s", err);
        /* prepared for more rows than a precision packs for (AMX BF16
         * packs for any: nothing to widen there), it is read in place */
        const int rc = be->ops->adopt_bf16(be->ctx, (const float *)w16, w16, NR_W_OUT_IN, N, K, 1 << 30);
        cr_assert(rc == 1 || (rc == 0 && k == 1 && nr_cpu_path() == NR_CPU_PATH_AMX), "%s: %d", devs[k], rc);
        for (int acc = 0; acc < 2 * rc; acc++) {
            for (size_t i = 0; i < (size_t)M * N; i++) got[i] = acc ? 1.0f : -7.0f;
            cr_assert_eq(be->ops->matmul(be->ctx, got, N, x, K, (const float *)w16, NR_W_OUT_IN, M, N, K, acc), 0);
            double worst = 0;
            for (size_t i = 0; i < (size_t)M * N; i++) {
                const double d = fabs(got[i] - (want[i] + (acc ? 1.0 : 0.0)));
                worst = d > worst ? d : worst;
            }
            cr_assert_lt(worst, 1e-5, "%s, %d rows, accumulate %d: %g", devs[k], M, acc, worst);
        }
        nr_backend_destroy(&be);
    }
    nr_backend_destroy(&ref);
    free(w16);
    free(w);
    free(x);
    free(want);
    free(got);
}

Test(paligemma, mapped_bf16_weight_widened_in_blocks) {
    for (int M = 5; M <= 40; M += 35) s_widened(M);
}

/* Prompts: "caption <language>" unless the job names a prompt; languages
 * are codes; a family without languages refuses one, naming itself. */
Test(paligemma, prompts_and_languages) {
    s_fix_t f = s_fix("paligemma-tiny");
    char out[300], err[512];
    cr_assert(nr_captioner_takes_language(f.cap));
    cr_assert_eq(nr_captioner_job_prompt(f.cap, NULL, NULL, out, sizeof out, err, sizeof err), 0);
    cr_assert_str_eq(out, "caption en");
    cr_assert_eq(nr_captioner_job_prompt(f.cap, "", "pt-BR", out, sizeof out, err, sizeof err), 0);
    cr_assert_str_eq(out, "caption pt-BR");
    cr_assert_eq(nr_captioner_job_prompt(f.cap, "answer en what is this?", "es", out, sizeof out, err, sizeof err), 0);
    cr_assert_str_eq(out, "answer en what is this?");
    const char *bad[] = {"e", "english", "EN", "en-", "en-x", "en_US", "en-US-", "es-abcdefghi", "zh-TW;rm", "e1",
                         "abcdefghijklmnopq"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_not(nr_captioner_language_valid(bad[i]), "%s", bad[i]);
        cr_assert_eq(nr_captioner_job_prompt(f.cap, NULL, bad[i], out, sizeof out, err, sizeof err), NR_EOPTION);
    }
    const char *good[] = {"en", "es", "zh-TW", "pt-BR", "sr-Latn-RS", "yue"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) cr_assert(nr_captioner_language_valid(good[i]), "%s", good[i]);
    /* the prompt's ids end with "\n"'s */
    int *ids = NULL, n = 0;
    cr_assert_eq(nr_captioner_prompt_ids(f.cap, "caption en", &ids, &n, err, sizeof err), 0, "%s", err);
    cr_assert(n >= 2);
    cr_assert_eq(ids[n - 1], 19);
    free(ids);
    s_fix_free(&f);
    /* git: no languages, and its default is no prompt */
    char dir[1200];
    nr_captioner_t *git = NULL;
    snprintf(dir, sizeof dir, "%s/tests/fixtures/git-tiny", nr_test_src());
    cr_assert_eq(nr_captioner_load(dir, NULL, &git, err, sizeof err), 0, "%s", err);
    cr_assert_not(nr_captioner_takes_language(git));
    cr_assert_eq(nr_captioner_job_prompt(git, NULL, "es", out, sizeof out, err, sizeof err), NR_EUNSUPPORTED);
    cr_assert(strstr(err, "git") && strstr(err, "language"), "%s", err);
    cr_assert_eq(nr_captioner_job_prompt(git, NULL, NULL, out, sizeof out, err, sizeof err), 0);
    cr_assert_str_eq(out, "");
    nr_captioner_destroy(&git);
}

/* Image bytes through the checkpoint's SiglipImageProcessor config give
 * the reference's features; frames name the family. */
Test(paligemma, images_and_frames) {
    static const char *images[2] = {"astronaut_50x40_up.jpg", "chelsea_317x211.jpg"};
    for (size_t k = 0; k < 2; k++) {
        s_fix_t f = s_fix(s_fixtures[k]);
        char err[512];
        size_t ns;
        float *want = s_ref(&f, "image_features", &ns), *got = malloc(ns * sizeof(float));
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
            fprintf(stderr, "%s: features from image bytes max abs error %.3g\n", f.name, ma);
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
        cr_assert(strstr(err, "git") && strstr(err, "paligemma"), "%s", err);
        free(bad);
        free(fr);
        for (int i = 0; i < 2; i++) free(bytes[i]);
        free(want);
        free(got);
        s_fix_free(&f);
    }
}
