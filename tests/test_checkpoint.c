/* Tests for models/io/checkpoint.c: one set of tensors whatever form the
 * weights come in. The tiny ViT-GPT2 fixture as the Hub publishes models
 * (sharded safetensors, pytorch_model.bin with tied weights for both
 * fixtures, the one with enc_to_dec_proj included, F16 .bin
 * shards whose tensors are views into one storage, made by torch.save in
 * tests/fixtures/make_bin_fixtures.py) gives the same tensors, the same
 * encoder states and logits and the same captions as its safetensors form;
 * bad indexes are refused with the file named; tie_word_embeddings decides
 * lm_head as transformers does. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "models/captioner.h"
#include "models/io/checkpoint.h"
#include "models/io/safetensors.h"
#include "models/tensor.h"
#include "tests/harness.h"

static const char *const s_side_files[] = {"config.json", "generation_config.json", "preprocessor_config.json",
                                           "vocab.json", "merges.txt"};

static char *s_fixture(const char *rel) {
    char *p = nr_harness_source_path(rel);
    cr_assert_not_null(p, "%s", nr_harness_error());
    return p;
}

static void s_link(const char *target, const char *dir, const char *name) {
    char *dst = nr_harness_path(dir, "%s", name);
    cr_assert_eq(symlink(target, dst), 0, "symlink %s", dst);
    free(dst);
}

/* A new temp folder with fixture folder `fixture`'s config and tokenizer
 * files (symlinked), and no weights. */
static char *s_model_dir_of(const char *fixture, const char *name) {
    char *tmp = nr_harness_tempdir("nr_test_checkpoint");
    cr_assert_not_null(tmp, "%s", nr_harness_error());
    char *dir = nr_harness_path(tmp, "%s", name);
    cr_assert_eq(mkdir(dir, 0755), 0);
    free(tmp);
    for (size_t i = 0; i < sizeof s_side_files / sizeof s_side_files[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s/%s", fixture, s_side_files[i]);
        char *src = s_fixture(rel);
        s_link(src, dir, s_side_files[i]);
        free(src);
    }
    return dir;
}

static char *s_model_dir(const char *name) { return s_model_dir_of("tests/fixtures/vit-gpt2-tiny", name); }

/* Links every file of fixture folder `rel` into dir. */
static void s_link_all(const char *rel, const char *dir) {
    static const char *const names[] = {"pytorch_model.bin", "pytorch_model-00001-of-00002.bin",
                                        "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json"};
    char *folder = s_fixture(rel);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *src = nr_harness_path(folder, "%s", names[i]);
        if (access(src, F_OK) == 0) s_link(src, dir, names[i]);
        free(src);
    }
    free(folder);
}

static nr_checkpoint_t *s_open_dir(const char *dir) {
    char err[1024];
    nr_checkpoint_t *ck = NULL;
    cr_assert_eq(nr_checkpoint_open_dir(dir, &ck, err, sizeof err), 0, "%s", err);
    return ck;
}

/* Every F32/F16/BF16 weight of `want` is in `got` with the same shape and,
 * converted to F32, the same bits. Returns how many were compared. */
static size_t s_same_weights(const nr_checkpoint_t *want, const nr_checkpoint_t *got) {
    size_t compared = 0;
    for (size_t i = 0; i < nr_checkpoint_count(want); i++) {
        const nr_named_tensor_t *w = nr_checkpoint_at(want, i);
        if (w->dtype != NR_DTYPE_F32 && w->dtype != NR_DTYPE_F16 && w->dtype != NR_DTYPE_BF16) continue;
        if (w->ndim == 0) continue; /* GPT-2's masked_bias: a buffer, not a weight */
        const nr_named_tensor_t *g = nr_checkpoint_find(got, w->name);
        cr_assert_not_null(g, "%s: missing %s", nr_checkpoint_path(got), w->name);
        char err[512];
        float *a = NULL, *b = NULL;
        cr_assert_eq(nr_checkpoint_load_f32(want, w->name, -1, NULL, &a, err, sizeof err), 0, "%s", err);
        cr_assert_eq(nr_checkpoint_load_f32(got, w->name, w->ndim, w->shape, &b, err, sizeof err), 0, "%s", err);
        size_t n = w->nbytes / nr_dtype_size(w->dtype);
        cr_assert_eq(memcmp(a, b, n * sizeof(float)), 0, "%s differs between %s and %s", w->name,
                     nr_checkpoint_path(want), nr_checkpoint_path(got));
        free(a);
        free(b);
        compared++;
    }
    return compared;
}

/* Writes the fixture's tensors as `shards` safetensors shards plus an index
 * into dir; `index_extra` is appended inside weight_map (may be ""). */
static void s_write_sharded(const char *dir, int shards, const char *index_extra) {
    char *src = s_fixture("tests/fixtures/vit-gpt2-tiny/model.safetensors");
    char err[1024];
    nr_safetensors_t *st = NULL;
    cr_assert_eq(nr_safetensors_open(src, &st, err, sizeof err), 0, "%s", err);
    size_t n = nr_safetensors_count(st);
    char *index = nr_harness_path(dir, "model.safetensors.index.json");
    FILE *fi = fopen(index, "w");
    cr_assert_not_null(fi);
    fprintf(fi, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int s = 0; s < shards; s++) {
        size_t lo = n * (size_t)s / (size_t)shards, hi = n * (size_t)(s + 1) / (size_t)shards;
        nr_named_tensor_t *part = calloc(hi - lo + 1, sizeof(*part));
        for (size_t i = lo; i < hi; i++) part[i - lo] = *nr_safetensors_at(st, i);
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
        char *path = nr_harness_path(dir, "%s", name);
        cr_assert_eq(nr_safetensors_write(path, part, hi - lo, err, sizeof err), 0, "%s", err);
        for (size_t i = lo; i < hi; i++) fprintf(fi, "%s\"%s\": \"%s\"", i ? ", " : "", part[i - lo].name, name);
        free(path);
        free(part);
    }
    fprintf(fi, "%s}}\n", index_extra);
    fclose(fi);
    free(index);
    nr_safetensors_close(&st);
    free(src);
}

Test(checkpoint, sharded_safetensors_equal_the_single_file) {
    char *fix = s_fixture("tests/fixtures/vit-gpt2-tiny");
    nr_checkpoint_t *single = s_open_dir(fix);
    char *dir = s_model_dir("sharded");
    s_write_sharded(dir, 3, "");
    nr_checkpoint_t *sharded = s_open_dir(dir);
    cr_assert(strstr(nr_checkpoint_path(sharded), "model.safetensors.index.json"), "%s",
              nr_checkpoint_path(sharded));
    cr_assert_eq(nr_checkpoint_count(sharded), nr_checkpoint_count(single));
    cr_assert_gt(s_same_weights(single, sharded), 80);
    /* messages name the shard that holds a tensor */
    const nr_named_tensor_t *t = nr_checkpoint_find(sharded, "decoder.transformer.wte.weight");
    cr_assert_not_null(t);
    cr_assert(strstr(nr_checkpoint_file_of(sharded, t), "-of-00003.safetensors"), "%s",
              nr_checkpoint_file_of(sharded, t));
    nr_checkpoint_close(&sharded);
    nr_checkpoint_close(&sharded);
    nr_checkpoint_close(&single);
    free(dir);
    free(fix);
}

Test(checkpoint, safetensors_preferred_over_bin) {
    char *dir = s_model_dir("both");
    s_link_all("tests/fixtures/vit-gpt2-tiny-bin", dir);
    char *st = s_fixture("tests/fixtures/vit-gpt2-tiny/model.safetensors");
    s_link(st, dir, "model.safetensors");
    nr_checkpoint_t *ck = s_open_dir(dir);
    cr_assert(strstr(nr_checkpoint_path(ck), "/model.safetensors"), "%s", nr_checkpoint_path(ck));
    nr_checkpoint_close(&ck);
    free(st);
    free(dir);
}

Test(checkpoint, bad_indexes_are_refused_with_the_file_named) {
    static const struct {
        const char *extra, *want;
    } cases[] = {
        {", \"encoder.layernorm.weight\": \"../model-00001-of-00003.safetensors\"", "bad shard name"},
        {", \"extra.weight\": \"model-00009-of-00009.safetensors\"", "is missing"},
        {", \"extra.weight\": \"model-00001-of-00003.safetensors\"", "is not in model-00001-of-00003.safetensors"},
        {", \"bad\": 7", "bad shard name"},
    };
    char err[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = s_model_dir("bad");
        s_write_sharded(dir, 3, cases[i].extra);
        nr_checkpoint_t *ck = NULL;
        cr_assert_eq(nr_checkpoint_open_dir(dir, &ck, err, sizeof err), NR_EMODEL, "case %zu", i);
        cr_assert_null(ck);
        cr_assert(strstr(err, "model.safetensors.index.json") && strstr(err, cases[i].want), "case %zu: %s", i, err);
        free(dir);
    }
    /* a tensor in two shards: which copy wins would be a guess */
    char *dir = s_model_dir("dup");
    s_write_sharded(dir, 2, "");
    char *a = nr_harness_path(dir, "model-00001-of-00002.safetensors");
    char *b = nr_harness_path(dir, "model-00002-of-00002.safetensors");
    char *fix = s_fixture("tests/fixtures/vit-gpt2-tiny/model.safetensors");
    cr_assert_eq(unlink(b), 0);
    cr_assert_eq(symlink(fix, b), 0);
    nr_checkpoint_t *ck = NULL;
    cr_assert_eq(nr_checkpoint_open_dir(dir, &ck, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "is in both"), "%s", err);
    /* no weight_map, and no weights at all */
    char *index = nr_harness_path(dir, "model.safetensors.index.json");
    FILE *f = fopen(index, "w");
    fputs("{\"metadata\": {}}", f);
    fclose(f);
    cr_assert_eq(nr_checkpoint_open_dir(dir, &ck, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "weight_map"), "%s", err);
    cr_assert_eq(unlink(index), 0);
    cr_assert_eq(nr_checkpoint_open_dir(dir, &ck, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "no weights") && strstr(err, "fetch.sh"), "%s", err);
    free(index);
    free(fix);
    free(a);
    free(b);
    free(dir);
}

/* pytorch_model.bin (F32, lm_head sharing wte's storage) holds exactly the
 * fixture's weights, and so does each F16 .bin shard against its twin. */
Test(checkpoint, bin_files_hold_the_same_tensors) {
    char *fix = s_fixture("tests/fixtures/vit-gpt2-tiny");
    nr_checkpoint_t *want = s_open_dir(fix);
    char *dir = s_model_dir("bin");
    s_link_all("tests/fixtures/vit-gpt2-tiny-bin", dir);
    nr_checkpoint_t *got = s_open_dir(dir);
    cr_assert(strstr(nr_checkpoint_path(got), "pytorch_model.bin"), "%s", nr_checkpoint_path(got));
    cr_assert_gt(s_same_weights(want, got), 80);
    const nr_named_tensor_t *wte = nr_checkpoint_find(got, "decoder.transformer.wte.weight");
    const nr_named_tensor_t *head = nr_checkpoint_find(got, "decoder.lm_head.weight");
    cr_assert(wte && head && wte->data == head->data, "tied weights should share one storage");
    nr_checkpoint_close(&got);
    nr_checkpoint_close(&want);

    char *twin = s_fixture("tests/fixtures/vit-gpt2-tiny-f16.safetensors");
    char err[1024];
    cr_assert_eq(nr_checkpoint_open_file(twin, &want, err, sizeof err), 0, "%s", err);
    char *f16 = s_model_dir("bin-f16");
    s_link_all("tests/fixtures/vit-gpt2-tiny-bin-f16", f16);
    got = s_open_dir(f16);
    cr_assert(strstr(nr_checkpoint_path(got), "pytorch_model.bin.index.json"), "%s", nr_checkpoint_path(got));
    cr_assert_eq(s_same_weights(want, got), nr_checkpoint_count(want));
    /* views into one storage: every F16 tensor of a shard lies in one span */
    const nr_named_tensor_t *t0 = nr_checkpoint_find(got, "decoder.transformer.wte.weight");
    cr_assert_eq(t0->dtype, NR_DTYPE_F16);
    nr_checkpoint_close(&got);
    nr_checkpoint_close(&want);
    free(f16);
    free(twin);
    free(dir);
    free(fix);
}

/* Encoder states, then greedy and beam captions, of one captioner. */
typedef struct {
    float *states;
    size_t n_states;
    char *greedy, *beam;
} s_run_t;

static s_run_t s_run(const char *dir) {
    char err[1024];
    nr_captioner_t *c = NULL;
    cr_assert_eq(nr_captioner_load(dir, NULL, &c, err, sizeof err), 0, "%s", err);
    int ch, h, w, seq, hidden;
    nr_captioner_pixels_shape(c, &ch, &h, &w);
    nr_captioner_states_shape(c, &seq, &hidden);
    size_t np = (size_t)ch * h * w;
    float *pixels = malloc(np * sizeof(float));
    for (size_t i = 0; i < np; i++) pixels[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    s_run_t r = {.n_states = (size_t)seq * hidden};
    r.states = malloc(r.n_states * sizeof(float));
    cr_assert_eq(nr_captioner_encode(c, pixels, 1, r.states, err, sizeof err), 0, "%s", err);
    nr_gen_config_t gen = nr_captioner_gen_defaults(c);
    gen.num_beams = 1;
    cr_assert_eq(nr_captioner_caption(c, r.states, 1, &gen, &r.greedy, NULL, err, sizeof err), 0, "%s", err);
    gen.num_beams = 4;
    cr_assert_eq(nr_captioner_caption(c, r.states, 1, &gen, &r.beam, NULL, err, sizeof err), 0, "%s", err);
    free(pixels);
    nr_captioner_destroy(&c);
    return r;
}

static void s_same_run(const char *want_dir, const char *got_dir) {
    s_run_t a = s_run(want_dir), b = s_run(got_dir);
    cr_assert_eq(memcmp(a.states, b.states, a.n_states * sizeof(float)), 0, "encoder states differ");
    cr_assert_str_eq(a.greedy, b.greedy);
    cr_assert_str_eq(a.beam, b.beam);
    cr_log_info("%s: greedy \"%s\", beam \"%s\"", got_dir, b.greedy, b.beam);
    free(a.states);
    free(b.states);
    free(a.greedy);
    free(b.greedy);
    free(a.beam);
    free(b.beam);
}

Test(checkpoint, bin_copies_caption_as_their_safetensors_form) {
    char *fix = s_fixture("tests/fixtures/vit-gpt2-tiny");
    char *bin = s_model_dir("bin");
    s_link_all("tests/fixtures/vit-gpt2-tiny-bin", bin);
    s_same_run(fix, bin);

    char *twin = s_fixture("tests/fixtures/vit-gpt2-tiny-f16.safetensors");
    char *st16 = s_model_dir("st-f16");
    s_link(twin, st16, "model.safetensors");
    char *bin16 = s_model_dir("bin-f16");
    s_link_all("tests/fixtures/vit-gpt2-tiny-bin-f16", bin16);
    s_same_run(st16, bin16);

    /* encoder and decoder of different widths: enc_to_dec_proj from the .bin */
    char *proj = s_fixture("tests/fixtures/vit-gpt2-tiny-proj");
    char *proj_bin = s_model_dir_of("tests/fixtures/vit-gpt2-tiny-proj", "proj-bin");
    s_link_all("tests/fixtures/vit-gpt2-tiny-proj-bin", proj_bin);
    s_same_run(proj, proj_bin);
    free(proj_bin);
    free(proj);
    free(bin16);
    free(st16);
    free(twin);
    free(bin);
    free(fix);
}

/* The Hub's safetensors conversion drops lm_head (it shares wte's
 * storage); tie_word_embeddings, not the file, decides what lm_head is. */
Test(checkpoint, tie_word_embeddings_decides_lm_head) {
    char *dir = s_model_dir("untied");
    char *st = s_fixture("tests/fixtures/vit-gpt2-tiny/model.safetensors");
    s_link(st, dir, "model.safetensors");
    /* config.json with "tie_word_embeddings": false in the decoder */
    char *cfg_src = s_fixture("tests/fixtures/vit-gpt2-tiny/config.json");
    size_t n = 0;
    char *cfg = nr_harness_read_file(cfg_src, &n);
    cr_assert_not_null(cfg);
    char *dec = strstr(cfg, "\"decoder\"");
    cr_assert_not_null(dec);
    char *brace = strchr(dec, '{');
    char *cfg_path = nr_harness_path(dir, "config.json");
    cr_assert_eq(unlink(cfg_path), 0);
    FILE *f = fopen(cfg_path, "w");
    fprintf(f, "%.*s \"tie_word_embeddings\": false, %s", (int)(brace + 1 - cfg), cfg, brace + 1);
    fclose(f);
    char err[1024];
    nr_captioner_t *c = NULL;
    cr_assert_eq(nr_captioner_load(dir, NULL, &c, err, sizeof err), NR_EMODEL);
    cr_assert(strstr(err, "decoder.lm_head.weight"), "%s", err);
    /* untied with lm_head in the file (pytorch_model.bin has it): loads,
     * and here lm_head == wte, so it captions as the tied model */
    char *untied_bin = s_model_dir("untied-bin");
    char *cfg_bin = nr_harness_path(untied_bin, "config.json");
    cr_assert_eq(unlink(cfg_bin), 0);
    s_link(cfg_path, untied_bin, "config.json");
    s_link_all("tests/fixtures/vit-gpt2-tiny-bin", untied_bin);
    char *fix = s_fixture("tests/fixtures/vit-gpt2-tiny");
    s_same_run(fix, untied_bin);
    free(fix);
    free(cfg_bin);
    free(untied_bin);
    free(cfg_path);
    free(cfg);
    free(cfg_src);
    free(st);
    free(dir);
}

/* The image processor's output must be the encoder's image_size: a CLIP
 * crop of that size loads; a shortest-edge resize with no crop (a size
 * that follows the image) and a crop of another size are refused. */
Test(checkpoint, processor_output_must_fit_the_encoder) {
    static const struct {
        const char *json;
        int rc;
    } cases[] = {
        {"{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"shortest_edge\": 224}, "
         "\"crop_size\": {\"height\": 224, \"width\": 224}, \"do_center_crop\": true}",
         0},
        {"{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"shortest_edge\": 224}, "
         "\"do_center_crop\": false}",
         NR_EMODEL},
        {"{\"image_processor_type\": \"CLIPImageProcessor\", \"size\": {\"shortest_edge\": 256}, "
         "\"crop_size\": {\"height\": 256, \"width\": 256}, \"do_center_crop\": true}",
         NR_EMODEL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = s_model_dir("proc");
        char *st = s_fixture("tests/fixtures/vit-gpt2-tiny/model.safetensors");
        s_link(st, dir, "model.safetensors");
        char *pp = nr_harness_path(dir, "preprocessor_config.json");
        cr_assert_eq(unlink(pp), 0);
        FILE *f = fopen(pp, "w");
        fputs(cases[i].json, f);
        fclose(f);
        char err[1024];
        nr_captioner_t *c = NULL;
        cr_assert_eq(nr_captioner_load(dir, NULL, &c, err, sizeof err), cases[i].rc, "case %zu: %s", i, err);
        if (cases[i].rc) cr_assert(strstr(err, "image_size"), "case %zu: %s", i, err);
        nr_captioner_destroy(&c);
        free(pp);
        free(st);
        free(dir);
    }
}

/* A ViT encoder whose config says quick_gelu runs quick_gelu (it used to
 * run the exact GELU for any hidden_act but the tanh forms). */
Test(checkpoint, vit_hidden_act_quick_gelu_is_honoured) {
    char *fix = s_fixture("tests/fixtures/vit-gpt2-tiny");
    char *dir = s_model_dir("quick");
    char *st = s_fixture("tests/fixtures/vit-gpt2-tiny/model.safetensors");
    s_link(st, dir, "model.safetensors");
    char *cfg_src = s_fixture("tests/fixtures/vit-gpt2-tiny/config.json");
    char *cfg = nr_harness_read_file(cfg_src, NULL);
    cr_assert_not_null(cfg);
    char *act = strstr(cfg, "\"hidden_act\": \"gelu\"");
    cr_assert_not_null(act, "the fixture's encoder hidden_act");
    char *cfg_path = nr_harness_path(dir, "config.json");
    cr_assert_eq(unlink(cfg_path), 0);
    FILE *f = fopen(cfg_path, "w");
    fprintf(f, "%.*s\"hidden_act\": \"quick_gelu\"%s", (int)(act - cfg), cfg, act + strlen("\"hidden_act\": \"gelu\""));
    fclose(f);
    s_run_t a = s_run(fix), b = s_run(dir);
    int differ = memcmp(a.states, b.states, a.n_states * sizeof(float)) != 0;
    cr_assert(differ, "quick_gelu gave the exact GELU's encoder states");
    free(a.states);
    free(b.states);
    free(a.greedy);
    free(b.greedy);
    free(a.beam);
    free(b.beam);
    free(cfg_path);
    free(cfg);
    free(cfg_src);
    free(st);
    free(dir);
    free(fix);
}
