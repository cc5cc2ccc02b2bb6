/* libFuzzer target for the GPT-2 tokenizer (models/tokenizer.c) with the
 * real GPT-2 vocabulary of the test fixture. Input as text: encoding fails
 * only on invalid UTF-8 (NR_ETEXT), and decoding the ids gives the text
 * back byte for byte. Input as ids (every 2 bytes one id, any value):
 * decoding fails cleanly (NR_EINVAL) on ids out of range. */
#include "common/error.h"
#include "models/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NR_FUZZ_TOKENIZER_DIR
#define NR_FUZZ_TOKENIZER_DIR "tests/fixtures/vit-gpt2-tiny"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static nr_tokenizer_t *s_tok;

static nr_tokenizer_t *s_get(void) {
    if (!s_tok) {
        char err[512];
        const char *dir = getenv("NR_FUZZ_TOKENIZER_DIR");
        if (nr_tokenizer_load(dir && *dir ? dir : NR_FUZZ_TOKENIZER_DIR, &s_tok, err, sizeof err) != 0) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err);
            abort();
        }
    }
    return s_tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nr_tokenizer_t *tok = s_get();
    char err[512];
    int *ids = NULL;
    size_t n = 0;
    int rc = nr_tokenizer_encode(tok, (const char *)data, size, &ids, &n, err, sizeof err);
    if (rc == 0) {
        char *text = NULL;
        size_t len = 0;
        if (nr_tokenizer_decode(tok, ids, n, 0, &text, &len, err, sizeof err) != 0) abort();
        if (len != size || memcmp(text, data, size) != 0) abort(); /* not a round trip */
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
    rc = nr_tokenizer_decode(tok, raw, m, (unsigned)(size & 1), &text, NULL, err, sizeof err);
    if (rc == 0) {
        if (!text) abort();
        free(text);
    } else if (rc != NR_EINVAL && rc != NR_ENOMEM) {
        abort();
    }
    free(raw);
    return 0;
}
