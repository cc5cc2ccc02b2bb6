/* libFuzzer target for the Kokoro G2P's own code (models/speech/g2p.c):
 * the phonemize.js normalization rules, the punctuation split and the
 * chunker, on any valid UTF-8 (the speech worker validates before). Byte 0
 * picks the language (English rules or not) and the chunk size (1..64);
 * every chunk must be non-empty, trimmed and within the size. espeak-ng
 * itself is not fuzzed here (the target is built without it). */
#include "common/error.h"
#include "common/utf8.h"
#include "models/speech/g2p.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t s_codepoints(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    char lang = data[0] & 1 ? 'a' : 'e';
    size_t max = (size_t)(data[0] >> 2) + 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (memchr(text, 0, len) || nr_utf8_validate((const uint8_t *)text, len, NULL)) return 0;
    char *norm = NULL;
    if (nr_g2p_normalize(lang, text, len, &norm) == 0) {
        if (nr_utf8_validate((const uint8_t *)norm, strlen(norm), NULL)) abort();
        free(norm);
    }
    char **pieces = NULL;
    size_t n = 0;
    if (nr_g2p_text_pieces(lang, text, len, &pieces, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (!pieces[i][0]) abort(); /* a piece between punctuation is never empty */
        nr_g2p_free_list(pieces, n);
    }
    char *copy = malloc(len + 1);
    if (!copy) return 0;
    memcpy(copy, text, len);
    copy[len] = '\0';
    char **chunks = NULL;
    if (nr_g2p_split(copy, max, &chunks, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(chunks[i]);
            if (!l || s_codepoints(chunks[i]) > max || chunks[i][0] == ' ' || chunks[i][l - 1] == ' ') abort();
        }
        nr_g2p_free_list(chunks, n);
    }
    free(copy);
    return 0;
}
