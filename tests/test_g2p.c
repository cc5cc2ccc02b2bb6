/* Tests for models/speech/g2p against tests/fixtures/g2p_cases.json: Kokoro
 * phonemes from kokoro-js 1.2.1's own phonemize() over the espeak-ng
 * command-line program (and misaki's rules for other languages), made by
 * tests/fixtures/make_g2p_cases.js. The espeak-ng comparisons skip when
 * narrator is built without espeak-ng (NR_ESPEAK=OFF); normalization and
 * chunking are checked either way. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/buf.h"
#include "common/error.h"
#include "models/speech/g2p.h"
#include "tests/harness.h"

static cJSON *s_cases(void) {
    const char *src = getenv("NR_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/g2p_cases.json", src ? src : ".");
    char *text = nr_harness_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(j);
    return j;
}

static const char *s_str(const cJSON *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    cr_assert(cJSON_IsString(v), "case field %s", key);
    return v->valuestring;
}

static size_t s_codepoints(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* s with every space removed (chunks drop the spaces they break at). */
static char *s_squeeze(const char *s) {
    char *o = malloc(strlen(s) + 1), *w = o;
    for (; *s; s++)
        if (*s != ' ') *w++ = *s;
    *w = '\0';
    return o;
}

Test(g2p, text_pieces_match_kokoro_js) {
    cJSON *j = s_cases();
    const cJSON *c;
    int checked = 0, bad = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        const char *lang = s_str(c, "lang"), *text = s_str(c, "text");
        char **pieces;
        size_t n;
        cr_assert_eq(nr_g2p_text_pieces(lang[0], text, strlen(text), &pieces, &n), 0);
        const cJSON *want = cJSON_GetObjectItem(c, "pieces");
        int same = (size_t)cJSON_GetArraySize(want) == n;
        for (size_t i = 0; same && i < n; i++)
            same = !strcmp(pieces[i], cJSON_GetArrayItem(want, (int)i)->valuestring);
        if (!same) {
            bad++;
            char *w = cJSON_PrintUnformatted(want);
            fprintf(stderr, "[%s] %s\n  want %s\n  got ", lang, text, w);
            for (size_t i = 0; i < n; i++) fprintf(stderr, "'%s' ", pieces[i]);
            fprintf(stderr, "\n");
            free(w);
        }
        nr_g2p_free_list(pieces, n);
        checked++;
    }
    cJSON_Delete(j);
    cr_assert_gt(checked, 25);
    cr_assert_eq(bad, 0, "%d of %d cases normalize differently (see stderr)", bad, checked);
}

Test(g2p, phonemes_match_kokoro_js) {
    if (!nr_g2p_available()) cr_skip_test("built without espeak-ng (NR_ESPEAK=OFF)");
    cJSON *j = s_cases();
    const cJSON *c;
    int checked = 0, bad = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        const char *lang = s_str(c, "lang"), *text = s_str(c, "text"), *want = s_str(c, "phonemes");
        char *ps = NULL, err[256] = "";
        int rc = nr_g2p_phonemize(lang[0], text, strlen(text), &ps, err, sizeof err);
        if (rc || strcmp(ps, want)) {
            bad++;
            fprintf(stderr, "[%s] %s\n  want '%s'\n  got  '%s' (%d %s)\n", lang, text, want, ps ? ps : "", rc, err);
        }
        free(ps);
        checked++;
    }
    cJSON_Delete(j);
    cr_assert_gt(checked, 25);
    cr_assert_eq(bad, 0, "%d of %d cases differ from kokoro-js (see stderr)", bad, checked);
}

/* The long caption: over 510 phonemes, split at sentence ends into chunks
 * that each fit and together hold every phoneme in order. */
Test(g2p, long_text_splits_at_sentence_ends) {
    cJSON *j = s_cases();
    const cJSON *c, *lc = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) if (cJSON_IsTrue(cJSON_GetObjectItem(c, "long"))) lc = c;
    cr_assert_not_null(lc);
    const char *want = s_str(lc, "phonemes");
    cr_assert_gt(s_codepoints(want), 510, "the long case must need splitting");
    const char *ps = want;
    char *mine = NULL, err[256] = "";
    if (nr_g2p_available()) {
        const char *text = s_str(lc, "text");
        cr_assert_eq(nr_g2p_phonemize('a', text, strlen(text), &mine, err, sizeof err), 0, "%s", err);
        ps = mine;
    }
    size_t maxes[] = {510, 200, 100};
    for (size_t m = 0; m < 3; m++) {
        char **chunks;
        size_t n;
        cr_assert_eq(nr_g2p_split(ps, maxes[m], &chunks, &n), 0);
        cr_assert_geq(n, 2);
        nr_buf_t all = {0};
        for (size_t i = 0; i < n; i++) {
            cr_assert_leq(s_codepoints(chunks[i]), maxes[m], "chunk %zu of max %zu", i, maxes[m]);
            cr_assert_gt(strlen(chunks[i]), 0);
            cr_assert_neq(chunks[i][0], ' ');
            size_t l = strlen(chunks[i]);
            /* every sentence here is under 100 phonemes: breaks fall on '.' */
            if (i + 1 < n) cr_assert_eq(chunks[i][l - 1], '.', "chunk %zu ends '%s'", i, chunks[i] + (l > 20 ? l - 20 : 0));
            nr_buf_puts(&all, chunks[i]);
        }
        char *a = s_squeeze(all.data), *b = s_squeeze(ps);
        cr_assert_str_eq(a, b, "the chunks must hold every phoneme in order");
        free(a), free(b);
        nr_buf_clear(&all);
        nr_g2p_free_list(chunks, n);
    }
    free(mine);
    cJSON_Delete(j);
}

Test(g2p, split_without_sentence_ends) {
    char **chunks;
    size_t n;
    /* clause marks, then spaces, then a hard cut */
    cr_assert_eq(nr_g2p_split("ab, cd, ef", 7, &chunks, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(chunks[0], "ab, cd,");
    cr_assert_str_eq(chunks[1], "ef");
    nr_g2p_free_list(chunks, n);
    cr_assert_eq(nr_g2p_split("ab cd ef", 6, &chunks, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(chunks[0], "ab cd");
    cr_assert_str_eq(chunks[1], "ef");
    nr_g2p_free_list(chunks, n);
    cr_assert_eq(nr_g2p_split("ɐɐɐɐɐɐɐ", 3, &chunks, &n), 0); /* counts code points, not bytes */
    cr_assert_eq(n, 3);
    cr_assert_str_eq(chunks[0], "ɐɐɐ");
    cr_assert_str_eq(chunks[2], "ɐ");
    nr_g2p_free_list(chunks, n);
    cr_assert_eq(nr_g2p_split("   ", 3, &chunks, &n), 0);
    cr_assert_eq(n, 0);
    nr_g2p_free_list(chunks, n);
    cr_assert_eq(nr_g2p_split("abc", 0, &chunks, &n), NR_EINVAL);
}

Test(g2p, unsupported_languages_are_refused_clearly) {
    char *ps = NULL, err[256] = "";
    cr_assert_eq(nr_g2p_phonemize('j', "konnichiwa", 10, &ps, err, sizeof err), NR_EUNSUPPORTED);
    cr_assert_null(ps);
    cr_assert(strstr(err, "'j'") && strstr(err, "misaki"), "%s", err);
    cr_assert_eq(nr_g2p_phonemize('z', "ni hao", 6, &ps, err, sizeof err), NR_EUNSUPPORTED);
    cr_assert_null(nr_g2p_espeak_voice('q'));
    cr_assert_str_eq(nr_g2p_espeak_voice('a'), "en-us");
    if (!nr_g2p_available()) {
        cr_assert_eq(nr_g2p_phonemize('a', "hello", 5, &ps, err, sizeof err), NR_EUNSUPPORTED);
        cr_assert(strstr(err, "espeak-ng"), "%s", err);
    }
}

Test(g2p, nothing_speakable) {
    if (!nr_g2p_available()) cr_skip_test("built without espeak-ng (NR_ESPEAK=OFF)");
    char *ps = NULL, err[256] = "";
    cr_assert_eq(nr_g2p_phonemize('a', " ... ?! ", 8, &ps, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(ps, "... ?!"); /* punctuation alone is kept as pauses */
    free(ps);
    cr_assert_eq(nr_g2p_phonemize('a', "   ", 3, &ps, err, sizeof err), NR_ETEXT);
    cr_assert_null(ps);
}

/* espeak-ng is global state: four threads switching languages get the same
 * answers as one. */
typedef struct {
    const cJSON *cases;
    int bad;
} s_thread_arg_t;

static void *s_thread(void *p) {
    s_thread_arg_t *a = p;
    for (int round = 0; round < 3; round++) {
        const cJSON *c;
        cJSON_ArrayForEach(c, a->cases) {
            const char *lang = cJSON_GetObjectItem(c, "lang")->valuestring;
            const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
            const char *want = cJSON_GetObjectItem(c, "phonemes")->valuestring;
            char *ps = NULL, err[256];
            if (nr_g2p_phonemize(lang[0], text, strlen(text), &ps, err, sizeof err) || strcmp(ps, want)) a->bad++;
            free(ps);
        }
    }
    return NULL;
}

Test(g2p, threads_share_espeak_safely) {
    if (!nr_g2p_available()) cr_skip_test("built without espeak-ng (NR_ESPEAK=OFF)");
    cJSON *j = s_cases();
    pthread_t t[4];
    s_thread_arg_t a[4];
    for (int i = 0; i < 4; i++) {
        a[i].cases = cJSON_GetObjectItem(j, "cases");
        a[i].bad = 0;
        cr_assert_eq(pthread_create(&t[i], NULL, s_thread, &a[i]), 0);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        bad += a[i].bad;
    }
    cJSON_Delete(j);
    cr_assert_eq(bad, 0);
}
