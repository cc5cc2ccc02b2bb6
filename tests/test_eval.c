/* Unit tests for client/eval/: the PTB-like tokeniser, BLEU-1..4, ROUGE-L,
 * CIDEr-D and WER on hand-computed cases, and every metric against the
 * transcription of pycocoevalcap in tests/fixtures/eval_reference.py on
 * the few hundred caption pairs of tests/fixtures/eval/metric_cases.json. */
#include "client/eval/bleu.h"
#include "client/eval/cider.h"
#include "client/eval/rouge.h"
#include "client/eval/tokenize.h"
#include "client/eval/wer.h"
#include "common/error.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static nr_evtok_t *s_vocab;

static void s_setup(void) { s_vocab = nr_evtok_new(); }
static void s_teardown(void) { nr_evtok_destroy(&s_vocab); }

static nr_evsent_t s_sent(const char *text) {
    nr_evsent_t s = {0};
    cr_assert_eq(nr_evtok_sentence(s_vocab, text, &s), 0, "tokenising '%s'", text);
    return s;
}

static void s_tok_is(const char *text, const char *want) {
    char *got = NULL;
    cr_assert_eq(nr_evtok_text(text, &got), 0);
    cr_expect_str_eq(got, want, "tokenising '%s'", text);
    free(got);
}

/* BLEU-1..4 of one candidate against references. */
static void s_bleu(const char *cand, const char *const *refs, size_t n, double bleu[4]) {
    nr_evsent_t c = s_sent(cand), r[8] = {{0}};
    for (size_t i = 0; i < n; i++) r[i] = s_sent(refs[i]);
    nr_bleu_stats_t st;
    cr_assert_eq(nr_bleu_stats(&c, r, n, &st), 0);
    nr_bleu_score(&st, bleu);
    nr_evsent_clear(&c);
    for (size_t i = 0; i < n; i++) nr_evsent_clear(&r[i]);
}

static double s_rouge(const char *cand, const char *const *refs, size_t n) {
    nr_evsent_t c = s_sent(cand), r[8] = {{0}};
    for (size_t i = 0; i < n; i++) r[i] = s_sent(refs[i]);
    double score = -1;
    cr_assert_eq(nr_rouge_l(&c, r, n, &score), 0);
    nr_evsent_clear(&c);
    for (size_t i = 0; i < n; i++) nr_evsent_clear(&r[i]);
    return score;
}

static double s_wer(const char *hyp, const char *ref) {
    nr_evsent_t h = s_sent(hyp), r = s_sent(ref);
    long edits = nr_wer_edits(h.w, h.n, r.w, r.n);
    cr_assert_geq(edits, 0);
    double rate = nr_wer_rate(edits, r.n, h.n);
    nr_evsent_clear(&h);
    nr_evsent_clear(&r);
    return rate;
}

#define S_NEAR(got, want, tol) cr_expect(fabs((got) - (want)) <= (tol), "%s = %.12g, expected %.12g", #got, (double)(got), (double)(want))

TestSuite(eval, .init = s_setup, .fini = s_teardown);

/* ---- tokeniser ---- */

Test(eval, tokenizer_lowercases_and_drops_punctuation) {
    s_tok_is("A man's dog, (running)!", "a man 's dog running");
    s_tok_is("Don't stop. It CAN'T be.", "do n't stop it ca n't be");
    s_tok_is("A black-and-white photo of the U.S. flag.", "a black-and-white photo of the u.s. flag");
    s_tok_is("It costs $3.50... really?", "it costs $ 3.50 really");
    s_tok_is("1,000 people; 3 dogs: yes - no -- maybe", "1,000 people 3 dogs yes no maybe");
    s_tok_is("\xE2\x80\x9CQuoted\xE2\x80\x9D text\xE2\x80\x94here\xE2\x80\xA6", "quoted text here");
    s_tok_is("Mr. Smith's dogs' toys and/or \"cats\" `x' [y] {z}", "mr. smith 's dogs toys and/or cats x y z");
    s_tok_is("  \t\n ", "");
    s_tok_is("Caf\xC3\xA9 au lait", "caf\xC3\xA9 au lait");
}

Test(eval, tokenizer_bounds_input) {
    char *big = malloc(NR_EVTOK_MAX_BYTES + 2), *out = (char *)1;
    memset(big, 'a', NR_EVTOK_MAX_BYTES + 1);
    big[NR_EVTOK_MAX_BYTES + 1] = '\0';
    cr_expect_eq(nr_evtok_text(big, &out), NR_ETEXT);
    cr_expect_null(out);
    /* Words past the limit are dropped. */
    for (size_t i = 0; i < NR_EVTOK_MAX_BYTES; i += 2) big[i] = 'w', big[i + 1] = ' ';
    big[NR_EVTOK_MAX_BYTES] = '\0';
    nr_evsent_t s = s_sent(big);
    cr_expect_eq(s.n, NR_EVTOK_MAX_WORDS);
    nr_evsent_clear(&s);
    free(big);
}

/* ---- BLEU ---- */

Test(eval, bleu_identical_caption_is_one) {
    const char *refs[] = {"a cat on a mat"};
    double b[4];
    s_bleu("A cat on a mat.", refs, 1, b);
    for (int k = 0; k < 4; k++) S_NEAR(b[k], 1.0, 1e-9);
}

Test(eval, bleu_no_overlap_is_zero) {
    /* Same length (no penalty), every n-gram wrong: p_k = 1e-15 / guess. */
    const char *refs[] = {"a cat sat on"};
    double b[4];
    s_bleu("dogs run very fast", refs, 1, b);
    for (int k = 0; k < 4; k++) cr_expect_lt(b[k], 1e-12);
}

Test(eval, bleu_brevity_penalty) {
    /* 2 words against 5: BP = exp(1 - 5/2); p1 = p2 = 1; p3 = p4 = 1e-15/1e-9. */
    const char *refs[] = {"a cat on a mat"};
    double b[4];
    s_bleu("a cat", refs, 1, b);
    double bp = exp(-1.5);
    S_NEAR(b[0], bp, 1e-9);
    S_NEAR(b[1], bp, 1e-9);
    S_NEAR(b[2], bp * pow(1e-6, 1.0 / 3), 1e-9);
    S_NEAR(b[3], bp * pow(1e-12, 1.0 / 4), 1e-9);
}

Test(eval, bleu_clips_repeated_ngrams) {
    /* Papineni et al.'s example: "the" x7 against two references, clipped to 2. */
    const char *refs[] = {"the cat is on the mat", "there is a cat on the mat"};
    double b[4];
    s_bleu("the the the the the the the", refs, 2, b);
    S_NEAR(b[0], 2.0 / 7.0, 1e-9);
}

Test(eval, bleu_closest_reference_length_prefers_shorter_on_tie) {
    /* 4 words, references of 3 and 5: both 1 away, the shorter (3) wins, so no
     * brevity penalty (5 would give exp(1 - 5/4)). */
    const char *refs[] = {"one two three four five", "one two three"};
    double b[4];
    s_bleu("one two three four", refs, 2, b);
    for (int k = 0; k < 4; k++) S_NEAR(b[k], 1.0, 1e-9);
}

Test(eval, bleu_empty_candidate_is_zero) {
    const char *refs[] = {"a cat on a mat"};
    double b[4];
    s_bleu("...", refs, 1, b);
    for (int k = 0; k < 4; k++) cr_expect_eq(b[k], 0.0);
}

Test(eval, bleu_corpus_sums_counts_before_dividing) {
    /* Image 1: 2/2 unigrams right, image 2: 0/2: corpus BLEU-1 = 2/4 (not a
     * mean of sentence scores); lengths equal, so no penalty. */
    nr_evsent_t c1 = s_sent("a cat"), r1 = s_sent("a cat"), c2 = s_sent("big dog"), r2 = s_sent("red bus");
    nr_bleu_stats_t total = {0}, one;
    cr_assert_eq(nr_bleu_stats(&c1, &r1, 1, &one), 0);
    nr_bleu_accumulate(&total, &one);
    cr_assert_eq(nr_bleu_stats(&c2, &r2, 1, &one), 0);
    nr_bleu_accumulate(&total, &one);
    double b[4];
    nr_bleu_score(&total, b);
    S_NEAR(b[0], 0.5, 1e-9);
    cr_expect_eq(nr_bleu_stats(&c1, &r1, 0, &one), NR_EINVAL);
    nr_evsent_clear(&c1), nr_evsent_clear(&r1), nr_evsent_clear(&c2), nr_evsent_clear(&r2);
}

/* ---- ROUGE-L ---- */

Test(eval, rouge_identical_none_and_empty) {
    const char *refs[] = {"a cat on a mat"};
    S_NEAR(s_rouge("a cat on a mat", refs, 1), 1.0, 1e-12);
    S_NEAR(s_rouge("dogs run", refs, 1), 0.0, 0);
    S_NEAR(s_rouge("", refs, 1), 0.0, 0);
    const char *empty[] = {"!"};
    S_NEAR(s_rouge("", empty, 1), 1.0, 0); /* rouge.py: [""] against [""] */
}

Test(eval, rouge_short_candidate) {
    /* LCS 2: P = 1, R = 2/5, F = 2.44 * 0.4 / (0.4 + 1.44). */
    const char *refs[] = {"a cat on a mat"};
    S_NEAR(s_rouge("a cat", refs, 1), 2.44 * 0.4 / (0.4 + 1.44), 1e-12);
}

Test(eval, rouge_takes_max_precision_and_recall_separately) {
    /* ref 1: LCS 2, P 2/6, R 1; ref 2: LCS 4 ("sat on the mat"), P 4/6, R 4/8.
     * rouge.py combines P = 4/6 (ref 2) with R = 1 (ref 1). */
    const char *refs[] = {"a cat", "the dog sat on the red mat today now"};
    double p = 4.0 / 6.0, r = 1.0;
    S_NEAR(s_rouge("a cat sat on the mat", refs, 2), 2.44 * p * r / (r + 1.44 * p), 1e-12);
}

Test(eval, rouge_lcs) {
    uint32_t a[] = {1, 2, 3, 4, 1}, b[] = {3, 4, 1, 2};
    cr_expect_eq(nr_rouge_lcs(a, 5, b, 4), 3); /* 3 4 1 */
    cr_expect_eq(nr_rouge_lcs(a, 5, b, 0), 0);
}

/* ---- CIDEr-D ---- */

Test(eval, cider_identical_captions_score_ten) {
    /* Two images with no shared n-gram: every weight is tf * log(2), each
     * candidate equals its reference, cosine 1 for n = 1..4, no length
     * penalty: 10. "dogs run fast" has no 4-gram: that n adds 0 to the mean
     * over n = 1..4, as in cider_scorer.py: 7.5. */
    nr_evsent_t c1 = s_sent("a cat on a mat"), c2 = s_sent("dogs run fast");
    nr_cider_image_t im[2] = {{&c1, &c1, 1}, {&c2, &c2, 1}};
    double scores[2], mean;
    cr_assert_eq(nr_cider_score(im, 2, scores, &mean), 0);
    S_NEAR(scores[0], 10.0, 1e-9);
    S_NEAR(scores[1], 7.5, 1e-9);
    S_NEAR(mean, 8.75, 1e-9);
    /* One image alone: log(1) - log(df = 1) = 0 weights everywhere: 0. */
    cr_assert_eq(nr_cider_score(im, 1, scores, &mean), 0);
    S_NEAR(mean, 0.0, 0);
    nr_evsent_clear(&c1), nr_evsent_clear(&c2);
}

Test(eval, cider_no_overlap_empty_and_repeats) {
    nr_evsent_t r1 = s_sent("a cat on a mat"), r2 = s_sent("dogs run fast");
    nr_evsent_t none = s_sent("green bus"), empty = s_sent(""), rep = s_sent("dogs dogs dogs");
    nr_cider_image_t im[2] = {{&none, &r1, 1}, {&empty, &r2, 1}};
    double s[2], mean;
    cr_assert_eq(nr_cider_score(im, 2, s, &mean), 0);
    S_NEAR(s[0], 0.0, 0);
    S_NEAR(s[1], 0.0, 0);
    /* "dogs" x3 against "dogs run fast": unigram weights w = log 2;
     * candidate "dogs" 3w, clipped to min(3w, w) * w = w^2; norms 3w and
     * sqrt(3) w: cos1 = 1/(3 sqrt 3); bigram "dogs dogs" not in the
     * reference: 0. Bigram counts 2 vs 2: no penalty. (cos1 / 4) * 10. */
    im[1].cand = &rep;
    cr_assert_eq(nr_cider_score(im, 2, s, &mean), 0);
    S_NEAR(s[1], 10.0 * (1.0 / (3.0 * sqrt(3.0))) / 4.0, 1e-9);
    cr_expect_eq(nr_cider_score(im, 0, s, &mean), NR_EINVAL);
    nr_evsent_clear(&r1), nr_evsent_clear(&r2), nr_evsent_clear(&none), nr_evsent_clear(&empty),
        nr_evsent_clear(&rep);
}

Test(eval, cider_several_references_average) {
    /* Two references, the candidate equals one and shares nothing with the
     * other: the mean over references, (10 * 2/4 + 0) / 2 (only n = 1, 2
     * exist in "a cat"); the second image is there for the document
     * frequencies (no n-gram shared across images). */
    nr_evsent_t c = s_sent("a cat"), refs[2] = {s_sent("a cat"), s_sent("big dog")};
    nr_evsent_t c2 = s_sent("red bus");
    nr_cider_image_t im[2] = {{&c, refs, 2}, {&c2, &c2, 1}};
    double s[2];
    cr_assert_eq(nr_cider_score(im, 2, s, NULL), 0);
    S_NEAR(s[0], 2.5, 1e-9);
    nr_evsent_clear(&c), nr_evsent_clear(&refs[0]), nr_evsent_clear(&refs[1]), nr_evsent_clear(&c2);
}

/* ---- WER ---- */

Test(eval, wer_counts_edits_over_reference_words) {
    S_NEAR(s_wer("a cat sat on the mat", "A cat sat on the mat."), 0.0, 0);
    S_NEAR(s_wer("a cat sat", "a cat sat on mat"), 2.0 / 5.0, 1e-12);   /* 2 deletions */
    S_NEAR(s_wer("a dog sat", "a cat sat"), 1.0 / 3.0, 1e-12);          /* 1 substitution */
    S_NEAR(s_wer("a big cat", "a cat"), 1.0 / 2.0, 1e-12);              /* 1 insertion */
    S_NEAR(s_wer("one two three four", "two"), 3.0, 1e-12);             /* can pass 1 */
    S_NEAR(s_wer("", ""), 0.0, 0);
    S_NEAR(s_wer("hello", ""), 1.0, 0);
    S_NEAR(s_wer("", "a cat"), 1.0, 0);
}

/* ---- against the independent reference ---- */

static char *s_read(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

Test(eval, matches_pycocoevalcap_transcription) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/eval/metric_cases.json", getenv("NR_SOURCE_DIR") ? getenv("NR_SOURCE_DIR") : ".");
    char *text = s_read(path);
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root);
    size_t pairs = 0;
    const cJSON *set;
    cJSON_ArrayForEach(set, cJSON_GetObjectItem(root, "sets")) {
        const cJSON *images = cJSON_GetObjectItem(set, "images");
        size_t n = (size_t)cJSON_GetArraySize(images), i = 0;
        nr_evsent_t *cands = calloc(n, sizeof *cands), **refs = calloc(n, sizeof *refs);
        nr_cider_image_t *im = calloc(n, sizeof *im);
        double *cider = calloc(n, sizeof *cider), rouge_sum = 0, cider_mean;
        nr_bleu_stats_t total = {0};
        const cJSON *img;
        cJSON_ArrayForEach(img, images) {
            cands[i] = s_sent(cJSON_GetObjectItem(img, "cand")->valuestring);
            const cJSON *rl = cJSON_GetObjectItem(img, "refs"), *r;
            size_t nr = (size_t)cJSON_GetArraySize(rl), j = 0;
            refs[i] = calloc(nr, sizeof **refs);
            cJSON_ArrayForEach(r, rl) refs[i][j++] = s_sent(r->valuestring);
            im[i] = (nr_cider_image_t){&cands[i], refs[i], nr};
            nr_bleu_stats_t st;
            double b[4], rouge;
            cr_assert_eq(nr_bleu_stats(&cands[i], refs[i], nr, &st), 0);
            nr_bleu_accumulate(&total, &st);
            nr_bleu_score(&st, b);
            const cJSON *want = cJSON_GetArrayItem(cJSON_GetObjectItem(set, "bleu_per_image"), (int)i);
            for (int k = 0; k < 4; k++) S_NEAR(b[k], cJSON_GetArrayItem(want, k)->valuedouble, 1e-6);
            cr_assert_eq(nr_rouge_l(&cands[i], refs[i], nr, &rouge), 0);
            S_NEAR(rouge, cJSON_GetArrayItem(cJSON_GetObjectItem(set, "rouge_l_per_image"), (int)i)->valuedouble, 1e-6);
            rouge_sum += rouge;
            i++;
        }
        double b[4];
        nr_bleu_score(&total, b);
        for (int k = 0; k < 4; k++) S_NEAR(b[k], cJSON_GetArrayItem(cJSON_GetObjectItem(set, "bleu"), k)->valuedouble, 1e-6);
        S_NEAR(rouge_sum / (double)n, cJSON_GetObjectItem(set, "rouge_l")->valuedouble, 1e-6);
        cr_assert_eq(nr_cider_score(im, n, cider, &cider_mean), 0);
        for (i = 0; i < n; i++)
            S_NEAR(cider[i], cJSON_GetArrayItem(cJSON_GetObjectItem(set, "cider_d_per_image"), (int)i)->valuedouble, 1e-6);
        S_NEAR(cider_mean, cJSON_GetObjectItem(set, "cider_d")->valuedouble, 1e-6);
        for (i = 0; i < n; i++) {
            for (size_t j = 0; j < im[i].nrefs; j++) nr_evsent_clear(&refs[i][j]);
            free(refs[i]);
            nr_evsent_clear(&cands[i]);
        }
        free(cands), free(refs), free(im), free(cider);
        pairs += n;
    }
    cr_expect_geq(pairs, 300);
    cJSON_Delete(root);
    free(text);
}

/* ---- REFS and RESULTS files ---- */

#include "client/eval/refs.h"
#include "client/eval/runs.h"

#include <sys/stat.h>
#include <unistd.h>

static char s_dir[] = "/tmp/nr-eval-XXXXXX";

static void s_io_setup(void) {
    strcpy(s_dir, "/tmp/nr-eval-XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
}

static void s_io_teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    cr_expect_eq(system(cmd), 0);
}

/* Writes dir/name; returns the malloc'd path. */
static char *s_file(const char *name, const char *text) {
    char *path = malloc(strlen(s_dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", s_dir, name);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads REFS text expecting failure with `want` in the message. */
static void s_refs_bad(const char *name, const char *text, const char *want) {
    char *path = s_file(name, text), err[512] = "";
    nr_evrefs_t *r = nr_evrefs_load(path, err, sizeof err);
    cr_expect_null(r, "%s loaded", name);
    cr_expect(strstr(err, want), "%s: '%s' lacks '%s'", name, err, want);
    nr_evrefs_destroy(&r);
    free(path);
}

Test(eval, refs_coco_and_tsv_keyed_by_base_name, .init = s_io_setup, .fini = s_io_teardown) {
    char err[512];
    char *coco = s_file("refs.json", "{\"images\":[{\"id\":1,\"file_name\":\"val/a.jpg\"},{\"id\":2,\"file_name\":"
                                     "\"train/x.jpg\"},{\"id\":3,\"file_name\":\"val/x.jpg\"},{\"id\":4,\"file_name\":"
                                     "\"b.jpg\"}],\"annotations\":[{\"image_id\":1,\"caption\":\"A cat.\"},"
                                     "{\"image_id\":1,\"caption\":\"a kitten\"},{\"image_id\":2,\"caption\":\"x\"},"
                                     "{\"image_id\":3,\"caption\":\"y\"}]}");
    nr_evrefs_t *r = nr_evrefs_load(coco, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_expect_str_eq(nr_evrefs_format(r), "coco");
    const nr_evref_t *a = nr_evrefs_find(r, "a.jpg");
    cr_assert_not_null(a);
    cr_expect_eq(a->ncaptions, 2);
    cr_expect_str_eq(a->captions[0], "A cat.");
    cr_expect(nr_evrefs_find(r, "x.jpg")->ambiguous, "two images named x.jpg");
    cr_expect_null(nr_evrefs_find(r, "b.jpg"), "an image without captions is not a reference");
    cr_expect_eq(nr_evrefs_captions(r), 4);
    nr_evrefs_destroy(&r);
    nr_evrefs_destroy(&r); /* safe twice */
    char *tsv = s_file("refs.tsv", "\xEF\xBB\xBF" "a.jpg\tone\ttwo\r\n\nd/a.jpg\tthree\n"
                                   "a.jpg\tfour\nc.png\tfive\t\n");
    r = nr_evrefs_load(tsv, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_expect_str_eq(nr_evrefs_format(r), "tsv");
    cr_expect(nr_evrefs_find(r, "a.jpg")->ambiguous, "a.jpg and d/a.jpg");
    cr_expect_eq(nr_evrefs_find(r, "c.png")->ncaptions, 1);
    nr_evrefs_destroy(&r);
    free(coco), free(tsv);
}

Test(eval, refs_refuse_bad_files_with_the_reason, .init = s_io_setup, .fini = s_io_teardown) {
    char err[512];
    cr_expect_null(nr_evrefs_load(s_dir, err, sizeof err));
    cr_expect(strstr(err, "not a regular file"), "%s", err);
    cr_expect_null(nr_evrefs_load("/nonexistent/refs.json", err, sizeof err));
    cr_expect(strstr(err, "cannot open refs"), "%s", err);
    s_refs_bad("1.json", "{\"images\": [", "not valid JSON");
    s_refs_bad("2.json", "{\"images\": []}", "needs arrays");
    s_refs_bad("3.json", "{\"images\":[{\"id\":1}],\"annotations\":[]}", "images[0] needs");
    s_refs_bad("4.json", "{\"images\":[{\"id\":1,\"file_name\":\"a\"},{\"id\":1,\"file_name\":\"b\"}],\"annotations\":[]}",
               "appears twice");
    s_refs_bad("5.json", "{\"images\":[{\"id\":1,\"file_name\":\"a\"}],\"annotations\":[{\"image_id\":9,\"caption\":\"x\"}]}",
               "not in \"images\"");
    s_refs_bad("6.json", "{\"images\":[{\"id\":1,\"file_name\":\"a\"}],\"annotations\":[{\"image_id\":1,\"caption\":3}]}",
               "annotations[0] needs");
    s_refs_bad("7.json", "{\"images\":[{\"id\":1,\"file_name\":\"a\"}],\"annotations\":[]}", "no captions");
    s_refs_bad("8.tsv", "a.jpg caption without a tab\n", "line 1: expected FILE<TAB>CAPTION");
    s_refs_bad("9.tsv", "a.jpg\tok\nb.jpg\tbad \xC3\x28 utf8\n", "not UTF-8");
    char *many = malloc(70 * 8 + 16);
    strcpy(many, "a.jpg");
    for (int i = 0; i < 70; i++) strcat(many, "\tcaption");
    s_refs_bad("10.tsv", many, "more than 64 captions");
    free(many);
    char *longcap = calloc(1, NR_EVTOK_MAX_BYTES + 16);
    strcpy(longcap, "a.jpg\t");
    memset(longcap + 6, 'w', NR_EVTOK_MAX_BYTES + 1);
    s_refs_bad("11.tsv", longcap, "longer than");
    free(longcap);
}

static void s_run_bad(const char *name, const char *text, const char *want) {
    char *path = s_file(name, text), err[512] = "";
    nr_evrun_t run;
    cr_expect_neq(nr_evrun_load(path, &run, err, sizeof err), 0, "%s loaded", name);
    cr_expect(strstr(err, want), "%s: '%s' lacks '%s'", name, err, want);
    nr_evrun_clear(&run);
    free(path);
}

Test(eval, runs_folders_records_and_manifests, .init = s_io_setup, .fini = s_io_teardown) {
    char err[512];
    free(s_file("out/a.json", "{\"id\":\"1\",\"source\":\"in/a.jpg\",\"state\":\"done\",\"caption\":\"a cat\","
                              "\"files\":[\"a.txt\",\"a.wav\"]}"));
    free(s_file("out/deep/b.json", "{\"id\":\"2\",\"source\":\"in/b.jpg\",\"state\":\"failed\",\"caption\":null,"
                                   "\"error\":\"bad_image\",\"files\":[\"../../etc/x.wav\"]}"));
    free(s_file("out/notes.json", "[1, 2, 3]"));
    free(s_file("out/c.txt", "not json"));
    char *out = malloc(strlen(s_dir) + 8);
    sprintf(out, "%s/out", s_dir);
    char link[4096];
    snprintf(link, sizeof link, "%s/out/loop", s_dir);
    cr_assert_eq(symlink(out, link), 0); /* not followed */
    nr_evrun_t run;
    cr_assert_eq(nr_evrun_load(out, &run, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(run.kind, "folder");
    cr_assert_eq(run.n, 2);
    cr_expect_eq(run.ignored, 1);
    cr_expect_str_eq(run.items[0].caption, "a cat");
    cr_expect(strstr(run.items[0].audio, "/out/a.wav"), "%s", run.items[0].audio);
    cr_expect_str_eq(run.items[1].state, "failed");
    cr_expect_null(run.items[1].caption);
    cr_expect_null(run.items[1].audio, "a '..' file name is refused");
    nr_evrun_clear(&run);

    char *csv = s_file("m/run.csv", "Source Path,Job ID,State,Caption,Model,Voice,Audio Path,Alt Text Action,Error\r\n"
                                    "in/a.jpg,1,done,\"a cat, \"\"sitting\"\"\nhere\",m,slt,wav/a.wav,keep,\r\n"
                                    "\r\nin/b.jpg,2,failed,,m,slt,,,bad_image\n");
    cr_assert_eq(nr_evrun_load(csv, &run, err, sizeof err), 0, "%s", err);
    cr_assert_eq(run.n, 2);
    cr_expect_str_eq(run.items[0].caption, "a cat, \"sitting\"\nhere");
    cr_expect(strstr(run.items[0].audio, "/m/wav/a.wav") || !strcmp(run.items[0].audio, "wav/a.wav"), "%s",
              run.items[0].audio);
    cr_expect_str_eq(run.items[1].state, "failed");
    cr_expect_str_eq(run.items[1].error, "bad_image");
    nr_evrun_clear(&run);
    char *jsonl = s_file("m/run.jsonl", "{\"source_path\":\"in/a.jpg\",\"caption\":\"a dog\",\"state\":\"done\","
                                        "\"audio_path\":\"/abs/a.wav\"}\n\n{\"source\":\"in/b.jpg\",\"caption\":\"\"}\n");
    cr_assert_eq(nr_evrun_load(jsonl, &run, err, sizeof err), 0, "%s", err);
    cr_assert_eq(run.n, 2);
    cr_expect_str_eq(run.items[0].audio, "/abs/a.wav");
    cr_expect_str_eq(run.items[1].caption, "");
    nr_evrun_clear(&run);
    free(out), free(csv), free(jsonl);
}

Test(eval, runs_refuse_bad_files_with_the_reason, .init = s_io_setup, .fini = s_io_teardown) {
    s_run_bad("r.txt", "hello", "expected an output folder");
    s_run_bad("r.csv", "file,notes\na.jpg,x\n", "needs a source path column and a caption column");
    s_run_bad("r2.csv", "source,caption\na.jpg,\"never closed\n", "row 2: unterminated quote");
    s_run_bad("r.jsonl", "{\"source\":\"a\",\"caption\":\"b\"}\n[1]\n", "line 2: not a JSON object");
    s_run_bad("r.json", "{\"x\":1}", "not a narrate job record");
    char err[512];
    nr_evrun_t run;
    cr_expect_neq(nr_evrun_load("/nonexistent/run", &run, err, sizeof err), 0);
    cr_expect(strstr(err, "cannot open results"), "%s", err);
    nr_evrun_clear(&run);
}
