/* libFuzzer target for the Gemma tokenizer (models/text/gemma_tokenizer.c)
 * with the small PaliGemma-layout fixture. Input as text: encoding fails
 * only on invalid UTF-8 (NR_ETEXT), every id is in range, and decoding the
 * ids keeping special tokens gives the text back byte for byte (unless it
 * holds a literal "▁", which decodes as a space). Input as ids (every 2
 * bytes one id, any value): decoding fails only with NR_EINVAL. Input
 * starting with '{' is also read as a tokenizer.json: it loads or fails with
 * NR_EMODEL, and one that loads encodes and decodes a fixed text and the
 * input itself without fault, every id in range. */
#include "common/error.h"
#include "models/text/gemma_tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NR_FUZZ_GEMMA_TOKENIZER
#define NR_FUZZ_GEMMA_TOKENIZER "tests/fixtures/gemma-tokenizer/tokenizer.json"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static nr_gemma_tokenizer_t *s_tok;

static nr_gemma_tokenizer_t *s_get(void) {
    if (!s_tok) {
        char err[512];
        const char *path = getenv("NR_FUZZ_GEMMA_TOKENIZER");
        if (nr_gemma_tokenizer_load(path && *path ? path : NR_FUZZ_GEMMA_TOKENIZER, &s_tok, err, sizeof err) != 0) {
            fprintf(stderr, "fuzz_gemma_tokenizer: %s\n", err);
            abort();
        }
    }
    return s_tok;
}

static int s_has_sp(const uint8_t *d, size_t n) {
    for (size_t i = 0; i + 2 < n; i++)
        if (d[i] == 0xE2 && d[i + 1] == 0x96 && d[i + 2] == 0x81) return 1;
    return 0;
}

static void s_hostile_file(const uint8_t *data, size_t size) {
    nr_gemma_tokenizer_t *tok = NULL;
    char err[512];
    int rc = nr_gemma_tokenizer_parse((const char *)data, size, "fuzz.json", &tok, err, sizeof err);
    if (rc != 0) {
        if ((rc != NR_EMODEL && rc != NR_ENOMEM) || tok) abort();
        return;
    }
    static const char fixed[] = "a b  c\n<bos>\xC3\xA9\xF0\x9F\x98\x80 <image>";
    const char *texts[2] = {fixed, (const char *)data};
    size_t lens[2] = {sizeof fixed - 1, size};
    for (int k = 0; k < 2; k++) {
        int *ids = NULL;
        size_t n = 0;
        rc = nr_gemma_tokenizer_encode(tok, texts[k], lens[k], &ids, &n, err, sizeof err);
        if (rc == 0) {
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= nr_gemma_tokenizer_vocab_size(tok)) abort();
            for (unsigned f = 0; f < 2; f++) {
                char *text = NULL;
                if (nr_gemma_tokenizer_decode(tok, ids, n, f, &text, NULL, err, sizeof err) != 0) abort();
                free(text);
            }
        } else if (rc != NR_ETEXT && rc != NR_ENOMEM) {
            abort();
        }
        free(ids);
    }
    nr_gemma_tokenizer_destroy(&tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size && data[0] == '{') s_hostile_file(data, size);
    nr_gemma_tokenizer_t *tok = s_get();
    char err[512];
    int *ids = NULL;
    size_t n = 0;
    int rc = nr_gemma_tokenizer_encode(tok, (const char *)data, size, &ids, &n, err, sizeof err);
    if (rc == 0) {
        if (!ids) abort();
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= nr_gemma_tokenizer_vocab_size(tok)) abort();
        char *text = NULL;
        size_t len = 0;
        if (nr_gemma_tokenizer_decode(tok, ids, n, 0, &text, &len, err, sizeof err) != 0) abort();
        if (!s_has_sp(data, size) && (len != size || memcmp(text, data, size) != 0)) abort();
        free(text);
        if (nr_gemma_tokenizer_decode(tok, ids, n, NR_GEMMA_TOKENIZER_SKIP_SPECIAL, &text, &len, err, sizeof err) != 0)
            abort();
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
    rc = nr_gemma_tokenizer_decode(tok, raw, m, size ? data[0] & 1u : 0, &text, NULL, err, sizeof err);
    if (rc == 0) {
        if (!text) abort();
        free(text);
    } else if (rc != NR_EINVAL && rc != NR_ENOMEM) {
        abort();
    }
    free(raw);
    return 0;
}
