/* Tests for models/text/wordpiece: bert-base-uncased's real vocab.txt with
 * BLIP's added tokens (tests/fixtures/blip-tokenizer) against ids and text
 * from two independent references (tests/fixtures/wordpiece_cases.json:
 * @huggingface/tokenizers and a transcription of transformers' slow
 * BertTokenizer), plus loading, options and bad input. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "models/text/wordpiece.h"
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

static nr_wordpiece_t *s_load(const char *name) {
    char dir[4096], err[512] = "";
    snprintf(dir, sizeof(dir), "%s/tests/fixtures/%s", s_src(), name);
    nr_wordpiece_t *t = NULL;
    int rc = nr_wordpiece_load(dir, &t, err, sizeof(err));
    cr_assert_eq(rc, 0, "load %s: %s", dir, err);
    return t;
}

static cJSON *s_cases(void) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/fixtures/wordpiece_cases.json", s_src());
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

static void s_expect_ids(const nr_wordpiece_t *t, const char *text, unsigned flags, const int *exp, size_t n_exp) {
    int *ids = NULL;
    size_t n = 0;
    char err[256] = "";
    cr_assert_eq(nr_wordpiece_encode(t, text, strlen(text), flags, &ids, &n, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(n, n_exp, "\"%s\": %zu ids, expected %zu", text, n, n_exp);
    for (size_t i = 0; i < n && i < n_exp; i++) cr_expect_eq(ids[i], exp[i], "\"%s\" id %zu: %d != %d", text, i, ids[i], exp[i]);
    free(ids);
}

Test(wordpiece, vocabulary_facts) {
    nr_wordpiece_t *t = s_load("blip-tokenizer");
    cr_assert_eq(nr_wordpiece_vocab_size(t), 30524);
    cr_assert_eq(nr_wordpiece_token_id(t, "[DEC]"), 30522);
    cr_assert_eq(nr_wordpiece_token_id(t, "[ENC]"), 30523);
    cr_assert_eq(nr_wordpiece_token_id(t, "the"), 1996);
    cr_assert_eq(nr_wordpiece_token_id(t, "##berries"), 20968);
    cr_assert_eq(nr_wordpiece_token_id(t, "no-such-token"), -1);
    cr_assert_str_eq(nr_wordpiece_token(t, 101), "[CLS]");
    cr_assert_null(nr_wordpiece_token(t, 30524));
    cr_assert_eq(nr_wordpiece_special_id(t, NR_WORDPIECE_BOS), 30522);
    cr_assert_eq(nr_wordpiece_special_id(t, NR_WORDPIECE_CLS), 101);
    cr_assert_eq(nr_wordpiece_special_id(t, NR_WORDPIECE_SEP), 102);
    cr_assert_eq(nr_wordpiece_special_id(t, NR_WORDPIECE_PAD), 0);
    cr_assert_eq(nr_wordpiece_special_id(t, NR_WORDPIECE_UNK), 100);
    cr_assert_eq(nr_wordpiece_special_id(t, NR_WORDPIECE_EOS), -1);
    cr_assert(nr_wordpiece_is_special(t, 30522) && nr_wordpiece_is_special(t, 30523) && nr_wordpiece_is_special(t, 103));
    cr_assert_not(nr_wordpiece_is_special(t, 1996));
    cr_assert_not(nr_wordpiece_is_special(t, 5)); /* [unused4] */
    cr_assert_eq(nr_wordpiece_max_length(t), 512);
    cr_assert(nr_wordpiece_cleanup_default(t));
    nr_wordpiece_destroy(&t);
    nr_wordpiece_destroy(&t);
    cr_assert_null(t);
    /* GIT's tokenizer: the plain bert-base-uncased folder. */
    t = s_load("bert-base-uncased");
    cr_assert_eq(nr_wordpiece_vocab_size(t), 30522);
    cr_assert_eq(nr_wordpiece_token_id(t, "[DEC]"), -1);
    cr_assert_eq(nr_wordpiece_special_id(t, NR_WORDPIECE_BOS), -1);
    static const int git[] = {101, 1037, 3861, 1997, 102};
    s_expect_ids(t, "a picture of", NR_WORDPIECE_ADD_SPECIAL, git, 5);
    nr_wordpiece_destroy(&t);
}

Test(wordpiece, encode_matches_references) {
    nr_wordpiece_t *t = s_load("blip-tokenizer");
    cJSON *j = s_cases();
    int n_cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "encode")) {
        size_t n_exp;
        int *exp = s_ids(cJSON_GetObjectItem(c, "ids"), &n_exp);
        s_expect_ids(t, cJSON_GetObjectItem(c, "text")->valuestring, 0, exp, n_exp);
        free(exp);
        n_cases++;
    }
    cr_assert_geq(n_cases, 70);
    cJSON_Delete(j);
    nr_wordpiece_destroy(&t);
}

Test(wordpiece, decode_matches_references) {
    nr_wordpiece_t *t = s_load("blip-tokenizer");
    cJSON *j = s_cases();
    int n_cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "decode")) {
        size_t n;
        int *ids = s_ids(cJSON_GetObjectItem(c, "ids"), &n);
        char *text = NULL, err[256] = "";
        size_t len = 0;
        cr_assert_eq(nr_wordpiece_decode(t, ids, n, NR_WORDPIECE_SKIP_SPECIAL | NR_WORDPIECE_CLEANUP, &text, &len, err,
                                         sizeof(err)),
                     0, "%s", err);
        cr_expect_str_eq(text, cJSON_GetObjectItem(c, "text")->valuestring, "decode case %d", n_cases);
        cr_expect_eq(len, strlen(text));
        free(text);
        free(ids);
        n_cases++;
    }
    cr_assert_geq(n_cases, 80);
    cJSON_Delete(j);
    nr_wordpiece_destroy(&t);
}

Test(wordpiece, encode_and_decode_options) {
    nr_wordpiece_t *t = s_load("blip-tokenizer");
    static const int prompt[] = {101, 1037, 3861, 1997, 102};
    s_expect_ids(t, "a picture of", NR_WORDPIECE_ADD_SPECIAL, prompt, 5);
    static const int dec[] = {30522, 1037, 3861, 1997};
    s_expect_ids(t, "[DEC]a picture of", 0, dec, 4);
    int ids[] = {30522, 1037, 4937, 1010, 2009, 1005, 1055, 2986, 999, 102};
    char *text = NULL;
    cr_assert_eq(nr_wordpiece_decode(t, ids, 10, 0, &text, NULL, NULL, 0), 0);
    cr_assert_str_eq(text, "[DEC] a cat , it ' s fine ! [SEP]");
    free(text);
    cr_assert_eq(nr_wordpiece_decode(t, ids, 10, NR_WORDPIECE_SKIP_SPECIAL, &text, NULL, NULL, 0), 0);
    cr_assert_str_eq(text, "a cat , it ' s fine !");
    free(text);
    cr_assert_eq(nr_wordpiece_decode(t, ids, 10, NR_WORDPIECE_SKIP_SPECIAL | NR_WORDPIECE_CLEANUP, &text, NULL, NULL, 0), 0);
    cr_assert_str_eq(text, "a cat, it's fine!");
    free(text);
    size_t len = 7;
    cr_assert_eq(nr_wordpiece_decode(t, ids, 0, 0, &text, &len, NULL, 0), 0);
    cr_assert_str_eq(text, "");
    cr_assert_eq(len, 0);
    free(text);
    nr_wordpiece_destroy(&t);
}

Test(wordpiece, bad_input) {
    nr_wordpiece_t *t = s_load("blip-tokenizer");
    int *ids = (int *)0x1;
    size_t n = 7;
    char err[256] = "";
    cr_assert_eq(nr_wordpiece_encode(t, "ab\xff", 3, 0, &ids, &n, err, sizeof(err)), NR_ETEXT);
    cr_assert_null(ids);
    cr_assert_eq(n, 0);
    cr_assert_eq(nr_wordpiece_encode(t, "\xed\xa0\x80", 3, 0, &ids, &n, err, sizeof(err)), NR_ETEXT);
    cr_assert_eq(nr_wordpiece_encode(t, "\xc3", 1, 0, &ids, &n, err, sizeof(err)), NR_ETEXT);
    cr_assert_eq(nr_wordpiece_encode(t, "a\0b", 3, 0, &ids, &n, err, sizeof(err)), 0); /* NUL is dropped */
    cr_assert_eq(n, 1);
    free(ids);
    cr_assert_eq(nr_wordpiece_encode(t, NULL, 0, 0, &ids, &n, err, sizeof(err)), 0);
    cr_assert_eq(n, 0);
    free(ids);
    int bad[] = {1996, 30524};
    char *text = (char *)0x1;
    cr_assert_eq(nr_wordpiece_decode(t, bad, 2, 0, &text, NULL, err, sizeof(err)), NR_EINVAL);
    cr_assert_null(text);
    cr_assert_not_null(strstr(err, "30524"), "%s", err);
    bad[1] = -1;
    cr_assert_eq(nr_wordpiece_decode(t, bad, 2, 0, &text, NULL, err, sizeof(err)), NR_EINVAL);
    nr_wordpiece_destroy(&t);
}

static void s_expect_bad(const char *dir, const char *named) {
    nr_wordpiece_t *t = (nr_wordpiece_t *)0x1;
    char err[512] = "";
    int rc = nr_wordpiece_load(dir, &t, err, sizeof(err));
    cr_assert_eq(rc, NR_EMODEL, "rc %d (%s)", rc, err);
    cr_assert_null(t);
    cr_assert_not_null(strstr(err, named), "message '%s' does not name %s", err, named);
}

Test(wordpiece, missing_or_corrupt_files_are_bad_model) {
    char dir[] = "/tmp/nr-wp-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char v[600], c[600], j[600];
    snprintf(v, sizeof(v), "%s/vocab.txt", dir);
    snprintf(c, sizeof(c), "%s/tokenizer_config.json", dir);
    snprintf(j, sizeof(j), "%s/tokenizer.json", dir);
    s_expect_bad(dir, dir); /* nothing there */
    s_write(v, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\n");
    nr_wordpiece_t *t = NULL;
    char err[512];
    cr_assert_eq(nr_wordpiece_load(dir, &t, err, sizeof(err)), 0, "%s", err);
    static const int thes[] = {5, 6};
    s_expect_ids(t, "THEs", 0, thes, 2);
    nr_wordpiece_destroy(&t);
    s_write(v, "");
    s_expect_bad(dir, "vocab.txt");
    s_write(v, "[UNK]\nab\xff\n");
    s_expect_bad(dir, "vocab.txt");
    char *longline = malloc(3000);
    memset(longline, 'a', 2999);
    longline[2999] = '\0';
    s_write(v, longline);
    free(longline);
    s_expect_bad(dir, "vocab.txt");
    s_write(v, "the\n"); /* special tokens missing from the vocabulary are added after it, as transformers does */
    cr_assert_eq(nr_wordpiece_load(dir, &t, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(nr_wordpiece_special_id(t, NR_WORDPIECE_UNK), 1);
    cr_assert_eq(nr_wordpiece_special_id(t, NR_WORDPIECE_MASK), 5);
    cr_assert_eq(nr_wordpiece_vocab_size(t), 6);
    nr_wordpiece_destroy(&t);
    s_write(v, "[UNK]\nthe\n");
    s_write(c, "{\"do_lower_case\": ");
    s_expect_bad(dir, "tokenizer_config.json");
    s_write(c, "{\"do_lower_case\": false, \"strip_accents\": true, \"unk_token\": {\"content\": \"[UNK]\"}}");
    cr_assert_eq(nr_wordpiece_load(dir, &t, err, sizeof(err)), 0, "%s", err);
    static const int cased[] = {0, 1}; /* "The" is not "the" when cased */
    s_expect_ids(t, "The th\xc3\xa9", 0, cased, 2);
    nr_wordpiece_destroy(&t);
    unlink(c);
    unlink(v);
    /* tokenizer.json alone. */
    s_write(j, "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}");
    s_expect_bad(dir, "tokenizer.json");
    s_write(j, "{\"model\": ");
    s_expect_bad(dir, "tokenizer.json");
    s_write(j, "{\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"vocab\": {\"[UNK]\": 0, \"[CLS]\": 1, "
               "\"[SEP]\": 2, \"cafe\": 3, \"##s\": 4}}, \"normalizer\": {\"type\": \"BertNormalizer\", \"lowercase\": "
               "true}, \"added_tokens\": [{\"id\": 5, \"content\": \"[DEC]\", \"special\": true}]}");
    cr_assert_eq(nr_wordpiece_load(dir, &t, err, sizeof(err)), 0, "%s", err);
    static const int js[] = {1, 5, 3, 4, 0, 2};
    s_expect_ids(t, "[DEC]CAF\xc3\x89s x", NR_WORDPIECE_ADD_SPECIAL, js, 6);
    nr_wordpiece_destroy(&t);
    unlink(j);
    rmdir(dir);
}
