/* libFuzzer target for the BERT WordPiece tokenizer (models/text/wordpiece.c)
 * with bert-base-uncased's vocabulary and BLIP's added tokens (the test
 * fixture). Input as text: encoding fails only on invalid UTF-8 (NR_ETEXT),
 * every id is in range, and decoding the ids (with and without the flags)
 * succeeds. Input as ids (every 2 bytes one id, any value): decoding fails
 * cleanly (NR_EINVAL) on ids out of range. */
#include "common/error.h"
#include "models/text/wordpiece.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NR_FUZZ_WORDPIECE_DIR
#define NR_FUZZ_WORDPIECE_DIR "tests/fixtures/blip-tokenizer"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static nr_wordpiece_t *s_tok;

static nr_wordpiece_t *s_get(void) {
    if (!s_tok) {
        char err[512];
        const char *dir = getenv("NR_FUZZ_WORDPIECE_DIR");
        if (nr_wordpiece_load(dir && *dir ? dir : NR_FUZZ_WORDPIECE_DIR, &s_tok, err, sizeof err) != 0) {
            fprintf(stderr, "fuzz_wordpiece: %s\n", err);
            abort();
        }
    }
    return s_tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nr_wordpiece_t *tok = s_get();
    char err[512];
    int *ids = NULL;
    size_t n = 0;
    unsigned flags = size ? data[0] & 3u : 0;
    int rc = nr_wordpiece_encode(tok, (const char *)data, size, flags & 1u, &ids, &n, err, sizeof err);
    if (rc == 0) {
        if (!ids) abort();
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= nr_wordpiece_vocab_size(tok)) abort();
        char *text = NULL;
        size_t len = 0;
        if (nr_wordpiece_decode(tok, ids, n, flags, &text, &len, err, sizeof err) != 0) abort();
        if (strlen(text) != len) abort();
        free(text);
    } else if (rc != NR_ETEXT && rc != NR_ENOMEM) {
        abort();
    }
    free(ids);
    /* The same bytes as ids. */
    size_t m = size / 2;
    int *raw = malloc((m ? m : 1) * sizeof *raw);
    if (!raw) return 0;
    for (size_t i = 0; i < m; i++) raw[i] = (int)(int16_t)(data[2 * i] | data[2 * i + 1] << 8);
    char *text = NULL;
    rc = nr_wordpiece_decode(tok, raw, m, flags, &text, NULL, err, sizeof err);
    if (rc == 0) {
        if (!text) abort();
        free(text);
    } else if (rc != NR_EINVAL && rc != NR_ENOMEM) {
        abort();
    }
    free(raw);
    return 0;
}
