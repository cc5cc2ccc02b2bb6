/* Tests for models/text/gemma_tokenizer: two small tokenizer.json files in
 * Gemma's layout (tests/fixtures/gemma-tokenizer) against ids and text from
 * two independent references (cases.json: a transcription of the Rust
 * tokenizers library and @huggingface/tokenizers), round trips, queries and
 * malformed files. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "models/text/gemma_tokenizer.h"
#include "tests/harness.h"

static const char *s_src(void) {
    const char *s = getenv("NR_SOURCE_DIR");
    return s ? s : ".";
}

static nr_gemma_tokenizer_t *s_load(const char *name) {
    char path[4096], err[512] = "";
    snprintf(path, sizeof(path), "%s/tests/fixtures/gemma-tokenizer/%s", s_src(), name);
    nr_gemma_tokenizer_t *t = NULL;
    int rc = nr_gemma_tokenizer_load(path, &t, err, sizeof(err));
    cr_assert_eq(rc, 0, "load %s: %s", path, err);
    cr_assert_not_null(t);
    return t;
}

static cJSON *s_read_json(const char *rel) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", s_src(), rel);
    char *text = nr_harness_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(j, "%s: not JSON", path);
    return j;
}

static int *s_ids(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int *ids = malloc(sizeof(int) * (*n + 1));
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) ids[i++] = e->valueint;
    return ids;
}

/* A hex field of cases.json as bytes (NUL-terminated; *n without the NUL). */
static char *s_unhex(const cJSON *c, const char *key, size_t *n) {
    const char *h = cJSON_GetObjectItem(c, key)->valuestring;
    *n = strlen(h) / 2;
    char *s = malloc(*n + 1);
    for (size_t i = 0; i < *n; i++) {
        unsigned v = 0;
        cr_assert_eq(sscanf(h + 2 * i, "%2x", &v), 1);
        s[i] = (char)v;
    }
    s[*n] = '\0';
    return s;
}

static char *s_decode(const nr_gemma_tokenizer_t *t, const int *ids, size_t n, unsigned flags, size_t *len) {
    char *text = NULL, err[256] = "";
    *len = 99;
    cr_assert_eq(nr_gemma_tokenizer_decode(t, ids, n, flags, &text, len, err, sizeof(err)), 0, "%s", err);
    cr_assert_not_null(text);
    cr_expect_eq(text[*len], '\0');
    return text;
}

static void s_expect_bytes(const char *got, size_t n, const char *exp, size_t n_exp, const char *what, int i) {
    cr_expect(n == n_exp && memcmp(got, exp, n) == 0, "%s case %d: \"%s\" != \"%s\"", what, i, got, exp);
}

/* Every case of every set in cases.json, exactly. */
Test(gemma_tokenizer, matches_references) {
    cJSON *j = s_read_json("tests/fixtures/gemma-tokenizer/cases.json");
    const cJSON *set;
    int n_sets = 0, n_enc = 0, n_dec = 0;
    cJSON_ArrayForEach(set, cJSON_GetObjectItem(j, "sets")) {
        const char *file = strrchr(cJSON_GetObjectItem(set, "tokenizer")->valuestring, '/') + 1;
        nr_gemma_tokenizer_t *t = s_load(file);
        cr_assert_eq(nr_gemma_tokenizer_vocab_size(t), cJSON_GetObjectItem(set, "vocab_size")->valueint);
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(set, "encode")) {
            size_t len, n_exp, n = 0;
            char *text = s_unhex(c, "hex", &len);
            int *exp = s_ids(cJSON_GetObjectItem(c, "ids"), &n_exp), *ids = NULL;
            char err[256] = "";
            cr_assert_eq(nr_gemma_tokenizer_encode(t, text, len, &ids, &n, err, sizeof(err)), 0, "%s", err);
            cr_expect_eq(n, n_exp, "%s \"%s\": %zu ids, expected %zu", file, text, n, n_exp);
            for (size_t i = 0; i < n && i < n_exp; i++)
                cr_expect_eq(ids[i], exp[i], "%s \"%s\" id %zu: %d != %d", file, text, i, ids[i], exp[i]);
            free(ids);
            free(exp);
            free(text);
            n_enc++;
        }
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(set, "decode")) {
            size_t n;
            int *ids = s_ids(cJSON_GetObjectItem(c, "ids"), &n);
            size_t n_skip, n_keep, n_eskip, n_ekeep;
            char *skip = s_decode(t, ids, n, NR_GEMMA_TOKENIZER_SKIP_SPECIAL, &n_skip);
            char *keep = s_decode(t, ids, n, 0, &n_keep);
            char *eskip = s_unhex(c, "skip_special_hex", &n_eskip), *ekeep = s_unhex(c, "keep_special_hex", &n_ekeep);
            s_expect_bytes(skip, n_skip, eskip, n_eskip, file, n_dec);
            s_expect_bytes(keep, n_keep, ekeep, n_ekeep, file, n_dec);
            free(skip);
            free(keep);
            free(eskip);
            free(ekeep);
            free(ids);
            n_dec++;
        }
        nr_gemma_tokenizer_destroy(&t);
        n_sets++;
    }
    cr_assert_eq(n_sets, 2);
    cr_assert_geq(n_enc, 150);
    cr_assert_geq(n_dec, 190);
    cJSON_Delete(j);
}

/* With Gemma's layout decode(encode(x)) gives x back, special tokens and
 * all, for any text without a literal "▁" (which decodes as a space). */
Test(gemma_tokenizer, round_trip) {
    nr_gemma_tokenizer_t *t = s_load("tokenizer.json");
    cJSON *j = s_read_json("tests/fixtures/gemma-tokenizer/cases.json");
    const cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "sets"), 0), "encode")) {
        size_t len, n_back, n = 0;
        char *text = s_unhex(c, "hex", &len);
        int *ids = NULL;
        if (!strstr(text, "\xE2\x96\x81")) {
            cr_assert_eq(nr_gemma_tokenizer_encode(t, text, len, &ids, &n, NULL, 0), 0);
            char *back = s_decode(t, ids, n, 0, &n_back);
            s_expect_bytes(back, n_back, text, len, "round trip", n_cases);
            free(back);
        }
        free(ids);
        free(text);
        n_cases++;
    }
    cr_assert_geq(n_cases, 70);
    /* Text with a NUL byte inside survives too (byte fallback <0x00>). */
    static const char nul[] = "a\0b";
    int *ids = NULL;
    size_t n = 0;
    cr_assert_eq(nr_gemma_tokenizer_encode(t, nul, 3, &ids, &n, NULL, 0), 0);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(nr_gemma_tokenizer_decode(t, ids, n, 0, &text, &len, NULL, 0), 0);
    cr_assert_eq(len, 3);
    cr_assert(memcmp(text, nul, 3) == 0);
    free(text);
    free(ids);
    cJSON_Delete(j);
    nr_gemma_tokenizer_destroy(&t);
}

Test(gemma_tokenizer, queries) {
    nr_gemma_tokenizer_t *t = s_load("tokenizer.json");
    int n = nr_gemma_tokenizer_vocab_size(t);
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, "<pad>"), 0);
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, "<eos>"), 1);
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, "<bos>"), 2);
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, "<image>"), n - 1); /* added only, after the vocabulary */
    int loc = nr_gemma_tokenizer_token_id(t, "<loc0000>");
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, "<loc1023>"), loc + 1023);
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, "<seg000>"), loc + 1024);
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, "<0x00>"), nr_gemma_tokenizer_token_id(t, "<0x0A>") - 10);
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, "<0x09>"), -1); /* Gemma has "\t" there */
    cr_assert_geq(nr_gemma_tokenizer_token_id(t, "\t"), 0);
    cr_assert_geq(nr_gemma_tokenizer_token_id(t, "\n"), 0);
    cr_assert_geq(nr_gemma_tokenizer_token_id(t, "\xE2\x96\x81" "cat"), 0);
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, "no such token"), -1);
    cr_assert_eq(nr_gemma_tokenizer_token_id(t, NULL), -1);
    cr_assert_str_eq(nr_gemma_tokenizer_token(t, 2), "<bos>");
    cr_assert_str_eq(nr_gemma_tokenizer_token(t, n - 1), "<image>");
    cr_assert_null(nr_gemma_tokenizer_token(t, n));
    cr_assert_null(nr_gemma_tokenizer_token(t, -1));
    cr_assert(nr_gemma_tokenizer_is_special(t, 2) && nr_gemma_tokenizer_is_special(t, n - 1));
    cr_assert(nr_gemma_tokenizer_is_special(t, nr_gemma_tokenizer_token_id(t, "<start_of_turn>")));
    cr_assert_not(nr_gemma_tokenizer_is_special(t, loc));
    cr_assert_not(nr_gemma_tokenizer_is_special(t, nr_gemma_tokenizer_token_id(t, "\n")));
    cr_assert_not(nr_gemma_tokenizer_is_special(t, nr_gemma_tokenizer_token_id(t, "<unused3>")));
    cr_assert_not(nr_gemma_tokenizer_is_special(t, n));
    nr_gemma_tokenizer_destroy(&t);
    nr_gemma_tokenizer_destroy(&t);
    cr_assert_null(t);
}

Test(gemma_tokenizer, bad_input) {
    nr_gemma_tokenizer_t *t = s_load("tokenizer.json");
    int *ids = (int *)1;
    size_t n = 7;
    char err[256] = "";
    cr_assert_eq(nr_gemma_tokenizer_encode(t, "ok \xC3\x28", 5, &ids, &n, err, sizeof(err)), NR_ETEXT);
    cr_assert_null(ids);
    cr_assert_eq(n, 0);
    cr_assert(strstr(err, "byte 3"), "%s", err);
    cr_assert_eq(nr_gemma_tokenizer_encode(t, "\xED\xA0\x80", 3, &ids, &n, NULL, 0), NR_ETEXT); /* surrogate */
    cr_assert_eq(nr_gemma_tokenizer_encode(t, "", 0, &ids, &n, NULL, 0), 0);
    cr_assert_not_null(ids);
    cr_assert_eq(n, 0);
    free(ids);
    int bad[] = {2, nr_gemma_tokenizer_vocab_size(t)};
    char *text = (char *)1;
    cr_assert_eq(nr_gemma_tokenizer_decode(t, bad, 2, 0, &text, NULL, err, sizeof(err)), NR_EINVAL);
    cr_assert_null(text);
    cr_assert(strstr(err, "out of range"), "%s", err);
    bad[1] = -1;
    cr_assert_eq(nr_gemma_tokenizer_decode(t, bad, 2, 0, &text, NULL, NULL, 0), NR_EINVAL);
    cr_assert_eq(nr_gemma_tokenizer_decode(t, NULL, 0, 0, &text, NULL, NULL, 0), 0);
    cr_assert_str_eq(text, "");
    free(text);
    nr_gemma_tokenizer_destroy(&t);
}

/* A copy of the fixture with one change, written to dir/name. */
static char *s_variant(const char *dir, const char *name, void (*edit)(cJSON *)) {
    cJSON *j = s_read_json("tests/fixtures/gemma-tokenizer/tokenizer.json");
    edit(j);
    char *text = cJSON_PrintUnformatted(j);
    char *path = nr_harness_path(dir, "%s", name);
    cr_assert_eq(nr_harness_write_file(path, text, strlen(text)), 0);
    free(text);
    cJSON_Delete(j);
    return path;
}

static cJSON *s_model(cJSON *j) { return cJSON_GetObjectItem(j, "model"); }
static void s_wordpiece(cJSON *j) { cJSON_ReplaceItemInObject(s_model(j), "type", cJSON_CreateString("WordPiece")); }
static void s_bad_merge(cJSON *j) { cJSON_AddItemToArray(cJSON_GetObjectItem(s_model(j), "merges"), cJSON_CreateString("zz qq")); }
static void s_three_merge(cJSON *j) { cJSON_AddItemToArray(cJSON_GetObjectItem(s_model(j), "merges"), cJSON_CreateString("a b c")); }
static void s_mixed_merges(cJSON *j) {
    cJSON_AddItemToArray(cJSON_GetObjectItem(s_model(j), "merges"), cJSON_Parse("[\"a\", \"b\"]"));
}
static void s_no_merges(cJSON *j) { cJSON_DeleteItemFromObject(s_model(j), "merges"); }
static void s_unk(cJSON *j) { cJSON_ReplaceItemInObject(s_model(j), "unk_token", cJSON_CreateString("<nope>")); }
static void s_dropout(cJSON *j) { cJSON_ReplaceItemInObject(s_model(j), "dropout", cJSON_CreateNumber(0.1)); }
static void s_bad_id(cJSON *j) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(s_model(j), "vocab"), "a", cJSON_CreateNumber(-5)); }
static void s_dup_id(cJSON *j) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(s_model(j), "vocab"), "a", cJSON_CreateNumber(2)); }
static void s_nfkc(cJSON *j) { cJSON_ReplaceItemInObject(j, "normalizer", cJSON_Parse("{\"type\":\"NFKC\"}")); }
static void s_regex(cJSON *j) {
    cJSON_ReplaceItemInObject(j, "normalizer", cJSON_Parse("{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},\"content\":\"x\"}"));
}
static void s_metaspace(cJSON *j) { cJSON_ReplaceItemInObject(j, "pre_tokenizer", cJSON_Parse("{\"type\":\"Metaspace\"}")); }
static void s_bytelevel(cJSON *j) { cJSON_ReplaceItemInObject(j, "decoder", cJSON_Parse("{\"type\":\"ByteLevel\"}")); }
static void s_lstrip(cJSON *j) {
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "added_tokens"), 2), "lstrip", cJSON_CreateTrue());
}
static void s_added_mismatch(cJSON *j) {
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "added_tokens"), 2), "id", cJSON_CreateNumber(1));
}
static void s_blowup(cJSON *j) {
    cJSON_ReplaceItemInObject(j, "normalizer", cJSON_Parse("{\"type\":\"Sequence\",\"normalizers\":["
                                                           "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"aaaaaaaaaa\"},"
                                                           "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"aaaaaaaaaa\"}]}"));
}
static void s_added_long(cJSON *j) {
    char long_token[1100];
    memset(long_token, 'x', sizeof long_token - 1);
    long_token[sizeof long_token - 1] = '\0';
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "added_tokens"), 5), "content",
                              cJSON_CreateString(long_token));
}
static void s_added_big(cJSON *j) {
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "added_tokens"), 0), "id", cJSON_CreateNumber(1e12));
}

Test(gemma_tokenizer, malformed_files) {
    char *dir = nr_harness_tempdir("gemmatok");
    cr_assert_not_null(dir);
    static const struct {
        const char *name;
        void (*edit)(cJSON *);
        const char *msg;
    } cases[] = {
        {"wordpiece.json", s_wordpiece, "not BPE"},
        {"bad_merge.json", s_bad_merge, "not in the vocabulary"},
        {"three_merge.json", s_three_merge, "two tokens"},
        {"no_merges.json", s_no_merges, "merges"},
        {"mixed_merges.json", s_mixed_merges, "mixes"},
        {"unk.json", s_unk, "unk_token"},
        {"dropout.json", s_dropout, "dropout"},
        {"bad_id.json", s_bad_id, "bad id"},
        {"dup_id.json", s_dup_id, "twice"},
        {"nfkc.json", s_nfkc, "NFKC"},
        {"regex.json", s_regex, "String"},
        {"metaspace.json", s_metaspace, "pre_tokenizer"},
        {"bytelevel.json", s_bytelevel, "ByteLevel"},
        {"lstrip.json", s_lstrip, "lstrip"},
        {"added_mismatch.json", s_added_mismatch, "vocabulary gives"},
        {"added_big.json", s_added_big, "bad id"},
        {"added_long.json", s_added_long, "longer than"},
        {"blowup.json", s_blowup, "lengthens text"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = s_variant(dir, cases[i].name, cases[i].edit);
        nr_gemma_tokenizer_t *t = (nr_gemma_tokenizer_t *)1;
        char err[512] = "";
        cr_expect_eq(nr_gemma_tokenizer_load(path, &t, err, sizeof(err)), NR_EMODEL, "%s", cases[i].name);
        cr_expect_null(t);
        cr_expect(strstr(err, cases[i].msg) && strstr(err, cases[i].name), "%s: %s", cases[i].name, err);
        free(path);
    }
    /* Not JSON, truncated, missing. */
    char *path = nr_harness_path(dir, "trunc.json");
    char *src = nr_harness_source_path("tests/fixtures/gemma-tokenizer/tokenizer.json");
    cr_assert_not_null(src);
    char *full = nr_harness_read_file(src, NULL);
    free(src);
    cr_assert_not_null(full);
    cr_assert_eq(nr_harness_write_file(path, full, strlen(full) / 2), 0);
    free(full);
    nr_gemma_tokenizer_t *t = NULL;
    char err[512] = "";
    cr_expect_eq(nr_gemma_tokenizer_load(path, &t, err, sizeof(err)), NR_EMODEL);
    cr_expect(strstr(err, "not valid JSON"), "%s", err);
    free(path);
    path = nr_harness_path(dir, "missing.json");
    cr_expect_eq(nr_gemma_tokenizer_load(path, &t, err, sizeof(err)), NR_EMODEL);
    cr_expect(strstr(err, "missing"), "%s", err);
    free(path);
    cr_expect_eq(nr_gemma_tokenizer_load(NULL, &t, err, sizeof(err)), NR_EINVAL);
    nr_harness_rmtree(dir);
    free(dir);
}
