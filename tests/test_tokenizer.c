/* Tests for models/tokenizer: the real GPT-2 vocabulary
 * (tests/fixtures/vit-gpt2-tiny/vocab.json + merges.txt) against ids from
 * two independent encoders (tests/fixtures/tokenizer_cases.json). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "models/tokenizer.h"
#include "tests/harness.h"

static const char *s_src(void) {
    const char *s = getenv("NR_SOURCE_DIR");
    return s ? s : ".";
}

static void s_write(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static nr_tokenizer_t *s_gpt2(void) {
    char dir[4096], err[512] = "";
    snprintf(dir, sizeof(dir), "%s/tests/fixtures/vit-gpt2-tiny", s_src());
    nr_tokenizer_t *t = NULL;
    int rc = nr_tokenizer_load(dir, &t, err, sizeof(err));
    cr_assert_eq(rc, 0, "load %s: %s", dir, err);
    return t;
}

static cJSON *s_cases(void) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/fixtures/tokenizer_cases.json", s_src());
    char *text = nr_harness_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(j);
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

Test(tokenizer, vocabulary_facts) {
    nr_tokenizer_t *t = s_gpt2();
    cr_assert_eq(nr_tokenizer_vocab_size(t), 50257);
    cr_assert_eq(nr_tokenizer_token_id(t, "<|endoftext|>"), 50256);
    cr_assert_eq(nr_tokenizer_token_id(t, "\xc4\xa0the"), 262); /* "Ġthe" */
    cr_assert_eq(nr_tokenizer_token_id(t, "!"), 0);
    cr_assert_eq(nr_tokenizer_token_id(t, "no-such-token-xyz"), -1);
    cr_assert(nr_tokenizer_is_special(t, 50256));
    cr_assert_not(nr_tokenizer_is_special(t, 262));
    cr_assert_not(nr_tokenizer_is_special(t, 99999));
    nr_tokenizer_destroy(&t);
    nr_tokenizer_destroy(&t);
    cr_assert_null(t);
}

Test(tokenizer, encode_matches_gpt3_encoder_and_tiktoken) {
    nr_tokenizer_t *t = s_gpt2();
    cJSON *j = s_cases();
    int n_cases = 0, n_ok = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "encode")) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        size_t n_exp;
        int *exp = s_ids(cJSON_GetObjectItem(c, "ids"), &n_exp);
        int *ids = NULL;
        size_t n = 0;
        char err[256] = "";
        cr_assert_eq(nr_tokenizer_encode(t, text, strlen(text), &ids, &n, err, sizeof(err)), 0, "%s", err);
        int same = n == n_exp && (n == 0 || memcmp(ids, exp, n * sizeof(int)) == 0);
        cr_expect(same, "encode mismatch for \"%s\": %zu ids, expected %zu", text, n, n_exp);
        n_ok += same;
        /* And back: decoding gives the text again. */
        char *back = NULL;
        size_t blen = 0;
        cr_assert_eq(nr_tokenizer_decode(t, exp, n_exp, 0, &back, &blen, err, sizeof(err)), 0, "%s", err);
        cr_expect_str_eq(back, text);
        cr_expect_eq(blen, strlen(text));
        free(back);
        free(ids);
        free(exp);
        n_cases++;
    }
    cr_assert_geq(n_cases, 50);
    cr_log_info("encode: %d of %d cases identical to gpt-3-encoder and js-tiktoken r50k_base", n_ok, n_cases);
    cJSON_Delete(j);
    nr_tokenizer_destroy(&t);
}

Test(tokenizer, decode_replaces_invalid_utf8_like_python) {
    nr_tokenizer_t *t = s_gpt2();
    cJSON *j = s_cases();
    int n_cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "decode")) {
        size_t n;
        int *ids = s_ids(cJSON_GetObjectItem(c, "ids"), &n);
        char *text = NULL;
        cr_assert_eq(nr_tokenizer_decode(t, ids, n, 0, &text, NULL, NULL, 0), 0);
        cr_expect_str_eq(text, cJSON_GetObjectItem(c, "text")->valuestring, "decode case %d", n_cases);
        free(text);
        free(ids);
        n_cases++;
    }
    cr_assert_geq(n_cases, 25);
    cJSON_Delete(j);
    nr_tokenizer_destroy(&t);
}

Test(tokenizer, decode_options) {
    nr_tokenizer_t *t = s_gpt2();
    int *ids = NULL;
    size_t n = 0;
    const char *s = "a cat , on a couch . I 'm sure it 's fine ! Is n't it ?";
    cr_assert_eq(nr_tokenizer_encode(t, s, strlen(s), &ids, &n, NULL, 0), 0);
    int *all = malloc(sizeof(int) * (n + 2));
    all[0] = 50256;
    memcpy(all + 1, ids, n * sizeof(int));
    all[n + 1] = 50256;
    char *text = NULL;
    cr_assert_eq(nr_tokenizer_decode(t, all, n + 2, 0, &text, NULL, NULL, 0), 0);
    cr_assert_str_eq(text, "<|endoftext|>a cat , on a couch . I 'm sure it 's fine ! Is n't it ?<|endoftext|>");
    free(text);
    cr_assert_eq(nr_tokenizer_decode(t, all, n + 2, NR_TOKENIZER_SKIP_SPECIAL, &text, NULL, NULL, 0), 0);
    cr_assert_str_eq(text, s);
    free(text);
    size_t len = 0;
    cr_assert_eq(nr_tokenizer_decode(t, all, n + 2, NR_TOKENIZER_SKIP_SPECIAL | NR_TOKENIZER_CLEANUP, &text, &len,
                                     NULL, 0),
                 0);
    cr_assert_str_eq(text, "a cat, on a couch. I'm sure it's fine! Isn't it?");
    cr_assert_eq(len, strlen(text));
    free(text);
    cr_assert_eq(nr_tokenizer_decode(t, all, 0, 0, &text, &len, NULL, 0), 0);
    cr_assert_str_eq(text, "");
    free(text);
    free(all);
    free(ids);
    nr_tokenizer_destroy(&t);
}

Test(tokenizer, bad_input) {
    nr_tokenizer_t *t = s_gpt2();
    int *ids = (int *)0x1;
    size_t n = 7;
    char err[256] = "";
    cr_assert_eq(nr_tokenizer_encode(t, "ab\xff", 3, &ids, &n, err, sizeof(err)), NR_ETEXT);
    cr_assert_null(ids);
    cr_assert_eq(n, 0);
    cr_assert_eq(nr_tokenizer_encode(t, "\xed\xa0\x80", 3, &ids, &n, err, sizeof(err)), NR_ETEXT); /* surrogate */
    cr_assert_eq(nr_tokenizer_encode(t, "\xc3", 1, &ids, &n, err, sizeof(err)), NR_ETEXT);
    /* Embedded NUL is text like any other byte. */
    cr_assert_eq(nr_tokenizer_encode(t, "a\0b", 3, &ids, &n, err, sizeof(err)), 0);
    cr_assert_eq(n, 3);
    free(ids);
    int bad[] = {262, 50257};
    char *text = (char *)0x1;
    cr_assert_eq(nr_tokenizer_decode(t, bad, 2, 0, &text, NULL, err, sizeof(err)), NR_EINVAL);
    cr_assert_null(text);
    cr_assert_not_null(strstr(err, "50257"), "%s", err);
    bad[1] = -1;
    cr_assert_eq(nr_tokenizer_decode(t, bad, 2, 0, &text, NULL, err, sizeof(err)), NR_EINVAL);
    nr_tokenizer_destroy(&t);
}

/* Loads dir and expects NR_EMODEL with `named` in the message. */
static void s_expect_bad(const char *dir, const char *named) {
    nr_tokenizer_t *t = (nr_tokenizer_t *)0x1;
    char err[512] = "";
    int rc = nr_tokenizer_load(dir, &t, err, sizeof(err));
    cr_assert_eq(rc, NR_EMODEL, "rc %d (%s)", rc, err);
    cr_assert_null(t);
    cr_assert_not_null(strstr(err, named), "message '%s' does not name %s", err, named);
}

Test(tokenizer, missing_or_corrupt_files_are_bad_model) {
    char dir[] = "/tmp/nr-tok-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char v[600], m[600], j[600];
    snprintf(v, sizeof(v), "%s/vocab.json", dir);
    snprintf(m, sizeof(m), "%s/merges.txt", dir);
    snprintf(j, sizeof(j), "%s/tokenizer.json", dir);
    s_expect_bad(dir, dir); /* nothing there */
    /* A small but complete byte-level vocabulary: 256 bytes + "Ġt" ... */
    char *src_vocab = NULL;
    {
        char p[4096];
        snprintf(p, sizeof(p), "%s/tests/fixtures/vit-gpt2-tiny/vocab.json", s_src());
        src_vocab = nr_harness_read_file(p, NULL);
        cr_assert_not_null(src_vocab);
    }
    s_write(v, src_vocab);
    s_write(m, "#version: 0.2\n\xc4\xa0 t\n");
    nr_tokenizer_t *t = NULL;
    char err[512];
    cr_assert_eq(nr_tokenizer_load(dir, &t, err, sizeof(err)), 0, "%s", err);
    nr_tokenizer_destroy(&t);
    s_write(m, "#version: 0.2\n\xc4\xa0 t\nnot-a-token zzzqqq\n");
    s_expect_bad(dir, "merges.txt");
    s_write(m, "#version: 0.2\nonlyonefield\n");
    s_expect_bad(dir, "merges.txt");
    s_write(m, "#version: 0.2\n");
    s_expect_bad(dir, "merges.txt");
    s_write(m, "#version: 0.2\n\xc4\xa0 t\n");
    s_write(v, "{\"a\": 0, \"b\": ");
    s_expect_bad(dir, "vocab.json");
    s_write(v, "[1, 2, 3]");
    s_expect_bad(dir, "vocab.json");
    s_write(v, "{\"a\": 0, \"b\": 1}"); /* not byte-level: one-byte tokens missing */
    s_expect_bad(dir, "vocab.json");
    s_write(v, "{\"a\": \"x\"}");
    s_expect_bad(dir, "vocab.json");
    unlink(m);
    unlink(v);
    s_write(j, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
    s_expect_bad(dir, "tokenizer.json");
    s_write(j, "{\"model\": ");
    s_expect_bad(dir, "tokenizer.json");
    unlink(j);
    cr_assert_eq(nr_tokenizer_load_files("/nonexistent/vocab.json", "/nonexistent/merges.txt", &t, err, sizeof(err)),
                 NR_EMODEL);
    cr_assert_not_null(strstr(err, "/nonexistent/vocab.json"));
    rmdir(dir);
    free(src_vocab);
}

/* tokenizer.json built from the same vocabulary (merges as "A B" strings
 * and as ["A", "B"] pairs) encodes the same. */
Test(tokenizer, tokenizer_json) {
    char p[4096];
    snprintf(p, sizeof(p), "%s/tests/fixtures/vit-gpt2-tiny/vocab.json", s_src());
    char *vt = nr_harness_read_file(p, NULL);
    snprintf(p, sizeof(p), "%s/tests/fixtures/vit-gpt2-tiny/merges.txt", s_src());
    char *mt = nr_harness_read_file(p, NULL);
    cr_assert(vt && mt);
    char dir[] = "/tmp/nr-tokj-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char jp[600];
    snprintf(jp, sizeof(jp), "%s/tokenizer.json", dir);
    nr_tokenizer_t *ref = s_gpt2();
    for (int pairs = 0; pairs < 2; pairs++) {
        cJSON *root = cJSON_CreateObject();
        cJSON *model = cJSON_AddObjectToObject(root, "model");
        cJSON_AddStringToObject(model, "type", "BPE");
        cJSON_AddItemToObject(model, "vocab", cJSON_Parse(vt));
        cJSON *merges = cJSON_AddArrayToObject(model, "merges");
        char *line = mt, *nl;
        int first = 1;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            if (!first && *line) {
                if (pairs) {
                    char *sp = strchr(line, ' ');
                    *sp = '\0';
                    cJSON *pr = cJSON_CreateArray();
                    cJSON_AddItemToArray(pr, cJSON_CreateString(line));
                    cJSON_AddItemToArray(pr, cJSON_CreateString(sp + 1));
                    cJSON_AddItemToArray(merges, pr);
                    *sp = ' ';
                } else {
                    cJSON_AddItemToArray(merges, cJSON_CreateString(line));
                }
            }
            first = 0;
            *nl = '\n';
            line = nl + 1;
        }
        cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", 50256);
        cJSON_AddStringToObject(a, "content", "<|endoftext|>");
        cJSON_AddBoolToObject(a, "special", 1);
        cJSON_AddItemToArray(added, a);
        char *out = cJSON_PrintUnformatted(root);
        s_write(jp, out);
        free(out);
        cJSON_Delete(root);
        nr_tokenizer_t *t = NULL;
        char err[512] = "";
        cr_assert_eq(nr_tokenizer_load(dir, &t, err, sizeof(err)), 0, "%s", err);
        cr_assert(nr_tokenizer_is_special(t, 50256));
        const char *texts[] = {"Hello world, it's a cat!", "  spaces\n\nand 数字 123 😀", "\"quoted\\backslash\""};
        for (int i = 0; i < 3; i++) {
            int *a1, *a2;
            size_t n1, n2;
            cr_assert_eq(nr_tokenizer_encode(t, texts[i], strlen(texts[i]), &a1, &n1, NULL, 0), 0);
            cr_assert_eq(nr_tokenizer_encode(ref, texts[i], strlen(texts[i]), &a2, &n2, NULL, 0), 0);
            cr_assert_eq(n1, n2);
            cr_assert_eq(memcmp(a1, a2, n1 * sizeof(int)), 0);
            free(a1);
            free(a2);
        }
        nr_tokenizer_destroy(&t);
    }
    unlink(jp);
    rmdir(dir);
    nr_tokenizer_destroy(&ref);
    free(vt);
    free(mt);
}
